"""The seed tutorial's steps 6 and 7: the Model Registry and serving, through tracksdk.

    .venv/bin/python examples/registry_and_serving.py
    .venv/bin/tracksdk models breast-cancer-lgbm
    .venv/bin/tracksdk serve breast-cancer-lgbm@champion --port 5001

Each training returns its model: the LightGBM plugin logs it (signature, input example,
pinned requirements), tracksdk registers a new version with the alias `challenger`
(Staging, in the old stage names), and the gate moves `champion` (Production) only when
the validation AUC beats the current champion's.
"""

from __future__ import annotations

import lightgbm as lgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import tracksdk
from tracksdk import Gate, Register, tracked

X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, random_state=0, stratify=y)
MODEL = "breast-cancer-lgbm"


@tracked(
    experiment="registry",
    autolog=["lightgbm"],
    register=Register(MODEL, gate=Gate("val_roc_auc", mode="max")),
)
def train(X_train, y_train, num_leaves: int = 31, n_estimators: int = 20):
    """Fit, evaluate on the validation set, return the model and its metrics."""
    model = lgb.LGBMClassifier(num_leaves=num_leaves, n_estimators=n_estimators, verbose=-1)
    model.fit(X_train, y_train)
    metrics = tracksdk.evaluate(model, X_val, y_val, prefix="val_")  # + confusion matrix, ROC
    return model, metrics


if __name__ == "__main__":
    for num_leaves in (4, 31, 8):
        with tracked(experiment="registry", run_name=f"leaves-{num_leaves}"):
            _, metrics = train(X_train, y_train, num_leaves=num_leaves)
        print(f"num_leaves={num_leaves:<3} val_roc_auc={metrics['val_roc_auc']:.4f}")
    print(f"\nVersions and the gate's verdicts:  .venv/bin/tracksdk models {MODEL}")
    print(f"Serve the champion:                .venv/bin/tracksdk serve {MODEL}@champion")
    print(
        "Then: curl -s http://127.0.0.1:5001/invocations -H 'Content-Type: application/json' "
        "-d '{\"dataframe_split\": ...}'"
    )

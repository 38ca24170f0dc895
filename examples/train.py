"""The main job: a tracked training run on the embedded local store.

    make run            # or: .venv/bin/python examples/train.py

Every argument of `train` becomes a param, the dict it returns becomes metrics, and the
git state, the source files and the environment are recorded. Then `tracksdk ui` (or
`mlflow ui` in the project root) shows the run. Switching to DagsHub or a self-hosted
server is a change of environment variables only (docs/backends.md).
"""

from __future__ import annotations

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import tracksdk
from tracksdk import tracked


@tracked(experiment="breast-cancer", tags={"model": "logistic-regression"})
def train(c: float = 1.0, max_iter: int = 200, test_size: float = 0.25) -> dict[str, float]:
    """Fit a scaled logistic regression and return its validation metrics."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_val, y_train, y_val = train_test_split(
        X, y, test_size=test_size, random_state=0, stratify=y
    )
    tracksdk.log_input(
        X_train.assign(target=y_train), "training", name="breast-cancer", targets="target"
    )

    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
    model.fit(X_train, y_train)

    # A learning-curve style metric with steps, logged explicitly.
    for step, n in enumerate((50, 100, 200, len(X_train)), start=1):
        partial = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
        partial.fit(X_train[:n], y_train[:n])
        tracksdk.log_metric("val_accuracy_by_train_size", partial.score(X_val, y_val), step=step)

    proba = model.predict_proba(X_val)[:, 1]
    predictions = model.predict(X_val)
    return {
        "val_accuracy": accuracy_score(y_val, predictions),
        "val_f1": f1_score(y_val, predictions),
        "val_auc": roc_auc_score(y_val, proba),
    }


if __name__ == "__main__":
    with tracked(experiment="breast-cancer", run_name="c-sweep") as parent:
        results = {c: train(c=c) for c in (0.1, 1.0, 10.0)}  # three child runs
        best_c = max(results, key=lambda c: results[c]["val_auc"])
        parent.log_metrics({"best_val_auc": results[best_c]["val_auc"], "best_c": best_c})

    for c, metrics in results.items():
        print(f"C={c:<5} " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    print(f"\nTracked in {parent.tracking_uri}")
    print(f"Best C={best_c}. See the runs: `tracksdk ui`, then open {parent.url}")

"""What can be logged: one tracked run that logs each kind of record the MLflow tutorial lists.

    .venv/bin/python examples/what_can_be_logged.py

A small scikit-learn classifier on the bundled breast-cancer dataset. The numbers in the
comments follow the tutorial's list "What things can actually be logged" (see
docs/seed-tutorial.md):

1. metrics: returned as a dict, and per step with ``tracksdk.log_metrics(..., step=)``;
2. params: the function's arguments, plus ``tracksdk.log_params``;
3. artifacts: figures, a text summary, a dict, a CSV file;
4. models: the trained model is returned (in a ``tracksdk.Result``, with the metrics and
   an input example); the scikit-learn plugin saves it as the run's ``model/``;
5. tags: ``tags=`` on ``tracked`` and ``tracksdk.set_tag``;
6. source code: recorded on every run without any call (git state, scripts, packages);
7. inputs and outputs: ``tracksdk.log_input`` for the datasets, predictions as a CSV;
8. custom objects: any dict or file;
10. run and experiment details: id, name and timestamps come with every run.

The same script logs to DagsHub or a self-hosted server when the environment says so
(examples/switch_to_dagshub.md, examples/switch_to_server.md).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed

import matplotlib.pyplot as plt
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    accuracy_score,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import tracksdk
from tracksdk import tracked

EXPERIMENT = "what-can-be-logged"


# 5. Tags given here are set when the run starts.
@tracked(experiment=EXPERIMENT, tags={"model_type": "sgd-logistic", "purpose": "example"})
def train(
    alpha: float = 1e-4, epochs: int = 15, test_size: float = 0.25, seed: int = 0
) -> tracksdk.Result:
    """Train a logistic model with SGD and log everything the tutorial lists."""
    # 2. Params: alpha, epochs, test_size and seed are logged from the call's arguments.
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X_train, X_val, y_train, y_val = train_test_split(
        X, y, test_size=test_size, random_state=seed, stratify=y
    )
    # 2. Data-processing params that are not arguments.
    tracksdk.log_params(
        {"scaler": "StandardScaler", "n_features": X.shape[1], "n_train": len(X_train)}
    )

    # 7. Inputs: each dataset's digest, schema and profile (not its rows).
    tracksdk.log_input(
        X_train.assign(target=y_train), "training", name="breast-cancer", targets="target"
    )
    tracksdk.log_input(
        X_val.assign(target=y_val), "validation", name="breast-cancer", targets="target"
    )

    scaler = StandardScaler().fit(X_train)
    X_train_s, X_val_s = scaler.transform(X_train), scaler.transform(X_val)

    # 1. Metrics with steps: training and validation loss after each epoch.
    model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=seed)
    for epoch in range(epochs):
        model.partial_fit(X_train_s, y_train, classes=[0, 1])
        tracksdk.log_metrics(
            {
                "train_loss": log_loss(y_train, model.predict_proba(X_train_s)),
                "val_loss": log_loss(y_val, model.predict_proba(X_val_s)),
            },
            step=epoch,
        )

    predictions = model.predict(X_val_s)
    proba = model.predict_proba(X_val_s)[:, 1]

    # 5. A tag set while the run is going (tags can change; the last value wins).
    tracksdk.set_tag("dataset", "sklearn.datasets.load_breast_cancer")

    # 3. Artifacts: a confusion matrix and a ROC curve as images.
    fig, ax = plt.subplots(figsize=(4, 4))
    ConfusionMatrixDisplay.from_predictions(y_val, predictions, ax=ax, colorbar=False)
    tracksdk.log_figure(fig, "figures/confusion_matrix.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4, 4))
    RocCurveDisplay.from_predictions(y_val, proba, ax=ax)
    tracksdk.log_figure(fig, "figures/roc_curve.png")
    plt.close(fig)

    # 3. A model summary as text, and 8. a custom object (a dict) as JSON.
    tracksdk.log_text(
        f"{model!r}\nclasses: {list(model.classes_)}\nfeatures: {X.shape[1]}\n"
        f"epochs: {epochs}, iterations: {model.t_:.0f}\n",
        "summary/model_summary.txt",
    )
    weights = dict(zip(X.columns, (float(w) for w in model.coef_[0]), strict=True))
    tracksdk.log_dict(
        {"intercept": float(model.intercept_[0]), "coefficients": weights},
        "summary/coefficients.json",
    )

    # 7. Outputs: the validation predictions, as a file uploaded into the run.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "val_predictions.csv"
        X_val.assign(target=y_val, prediction=predictions, probability=proba).to_csv(path)
        tracksdk.log_artifact(path, "outputs")

    # 10. Run details: every run has an id, an experiment, a start and an end time.
    run = tracksdk.active_run()
    if run is not None and run.tracked:
        print(f"run {run.run_id} in experiment {EXPERIMENT!r} on {run.tracking_uri}")
        print(f"link: {run.url}")

    # 1. Metrics, returned: logged as the run's final metrics. 4. The model, returned with
    # them: the scikit-learn plugin saves it as model/ (signature from the input example,
    # pinned requirements), loadable with mlflow.pyfunc.load_model("runs:/<run id>/model").
    metrics = {
        "val_accuracy": accuracy_score(y_val, predictions),
        "val_precision": precision_score(y_val, predictions),
        "val_recall": recall_score(y_val, predictions),
        "val_f1": f1_score(y_val, predictions),
        "val_auc": roc_auc_score(y_val, proba),
    }
    return tracksdk.Result(model, metrics, input_example=X_val_s[:5])


if __name__ == "__main__":
    result = train()  # the returned value reaches the caller unchanged
    print("  ".join(f"{key}={value:.4f}" for key, value in result.metrics.items()))
    print("\nLook at the run with:")
    print(f"  .venv/bin/tracksdk runs -e {EXPERIMENT}")
    print("  .venv/bin/tracksdk ui        (local store; remote backends print their UI's URL)")

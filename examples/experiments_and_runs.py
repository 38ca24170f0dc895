"""Experiments and runs: three people, three model types, one experiment.

    .venv/bin/python examples/experiments_and_runs.py

The tutorial's example: three people work on the same prediction problem, one with a
decision tree, one with a random forest, one with a neural network. An *experiment* groups
every run made for that problem, so their results can be compared side by side. A *run* is
one execution: here each person's work is a parent run, and each hyperparameter they try is
a child (nested) run under it.

    experiment "wine-three-people"
    ├── run alice-decision-tree       best_val_accuracy, best_max_depth
    │   ├── child run  max_depth=2
    │   ├── child run  max_depth=4
    │   └── child run  max_depth=8
    ├── run bob-random-forest         ...
    └── run carol-neural-network      ...

A decorated function called inside a tracked run becomes a child run of it; nothing else
is needed. The parent and the children are in the same experiment unless the child names
another one.
"""

from __future__ import annotations

from typing import Any

from sklearn.datasets import load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

from tracksdk import tracked

EXPERIMENT = "wine-three-people"

X, y = load_wine(return_X_y=True, as_frame=True)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)

# Who tries what: a model type and the values of one hyperparameter.
PEOPLE: dict[str, tuple[str, str, list[Any]]] = {
    "alice": ("decision-tree", "max_depth", [2, 4, 8]),
    "bob": ("random-forest", "n_estimators", [10, 50, 100]),
    "carol": ("neural-network", "hidden_units", [4, 16, 64]),
}


def build(model_type: str, **hyperparams: Any) -> Any:
    """Return an unfitted scikit-learn model."""
    if model_type == "decision-tree":
        return DecisionTreeClassifier(random_state=0, **hyperparams)
    if model_type == "random-forest":
        return RandomForestClassifier(random_state=0, **hyperparams)
    return make_pipeline(
        StandardScaler(),
        MLPClassifier(
            hidden_layer_sizes=(hyperparams["hidden_units"],), max_iter=2000, random_state=0
        ),
    )


@tracked  # one child run per call; model_type and the hyperparameters become its params
def fit(model_type: str, **hyperparams: Any) -> dict[str, float]:
    """Fit one configuration and return its validation metrics."""
    model = build(model_type, **hyperparams).fit(X_train, y_train)
    predictions = model.predict(X_val)
    return {
        "val_accuracy": accuracy_score(y_val, predictions),
        "val_f1_macro": f1_score(y_val, predictions, average="macro"),
    }


def work_of(person: str) -> tuple[str | None, dict[str, float]]:
    """One person's parent run with a child run per hyperparameter value."""
    model_type, name, values = PEOPLE[person]
    # mlflow.user is the "User" column of the MLflow UI; here it names the person.
    tags = {"mlflow.user": person, "model_type": model_type}
    with tracked(experiment=EXPERIMENT, run_name=f"{person}-{model_type}", tags=tags) as run:
        results = {value: fit(model_type, **{name: value}) for value in values}
        best = max(results, key=lambda value: results[value]["val_accuracy"])
        run.log_params({"model_type": model_type, "tuned": name, f"best_{name}": best})
        run.log_metrics({f"best_{key}": value for key, value in results[best].items()})
    return run.run_id, {"best": best, **results[best]}


if __name__ == "__main__":
    print(f"experiment {EXPERIMENT!r}: {len(X_train)} training and {len(X_val)} validation rows")
    for person in PEOPLE:
        run_id, best = work_of(person)
        model_type, name, _ = PEOPLE[person]
        print(
            f"  {person:<6} {model_type:<15} run {run_id}: best {name}={best['best']}, "
            f"val_accuracy={best['val_accuracy']:.3f}, val_f1_macro={best['val_f1_macro']:.3f}"
        )
    print("\nCompare them with:")
    print(f"  .venv/bin/tracksdk runs -e {EXPERIMENT}")
    print("  .venv/bin/tracksdk ui        then open the experiment and expand each parent run")

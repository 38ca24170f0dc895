"""Benchmark the scikit-learn and LightGBM plugins against plain MLflow.

    .venv/bin/python plugins/tracksdk-sklearn/bench_plugins.py            # everything
    .venv/bin/python plugins/tracksdk-sklearn/bench_plugins.py --only save
    .venv/bin/python plugins/tracksdk-sklearn/bench_plugins.py --only autolog --repeat 9

1. Model saving: ``tracksdk_save_model`` (alone, and followed by ``mlflow.log_artifacts`` as
   tracksdk does) against MLflow's default ``mlflow.<flavor>.log_model(model, name=...)``
   in a run, on a temporary sqlite store. The first save in the process is reported
   separately (imports).
2. Autolog overhead: the time of ``fit`` inside a run with no autolog, under the plugin's
   defaults, under the plugin's defaults plus ``training_plots=True`` (sklearn), and under
   MLflow's default ``mlflow.autolog()``. Medians exclude each condition's first fit, which
   is reported separately. Conditions are interleaved over rounds to spread machine noise.
   Wall-clock and process CPU time are both reported: on a shared machine CPU time is the
   steadier of the two (LightGBM's threads and BLAS suffer most from other load).

Only the fit / save call is timed; starting and ending runs is not.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def _now() -> float:
    return time.perf_counter()


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _data() -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer, load_diabetes

    Xc, yc = load_breast_cancer(return_X_y=True, as_frame=True)
    Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    return {"clf": (Xc, yc), "reg": (Xr, yr)}


def _models() -> dict[str, tuple[str, str, Callable[[], Any]]]:
    """Model name -> (framework, task, factory)."""
    import lightgbm as lgb
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "LogisticRegression": ("sklearn", "clf", lambda: LogisticRegression(max_iter=200)),
        "RandomForestClassifier(5)": (
            "sklearn",
            "clf",
            lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        ),
        "GradientBoostingRegressor(5)": (
            "sklearn",
            "reg",
            lambda: GradientBoostingRegressor(n_estimators=5, random_state=0),
        ),
        "Pipeline(StandardScaler, LR)": (
            "sklearn",
            "clf",
            lambda: make_pipeline(StandardScaler(), LogisticRegression()),
        ),
        "LGBMClassifier(5)": (
            "lightgbm",
            "clf",
            lambda: lgb.LGBMClassifier(n_estimators=5, verbose=-1),
        ),
        "LGBMRegressor(5)": (
            "lightgbm",
            "reg",
            lambda: lgb.LGBMRegressor(n_estimators=5, verbose=-1),
        ),
    }


def _plugin(framework: str) -> Any:
    import tracksdk_lightgbm
    import tracksdk_sklearn

    return tracksdk_sklearn if framework == "sklearn" else tracksdk_lightgbm


def bench_save(repeat: int, default_repeat: int) -> None:
    """Print the model-saving table."""
    import mlflow

    data = _data()
    work = Path(tempfile.mkdtemp(prefix="bench-save-"))
    rows = []
    first_done = False
    for name, (framework, task, factory) in _models().items():
        X, y = data[task]
        model = factory().fit(X, y)
        plugin = _plugin(framework)

        def save(target: Path, plugin: Any = plugin, model: Any = model, X: Any = X) -> None:
            plugin.tracksdk_save_model(
                model=model, framework=plugin.FRAMEWORK, path=target, input_example=X, formats=()
            )

        first = None
        if not first_done:  # the very first save of the process pays the imports
            start = _now()
            save(work / f"first-{len(rows)}")
            first = _now() - start
            first_done = True
        times = []
        logged = []
        for i in range(repeat):
            target = work / f"{len(rows)}-{i}" / "model"
            start = _now()
            save(target)
            times.append(_now() - start)
            with mlflow.start_run():
                start = _now()
                save(target.parent / "again")
                mlflow.log_artifacts(str(target.parent / "again"), "model")
                logged.append(_now() - start)
        flavor = getattr(mlflow, framework)
        defaults: list[float] = []
        error = ""
        for _ in range(default_repeat):
            with mlflow.start_run():
                start = _now()
                try:
                    flavor.log_model(model, name="model")
                except Exception as exc:  # RandomForest: skops "untrusted types"
                    error = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
                    break
                defaults.append(_now() - start)
        rows.append(
            (
                name,
                _fmt(first),
                _fmt(statistics.median(times)),
                _fmt(statistics.median(logged)),
                error or _fmt(statistics.median(defaults)),
            )
        )
    print("\n## Model saving\n")
    print(
        "| model | hook save, first call | hook save (median) "
        "| hook save + log_artifacts | MLflow log_model default |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def bench_autolog(repeat: int, rounds: int, default_repeat: int) -> None:
    """Print the autolog-overhead table."""
    import lightgbm as lgb
    import mlflow
    import tracksdk_lightgbm
    import tracksdk_sklearn
    from sklearn.linear_model import LogisticRegression

    data = _data()
    X, y = data["clf"]
    X = X.to_numpy()
    y = y.to_numpy()
    cases: dict[str, Callable[[], Any]] = {
        "LogisticRegression (breast_cancer)": lambda: LogisticRegression(),
        "LGBMClassifier(n_estimators=5)": lambda: lgb.LGBMClassifier(n_estimators=5, verbose=-1),
        "LGBMClassifier() (100 trees)": lambda: lgb.LGBMClassifier(verbose=-1),
    }

    def plain() -> Callable[[], None]:
        return lambda: None

    def hook() -> Callable[[], None]:
        r1 = tracksdk_sklearn.tracksdk_autolog("sklearn", {})
        r2 = tracksdk_lightgbm.tracksdk_autolog("lightgbm", {})
        return lambda: (r2(), r1())  # type: ignore[func-returns-value]

    def hook_plots() -> Callable[[], None]:
        r1 = tracksdk_sklearn.tracksdk_autolog("sklearn", {"training_plots": True})
        r2 = tracksdk_lightgbm.tracksdk_autolog("lightgbm", {})
        return lambda: (r2(), r1())  # type: ignore[func-returns-value]

    def mlflow_default() -> Callable[[], None]:
        mlflow.autolog()
        return lambda: mlflow.autolog(disable=True)

    conditions: dict[str, tuple[Callable[[], Callable[[], None]], int]] = {
        "plain fit": (plain, repeat),
        "plugin defaults": (hook, repeat),
        "plugin + training_plots": (hook_plots, repeat),
        "mlflow.autolog() default": (mlflow_default, default_repeat),
    }
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (wall, cpu)
    first: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(rounds):
        for cond, (enable, count) in conditions.items():
            restore = enable()
            try:
                for case, factory in cases.items():
                    for _ in range(count):
                        model = factory()
                        with mlflow.start_run():
                            start, cpu = _now(), time.process_time()
                            model.fit(X, y)
                            took = (_now() - start, time.process_time() - cpu)
                        if (cond, case) not in first:
                            first[(cond, case)] = took
                        else:
                            samples.setdefault((cond, case), []).append(took)
            finally:
                restore()
    for index, clock in enumerate(["wall-clock", "process CPU"]):
        print(
            f"\n## Autolog overhead, {clock} time of fit inside a run "
            "(median; first fit of the process in brackets)\n"
        )
        print("| model | " + " | ".join(conditions) + " |")
        print("|---|" + "---|" * len(conditions))
        for case in cases:
            base = statistics.median(t[index] for t in samples[("plain fit", case)])
            cells = []
            for cond in conditions:
                values = [t[index] for t in samples.get((cond, case), [])]
                med = statistics.median(values) if values else None
                ratio = f" ({med / base:.1f}x)" if med is not None and cond != "plain fit" else ""
                first_fit = first.get((cond, case))
                first_cell = _fmt(first_fit[index] if first_fit else None)
                cells.append(f"{_fmt(med)}{ratio} [{first_cell}] n={len(values)}")
            print(f"| {case} | " + " | ".join(cells) + " |")


def bench_switch(repeat: int) -> None:
    """Print what turning autolog on and off costs per run (not per fit)."""
    import tracksdk_lightgbm
    import tracksdk_sklearn

    rows = []
    for name, plugin in (("sklearn", tracksdk_sklearn), ("lightgbm", tracksdk_lightgbm)):
        on: list[float] = []
        off: list[float] = []
        for _ in range(repeat + 1):
            start = _now()
            restore = plugin.tracksdk_autolog(name, {})
            on.append(_now() - start)
            start = _now()
            restore()
            off.append(_now() - start)
        rows.append(
            f"| {name} | {_fmt(on[0])} | {_fmt(statistics.median(on[1:]))} "
            f"| {_fmt(statistics.median(off[1:]))} |"
        )
    print("\n## Autolog switch cost per tracked run\n")
    print("| plugin | enable, first call | enable (median) | restore (median) |")
    print("|---|---|---|---|")
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks chosen on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["save", "autolog"])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per condition")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved autolog rounds")
    parser.add_argument(
        "--default-repeat",
        type=int,
        default=2,
        help="calls with MLflow's defaults (each takes seconds: requirements inference)",
    )
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import mlflow

    store = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("bench-plugins")
    print(f"# tracksdk plugins benchmark (store {store}, python {sys.version.split()[0]})")
    if args.only in (None, "save"):
        bench_save(args.repeat, args.default_repeat)
    if args.only in (None, "autolog"):
        bench_switch(args.repeat)
        bench_autolog(args.repeat, args.rounds, args.default_repeat)


if __name__ == "__main__":
    main()

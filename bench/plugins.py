"""Plugins benchmark: what autolog and model saving cost, next to a plain fit and plain MLflow.

    .venv/bin/python bench/plugins.py                  # everything (~10-15 min here)
    .venv/bin/python bench/plugins.py --only autolog   # the main table only (~3-5 min)
    .venv/bin/python bench/plugins.py --threads 1      # steadier on a shared, loaded machine
    .venv/bin/python bench/plugins.py --quick          # a smoke check

1. **Autolog** (the main table), side by side in one process, for ``LogisticRegression()``
   on breast_cancer (569 rows, 30 features, a DataFrame),
   ``LGBMClassifier(n_estimators=5)`` and ``XGBClassifier(n_estimators=5)`` on the same data:

   - plain fit: ``model.fit(X, y)``, no run;
   - tracked fit, default autolog: the ``fit`` call inside an already-open
     ``tracked(autolog=[framework])`` run (tracksdk's engine);
   - tracked fit, no autolog: inside ``tracked(autolog=False)``;
   - tracked fit, ``engine="mlflow"``: MLflow's autolog with tracksdk's cheap defaults;
   - ``mlflow.autolog()`` defaults: the fit inside ``mlflow.start_run()``, plain MLflow;
   - ``mlflow.autolog(log_models=False, log_datasets=False)``, the same way.

   Only ``fit`` is timed; the ratio is to the plain fit. "Already open": the tracked run
   is flushed (``run.flush()``) and left idle for 50 ms before the fit, so what starting
   it sends in the background does not compete with the fit. Every condition runs a
   full garbage collection before its timed fit (untimed), so that one of Python's
   generation-2 collections, which walk the ~300,000 objects MLflow leaves, does not land
   in one fit and not another. For reference the whole run
   (entering the block, the flush, the fit, leaving it) is timed too; starting
   and ending a tracked run has its own benchmark, ``bench/core.py``. Conditions take
   turns fit by fit (MLflow's global autolog is switched on around each of its fits,
   untimed), so that load from other processes hits them alike; the slow
   ``mlflow.autolog()`` defaults run every few turns only. Both the median and the
   fastest fit (the least disturbed) are reported.
2. **Opt-in extras** of tracksdk's engine, each option alone, a search with and without
   its child runs, and LightGBM and XGBoost fits with an eval set, timed the same way.
3. **Switching autolog** on and off, per tracked run (the hook, not per fit).
4. **Model saving**: the plugins' ``tracksdk_save_model`` against MLflow's default
   ``log_model``.

The first fit of each condition is left out (reported apart). Times are wall-clock.
tracksdk runs go to a fresh local store in a temporary git repository (real provenance),
plain MLflow to its own sqlite store; both are deleted at the end. The tables are printed;
the raw samples go to ``bench/results/plugins-<time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
EXPERIMENT = "bench-plugins"

MODELS = ("LogisticRegression()", "LGBMClassifier(n_estimators=5)", "XGBClassifier(n_estimators=5)")
FRAMEWORK = {
    "LogisticRegression()": "sklearn",
    "LGBMClassifier(n_estimators=5)": "lightgbm",
    "XGBClassifier(n_estimators=5)": "xgboost",
}

FULL = {"rounds": 3, "repeat": 5, "default_repeat": 2, "save_repeat": 5}
SETTLE = 0.05  # seconds an open run stays idle after its flush, before the timed fit
QUICK = {"rounds": 2, "repeat": 2, "default_repeat": 1, "save_repeat": 2}

now = time.perf_counter


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------
# set-up
# --------------------------------------------------------------------------------------


def clean_environment() -> None:
    """Drop tracksdk and MLflow settings of the calling shell: the bench sets its own."""
    for name in list(os.environ):
        if name.startswith(("TRACKSDK_", "MLFLOW_")):
            del os.environ[name]
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def make_project(root: Path) -> Path:
    """A git repository with one commit, as a user's project (provenance is captured)."""
    project = root / "project"
    project.mkdir()
    (project / "train.py").write_text("# the benchmark's stand-in for a training script\n")

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    git("init", "-q", "-b", "main")
    git("config", "user.email", "bench@example.com")
    git("config", "user.name", "bench")
    git("add", "train.py")
    git("commit", "-q", "-m", "init")
    return project


def data() -> tuple[Any, Any]:
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return X, y


def factories() -> dict[str, Callable[[], Any]]:
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.linear_model import LogisticRegression

    return {
        "LogisticRegression()": lambda: LogisticRegression(),
        "LGBMClassifier(n_estimators=5)": lambda: lgb.LGBMClassifier(n_estimators=5, verbose=-1),
        "XGBClassifier(n_estimators=5)": lambda: xgb.XGBClassifier(n_estimators=5),
    }


def eval_set_kwargs(model: str, X: Any, y: Any) -> dict[str, Any]:
    """``fit``'s arguments for one eval set (the training data), in each library's words."""
    if model.startswith("XGB"):
        return {"eval_set": [(X, y)], "verbose": False}
    return {"eval_X": (X,), "eval_y": (y,)}


# --------------------------------------------------------------------------------------
# 1. autolog
# --------------------------------------------------------------------------------------

Sample = tuple[float, float]  # (fit seconds, whole run seconds)


class Conditions:
    """Each condition fits one model once and returns (fit time, whole-run time)."""

    def __init__(self, X: Any, y: Any, mlflow_uri: str) -> None:
        self.X, self.y = X, y
        self.mlflow_uri = mlflow_uri

    def plain(
        self, factory: Callable[[], Any], name: str, fit_kwargs: dict[str, Any] | None = None
    ) -> Sample:
        model = factory()
        gc.collect()
        start = now()
        model.fit(self.X, self.y, **(fit_kwargs or {}))
        took = now() - start
        return took, took

    def tracked(
        self, factory: Callable[[], Any], autolog: Any, fit_kwargs: dict[str, Any] | None = None
    ) -> Sample:
        from tracksdk import tracked

        model = factory()
        begin = now()
        with tracked(experiment=EXPERIMENT, autolog=autolog) as run:
            # An already-open, idle run: what starting it sends in the background (the
            # run, its provenance) is sent before the fit, and the sender has gone back to
            # waiting (a flush leaves it one extra wake-up), so the fit is not measured
            # against the run's start. Run.flush is tracksdk's; without it the fit starts
            # at once.
            flush = getattr(run, "flush", None)
            if callable(flush):
                flush(60)
            pause = now()
            if callable(flush):
                time.sleep(SETTLE)
            gc.collect()
            start = now()
            model.fit(self.X, self.y, **(fit_kwargs or {}))
            took = now() - start
        # The whole run without the bench's own pause and collection (the flush stays:
        # the end of the run would otherwise send the same).
        return took, now() - begin - (start - pause)

    @contextmanager
    def mlflow_autolog(self, **options: Any) -> Iterator[None]:
        """Plain MLflow's global autolog, on for a batch of fits (enabling is not timed)."""
        import mlflow

        mlflow.set_tracking_uri(self.mlflow_uri)
        mlflow.set_experiment(EXPERIMENT)
        mlflow.autolog(silent=True, **options)
        try:
            yield
        finally:
            mlflow.autolog(disable=True, silent=True)

    def mlflow_run(self, factory: Callable[[], Any]) -> Sample:
        import mlflow

        model = factory()
        begin = now()
        with mlflow.start_run():
            pause = now()
            gc.collect()
            start = now()
            model.fit(self.X, self.y)
            took = now() - start
        return took, now() - begin - (start - pause)


AUTOLOG_CONDITIONS = (
    "plain fit",
    "tracked fit, default autolog",
    "tracked fit, no autolog",
    'tracked fit, autolog engine="mlflow"',
    "mlflow.autolog() defaults",
    "mlflow.autolog(log_models=False, log_datasets=False)",
)


MLFLOW_AUTOLOG_OPTIONS = {
    "mlflow.autolog() defaults": {},
    "mlflow.autolog(log_models=False, log_datasets=False)": {
        "log_models": False,
        "log_datasets": False,
    },
}


def bench_autolog(
    cfg: dict[str, Any], cond: Conditions, log: Callable[[str], None]
) -> dict[str, dict[str, list[Sample]]]:
    """Every condition in turn, fit by fit, so that load bursts hit all of them alike.

    MLflow's global autolog is switched on around each of its fits (not timed). Its
    defaults take seconds per fit, so that condition runs only every few turns.
    """
    made = factories()
    samples: dict[str, dict[str, list[Sample]]] = {
        c: {m: [] for m in MODELS} for c in AUTOLOG_CONDITIONS
    }
    tracked_options: dict[str, Callable[[str], Any]] = {
        "tracked fit, default autolog": lambda m: [FRAMEWORK[m]],
        "tracked fit, no autolog": lambda m: False,
        'tracked fit, autolog engine="mlflow"': lambda m: {FRAMEWORK[m]: {"engine": "mlflow"}},
    }
    turns = cfg["rounds"] * cfg["repeat"] + 1  # the first turn is the warm-up
    slow_every = max(1, cfg["repeat"] // max(1, cfg["default_repeat"]))
    for turn in range(turns):
        if turn % cfg["repeat"] == 0:
            log(f"autolog turn {turn + 1}/{turns} (load {os.getloadavg()[0]:.1f})")
        for condition in AUTOLOG_CONDITIONS:
            if condition == "mlflow.autolog() defaults" and turn % slow_every:
                continue
            if condition in MLFLOW_AUTOLOG_OPTIONS:
                with cond.mlflow_autolog(**MLFLOW_AUTOLOG_OPTIONS[condition]):
                    for model in MODELS:
                        samples[condition][model].append(cond.mlflow_run(made[model]))
                continue
            for model in MODELS:
                if condition == "plain fit":
                    sample = cond.plain(made[model], model)
                else:
                    sample = cond.tracked(made[model], tracked_options[condition](model))
                samples[condition][model].append(sample)
    return samples


def autolog_table(samples: dict[str, dict[str, list[Sample]]], pick: str) -> list[str]:
    """One table: the median (with the whole run) or the minimum of each condition."""
    pick_fn = median if pick == "median" else (lambda v: min(v) if v else None)
    whole_head = " | whole run" if pick == "median" else ""
    lines = [
        "| condition | " + " | ".join(f"{m}: fit | ratio{whole_head}" for m in MODELS) + " | n |",
        "|---|" + ("---:|---:|" + ("---:|" if whole_head else "")) * len(MODELS) + "---:|",
    ]
    plain = {m: pick_fn([s[0] for s in samples["plain fit"][m][1:]]) for m in MODELS}
    for condition in AUTOLOG_CONDITIONS:
        cells = []
        counts = set()
        for model in MODELS:
            kept = samples[condition][model][1:]  # without the warm-up fit
            counts.add(len(kept))
            fit = pick_fn([s[0] for s in kept])
            base = plain[model]
            ratio = f"{fit / base:.1f}x" if fit is not None and base else "-"
            cells += [fmt(fit), ratio]
            if whole_head:
                whole = median([s[1] for s in kept])
                cells.append("-" if condition == "plain fit" else fmt(whole))
        n = "/".join(str(c) for c in sorted(counts))
        lines.append(f"| {condition} | " + " | ".join(cells) + f" | {n} |")
    return lines


def first_fits(samples: dict[str, dict[str, list[Sample]]]) -> list[str]:
    lines = ["First fit of each condition (left out above), " + " / ".join(MODELS) + ":", ""]
    for condition in AUTOLOG_CONDITIONS:
        cells = [fmt(samples[condition][m][0][0]) if samples[condition][m] else "-" for m in MODELS]
        lines.append(f"- {condition}: {' / '.join(cells)}")
    return lines


# --------------------------------------------------------------------------------------
# 2. opt-in extras
# --------------------------------------------------------------------------------------


SKLEARN_EXTRAS = ("training_metrics", "training_plots", "estimator_html", "log_datasets")
SEARCH = "GridSearchCV(LR, 3 candidates, cv=3)"
MLFLOW_PLOTS = {"engine": "mlflow", "training_plots": True}
PLAIN = "plain fit, no run"


def extras_cases() -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(model, label, autolog option or PLAIN, fit keyword arguments)."""
    lr, lgbm, xgb = MODELS
    eval_set = {"eval": True}
    return [
        (lr, PLAIN, PLAIN, {}),
        (lr, "default", ["sklearn"], {}),
        (lr, "training_metrics", {"sklearn": {"training_metrics": True}}, {}),
        (lr, "training_plots", {"sklearn": {"training_plots": True}}, {}),
        (lr, "estimator_html", {"sklearn": {"estimator_html": True}}, {}),
        (lr, "log_datasets", {"sklearn": {"log_datasets": True}}, {}),
        (lr, "all four", {"sklearn": dict.fromkeys(SKLEARN_EXTRAS, True)}, {}),
        (lr, 'engine="mlflow"', {"sklearn": {"engine": "mlflow"}}, {}),
        (lr, 'engine="mlflow", training_plots', {"sklearn": MLFLOW_PLOTS}, {}),
        (lr, "log_models (MLflow's engine)", {"sklearn": {"log_models": True}}, {}),
        (SEARCH, PLAIN, PLAIN, {}),
        (SEARCH, "no autolog", False, {}),
        (SEARCH, "default (3 child runs)", ["sklearn"], {}),
        (SEARCH, "max_tuning_runs=0", {"sklearn": {"max_tuning_runs": 0}}, {}),
        (lgbm, PLAIN, PLAIN, {}),
        (lgbm, "default", ["lightgbm"], {}),
        (lgbm, "importance_plots", {"lightgbm": {"importance_plots": True}}, {}),
        (lgbm, "log_datasets", {"lightgbm": {"log_datasets": True}}, {}),
        (lgbm, 'engine="mlflow"', {"lightgbm": {"engine": "mlflow"}}, {}),
        (lgbm, "log_models (MLflow's engine)", {"lightgbm": {"log_models": True}}, {}),
        (lgbm, "plain fit, one eval set", PLAIN, eval_set),
        (lgbm, "no autolog, one eval set", False, eval_set),
        (lgbm, "default, one eval set (5 points)", ["lightgbm"], eval_set),
        (xgb, PLAIN, PLAIN, {}),
        (xgb, "default", ["xgboost"], {}),
        (xgb, "importance_plots", {"xgboost": {"importance_plots": True}}, {}),
        (xgb, "log_datasets", {"xgboost": {"log_datasets": True}}, {}),
        (xgb, 'engine="mlflow"', {"xgboost": {"engine": "mlflow"}}, {}),
        (xgb, "log_models (MLflow's engine)", {"xgboost": {"log_models": True}}, {}),
        (xgb, "plain fit, one eval set", PLAIN, eval_set),
        (xgb, "no autolog, one eval set", False, eval_set),
        (xgb, "default, one eval set (5 points)", ["xgboost"], eval_set),
    ]


def bench_extras(
    cfg: dict[str, Any], cond: Conditions, log: Callable[[str], None]
) -> dict[str, list[Sample]]:
    """The options of tracksdk's engine, each alone; every case in turn, fit by fit."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    made = factories()
    made[SEARCH] = lambda: GridSearchCV(
        make_pipeline(StandardScaler(), LogisticRegression()),
        {"logisticregression__C": [0.1, 1.0, 10.0]},
        cv=3,
    )
    X, y = cond.X, cond.y
    samples: dict[str, list[Sample]] = {}
    turns = cfg["rounds"] * cfg["repeat"] + 1  # the first turn is the warm-up
    for turn in range(turns):
        if turn % cfg["repeat"] == 0:
            log(f"extras turn {turn + 1}/{turns} (load {os.getloadavg()[0]:.1f})")
        for model, label, autolog, kwargs in extras_cases():
            fit_kwargs = eval_set_kwargs(model, X, y) if kwargs.get("eval") else {}
            if autolog == PLAIN:
                sample = cond.plain(made[model], model, fit_kwargs)
            else:
                sample = cond.tracked(made[model], autolog, fit_kwargs)
            samples.setdefault(f"{model} | {label}", []).append(sample)
    return samples


def extras_table(samples: dict[str, list[Sample]]) -> list[str]:
    lines = [
        "| model | autolog options | tracked fit, median | ratio | fastest | ratio | n |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    base: tuple[float | None, float | None] = (None, None)
    for key, values in samples.items():
        model, label = key.split(" | ")
        fits = [s[0] for s in values[1:]]  # without the warm-up fit
        mid, low = median(fits), min(fits) if fits else None
        if label.startswith("plain fit"):
            base = (mid, low)
        cells = []
        for value, reference in ((mid, base[0]), (low, base[1])):
            ratio = f"{value / reference:.1f}x" if value is not None and reference else "-"
            cells += [fmt(value), ratio]
        lines.append(f"| {model} | {label} | " + " | ".join(cells) + f" | {len(fits)} |")
    return lines


# --------------------------------------------------------------------------------------
# 3. switching autolog on and off
# --------------------------------------------------------------------------------------


def bench_switch(repeat: int) -> list[str]:
    """The hook's enable and restore, per tracked run, for each engine."""
    import tracksdk_lightgbm
    import tracksdk_sklearn
    import tracksdk_xgboost

    lines = [
        "| plugin | engine | enable, first call | enable (median) | restore (median) |",
        "|---|---|---:|---:|---:|",
    ]
    plugins = (
        ("sklearn", tracksdk_sklearn),
        ("lightgbm", tracksdk_lightgbm),
        ("xgboost", tracksdk_xgboost),
    )
    for name, plugin in plugins:
        for engine in ("tracksdk", "mlflow"):
            on: list[float] = []
            off: list[float] = []
            for _ in range(repeat + 1):
                start = now()
                restore = plugin.tracksdk_autolog(name, {"engine": engine}, in_store=True)
                on.append(now() - start)
                start = now()
                restore()
                off.append(now() - start)
            lines.append(
                f"| {name} | {engine} | {fmt(on[0])} | {fmt(median(on[1:]))} "
                f"| {fmt(median(off[1:]))} |"
            )
    return lines


# --------------------------------------------------------------------------------------
# 4. model saving
# --------------------------------------------------------------------------------------


def bench_save(repeat: int, default_repeat: int, work: Path, mlflow_uri: str) -> list[str]:
    """tracksdk_save_model (alone, and with the upload) against MLflow's log_model."""
    import lightgbm as lgb
    import mlflow
    import tracksdk_lightgbm
    import tracksdk_sklearn
    import tracksdk_xgboost
    import xgboost as xgb
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment(EXPERIMENT)
    Xc, yc = data()
    Xr, yr = load_diabetes(return_X_y=True, as_frame=True)
    cases: dict[str, tuple[Any, Any, Any, Any]] = {
        "LogisticRegression": (tracksdk_sklearn, LogisticRegression(max_iter=200), Xc, yc),
        "RandomForestClassifier(5)": (
            tracksdk_sklearn,
            RandomForestClassifier(n_estimators=5, random_state=0),
            Xc,
            yc,
        ),
        "GradientBoostingRegressor(5)": (
            tracksdk_sklearn,
            GradientBoostingRegressor(n_estimators=5, random_state=0),
            Xr,
            yr,
        ),
        "Pipeline(StandardScaler, LR)": (
            tracksdk_sklearn,
            make_pipeline(StandardScaler(), LogisticRegression()),
            Xc,
            yc,
        ),
        "LGBMClassifier(5)": (
            tracksdk_lightgbm,
            lgb.LGBMClassifier(n_estimators=5, verbose=-1),
            Xc,
            yc,
        ),
        "LGBMRegressor(5)": (
            tracksdk_lightgbm,
            lgb.LGBMRegressor(n_estimators=5, verbose=-1),
            Xr,
            yr,
        ),
        "XGBClassifier(5)": (tracksdk_xgboost, xgb.XGBClassifier(n_estimators=5), Xc, yc),
        "XGBRegressor(5)": (tracksdk_xgboost, xgb.XGBRegressor(n_estimators=5), Xr, yr),
    }
    lines = [
        "| model | hook save, first call | hook save (median) | hook save + log_artifacts "
        "| MLflow log_model default |",
        "|---|---:|---:|---:|---:|",
    ]
    first_done = False
    for index, (name, (plugin, model, X, y)) in enumerate(cases.items()):
        model.fit(X, y)

        def save(target: Path, plugin: Any = plugin, model: Any = model, X: Any = X) -> None:
            plugin.tracksdk_save_model(
                model=model, framework=plugin.FRAMEWORK, path=target, input_example=X, formats=()
            )

        first = None
        if not first_done:  # the first save of the process pays one-time work in MLflow
            start = now()
            save(work / f"first-{index}")
            first = now() - start
            first_done = True
        times, logged = [], []
        for i in range(repeat):
            target = work / f"{index}-{i}" / "model"
            start = now()
            save(target)
            times.append(now() - start)
            with mlflow.start_run():
                start = now()
                save(target.parent / "again")
                mlflow.log_artifacts(str(target.parent / "again"), "model")
                logged.append(now() - start)
        flavor = getattr(mlflow, plugin.FRAMEWORK)
        defaults: list[float] = []
        error = ""
        for _ in range(default_repeat):
            with mlflow.start_run():
                start = now()
                try:
                    flavor.log_model(model, name="model")
                except Exception as exc:  # RandomForest: skops "untrusted types"
                    error = f"fails: {type(exc).__name__}"
                    break
                defaults.append(now() - start)
        lines.append(
            f"| {name} | {fmt(first)} | {fmt(median(times))} | {fmt(median(logged))} "
            f"| {error or fmt(median(defaults))} |"
        )
    return lines


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "not installed"

    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{
            name: version(name)
            for name in ("mlflow", "tracksdk", "scikit-learn", "lightgbm", "xgboost", "numpy")
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Run the chosen benchmarks; print the tables; write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", choices=["autolog", "extras", "switch", "save"])
    parser.add_argument("--quick", action="store_true", help="small N: a smoke check only")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--repeat", type=int, help="fits per condition and round (default 5)")
    parser.add_argument(
        "--default-repeat",
        type=int,
        help="fits per round under mlflow.autolog() defaults (seconds each; default 2)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="pin BLAS and OpenMP (LightGBM, XGBoost) to this many threads; default: the "
        "libraries' own choice. On a shared, loaded machine 1 gives steadier numbers",
    )
    parser.add_argument("--keep-temp", action="store_true", help="keep the temp folder")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    for key in ("rounds", "repeat", "default_repeat"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)

    def log(message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    clean_environment()
    if args.threads is not None:  # read when numpy, lightgbm and xgboost load, below
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    warnings.simplefilter("ignore")  # ConvergenceWarning per fit would be timed too
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    root = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    started = _dt.datetime.now().isoformat(timespec="seconds")
    result: dict[str, Any] = {"started": started, "config": cfg, "machine": machine()}
    threads = f"{args.threads} thread(s) for BLAS/OpenMP" if args.threads else "default threads"
    lines = [
        f"# tracksdk plugins benchmark, {started}",
        "",
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {threads}, "
        f"load average at start {os.getloadavg()[0]:.1f}; config {cfg}",
    ]
    cwd = os.getcwd()
    try:
        project = make_project(root)
        os.chdir(project)
        import tracksdk

        tracksdk.configure(backend="local", local={"root": str(root / "tracksdk-store")})
        mlflow_uri = f"sqlite:///{root / 'mlflow-side' / 'mlflow.db'}"
        (root / "mlflow-side").mkdir()
        X, y = data()
        cond = Conditions(X, y, mlflow_uri)
        if args.only in (None, "autolog"):
            samples = bench_autolog(cfg, cond, log)
            result["autolog"] = samples
            lines += ["", "## Autolog: fit inside a run, median wall-clock", ""]
            lines += autolog_table(samples, "median")
            lines += ["", "## Autolog: fit inside a run, fastest fit (least disturbed)", ""]
            lines += autolog_table(samples, "min")
            lines += ["", *first_fits(samples)]
        if args.only in (None, "extras"):
            extras = bench_extras(cfg, cond, log)
            result["extras"] = extras
            lines += ["", "## Opt-in extras: fit inside a tracked run; ratio to the plain fit", ""]
            lines += extras_table(extras)
        if args.only in (None, "switch"):
            log("switch")
            lines += ["", "## Switching autolog on and off, per tracked run", ""]
            lines += bench_switch(cfg["repeat"])
        if args.only in (None, "save"):
            log("save")
            (root / "saves").mkdir()
            lines += ["", "## Model saving", ""]
            saves = root / "saves"
            lines += bench_save(cfg["save_repeat"], cfg["default_repeat"], saves, mlflow_uri)
        lines += ["", f"load average at end {os.getloadavg()[0]:.1f}"]
    finally:
        os.chdir(cwd)
        if not args.keep_temp:
            shutil.rmtree(root, ignore_errors=True)
    print("\n".join(lines))
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = _dt.datetime.fromisoformat(started).strftime("%Y%m%d-%H%M%S")
        out = RESULTS_DIR / f"plugins-{stamp}.json"
        out.write_text(json.dumps({**result, "report": lines}, indent=1, default=str))
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""tracksdk's public modules for plugin authors, used as a third-party plugin would use them.

A plugin for a toy framework is written with ``FrameworkHooks`` and ``tracksdk.autolog``
only, registered like an installed plugin, and used through tracked runs on a real local
store; the typed hook calls are checked against misbehaving plugins.
"""

from __future__ import annotations

import threading
import types
import warnings
from pathlib import Path
from typing import Any

import pytest
from core_fixtures import local_client

import tracksdk
from tracksdk import TrackSDKWarning, _plugins, tracked
from tracksdk.autolog import AddUndo, AutologSpec, Scope, guarded, patch_attribute, patched_call
from tracksdk.hookspecs import (
    Evaluation,
    FrameworkHooks,
    call_autolog,
    call_evaluate,
    call_model_framework,
    call_save_model,
    hookimpl,
)


class ToyModel:
    """A toy framework's model: ``fit`` learns the mean of ``y``."""

    def __init__(self, shrink: float = 0.0) -> None:
        self.shrink = shrink
        self.mean = 0.0

    def get_params(self) -> dict[str, Any]:
        return {"shrink": self.shrink}

    def fit(self, X: Any, y: list[float]) -> ToyModel:
        self.mean = (1.0 - self.shrink) * sum(y) / len(y)
        return self

    def predict(self, X: list[Any]) -> list[float]:
        return [self.mean] * len(X)


class ToyEnsemble(ToyModel):
    """Fits inner models inside its own fit: only the outermost fit is logged."""

    def fit(self, X: Any, y: list[float]) -> ToyEnsemble:
        for _ in range(3):
            ToyModel(self.shrink).fit(X, y)
        super().fit(X, y)
        return self


def _log_fit(scope: Scope, original: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    model = args[0]
    guarded(scope, "log the params", lambda: tracksdk.log_params(model.get_params()))
    result = original(*args, **kwargs)
    guarded(scope, "log the mean", lambda: tracksdk.log_metric("learned_mean", model.mean))
    if scope.options.get("fail_after_fit"):
        guarded(scope, "fail on purpose", lambda: 1 / 0)
    return result


def _install(add_undo: AddUndo) -> None:
    for cls in (ToyModel, ToyEnsemble):
        undo = patch_attribute(cls, "fit", lambda fit: patched_call("toyml", fit, _log_fit))
        if undo is not None:
            add_undo(undo)


def _spec() -> AutologSpec:
    return AutologSpec(
        framework="toyml",
        package=__name__,  # the "framework" is this module, imported already
        engine_options={"fail_after_fit": False},
        install=_install,
    )


def _evaluate(model: Any, X: Any, y: Any) -> Evaluation:
    """Mean absolute error."""
    predicted = model.predict(X)
    return Evaluation({"mae": sum(abs(a - b) for a, b in zip(y, predicted, strict=True)) / len(y)})


def _plugin() -> types.ModuleType:
    """A plugin module, as an entry point would load it."""
    hooks = FrameworkHooks("toyml")
    plugin = types.ModuleType("tracksdk_toyml")
    plugin.tracksdk_frameworks = hooks.frameworks()  # type: ignore[attr-defined]
    plugin.tracksdk_model_framework = hooks.model_framework(  # type: ignore[attr-defined]
        lambda model: isinstance(model, ToyModel)
    )
    plugin.tracksdk_autolog = hooks.autolog(_spec)  # type: ignore[attr-defined]
    plugin.tracksdk_evaluate = hooks.evaluate(_evaluate)  # type: ignore[attr-defined]
    return plugin


@pytest.fixture
def plugin_manager() -> Any:
    _plugins.reset()
    pm = _plugins.manager()
    pm.register(_plugin(), name="toyml")
    yield pm
    _plugins.reset()


X = [[1.0], [2.0], [3.0], [4.0]]
Y = [1.0, 2.0, 3.0, 6.0]


def test_framework_hooks_answer_for_their_framework_only() -> None:
    """Each hook returns None for another framework, and does its job for its own."""
    hooks = FrameworkHooks("toyml")
    saved: list[Path] = []
    save = hooks.save_model(lambda model, path, example, formats: saved.append(path))
    evaluate = hooks.evaluate(_evaluate)
    autolog = hooks.autolog(_spec)
    model = ToyModel().fit(X, Y)
    assert hooks.frameworks()() == ["toyml"]
    assert save(model, "other", Path("m"), None, ()) is None and saved == []
    assert save(model, "toyml", Path("m"), None, ()) == "toyml" and saved == [Path("m")]
    assert evaluate(model, "other", X, Y) is None
    assert evaluate(model, "toyml", X, Y) == Evaluation({"mae": 1.5})
    assert autolog("other", {}, True) is None
    original = ToyModel.__dict__["fit"]
    restore = autolog("toyml", {}, True)
    assert restore is not None and ToyModel.__dict__["fit"] is not original
    restore()
    assert ToyModel.__dict__["fit"] is original
    last = hooks.model_framework(lambda model: True, trylast=True)
    assert last.tracksdk_impl["trylast"] is True  # type: ignore[attr-defined]


def test_a_plugin_on_the_kit_logs_the_outermost_fit_in_the_run(
    project: Path, plugin_manager: Any
) -> None:
    """Autolog on the kit: params and metrics of the outermost fit, patches gone after."""
    original = ToyModel.__dict__["fit"]
    with tracked(autolog=["toyml"]) as run:
        assert ToyModel.__dict__["fit"] is not original
        ensemble = ToyEnsemble(shrink=0.5).fit(X, Y)
        # A fit in another thread is outside the run: not logged.
        worker = threading.Thread(target=lambda: ToyModel(shrink=0.25).fit(X, Y))
        worker.start()
        worker.join()
        metrics = tracksdk.evaluate(ensemble, X, Y, prefix="val_")
    assert ToyModel.__dict__["fit"] is original
    assert metrics == {"val_mae": 1.75}
    client = local_client(project)
    logged = client.get_run(run.run_id).data
    assert logged.params == {"shrink": "0.5"}  # the ensemble's, not its inner models'
    history = client.get_metric_history(run.run_id, "learned_mean")
    assert [m.value for m in history] == [1.5]  # one record for the outermost fit
    assert logged.metrics["val_mae"] == 1.75


def test_a_failing_logging_step_is_one_warning_and_the_fit_still_returns(
    project: Path, plugin_manager: Any
) -> None:
    """guarded: an exception while logging is one warning per run, never the user's error."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with tracked(autolog={"toyml": {"fail_after_fit": True}}):
            model = ToyModel().fit(X, Y)
            ToyModel().fit(X, Y)
    assert model.mean == 3.0
    failures = [str(w.message) for w in caught if "could not fail on purpose" in str(w.message)]
    assert len(failures) == 1, failures
    assert "ZeroDivisionError" in failures[0]


def test_typed_calls_skip_a_plugin_returning_the_wrong_type(plugin_manager: Any) -> None:
    """A result of the wrong type is a warning naming the plugin; the next plugin answers."""

    class Wrong:
        @hookimpl
        def tracksdk_model_framework(self, model: Any) -> Any:
            return 42

        @hookimpl
        def tracksdk_autolog(self, framework: str) -> Any:
            return "not callable"

        @hookimpl
        def tracksdk_evaluate(self, model: Any) -> Any:
            return {"mae": 0.0}

        @hookimpl
        def tracksdk_save_model(self, model: Any) -> Any:
            return True

    pm = plugin_manager
    pm.register(Wrong(), name="wrong")
    model = ToyModel().fit(X, Y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert call_model_framework(pm, model) == "toyml"
        assert call_evaluate(pm, model, "toyml", X, Y) == Evaluation({"mae": 1.5})
        assert call_save_model(pm, model, "toyml", Path("m"), None, ()) is None
        restore = call_autolog(pm, "toyml", {}, True)
    assert restore is not None
    restore()
    messages = [str(w.message) for w in caught]
    assert [m.split(" from ")[0] for m in messages] == [
        "tracksdk: plugin 'wrong' returned a int",
        "tracksdk: plugin 'wrong' returned a dict",
        "tracksdk: plugin 'wrong' returned a bool",
        "tracksdk: plugin 'wrong' returned a str",
    ]
    assert all(w.filename == __file__ for w in caught)


def test_a_plugins_warning_points_at_the_users_line() -> None:
    """hookspecs.warn skips tracksdk_<name> packages' frames, and masks secrets."""
    plugin = types.ModuleType("tracksdk_toyml.engine")
    exec(
        "from tracksdk.hookspecs import warn\n"
        "def deep():\n"
        "    warn('could not reach https://user:s3cret@example.com/api')\n",
        plugin.__dict__,
    )
    with pytest.warns(TrackSDKWarning) as caught:
        plugin.deep()
    (warning,) = caught
    assert warning.filename == __file__
    assert "s3cret" not in str(warning.message)

"""tracksdk: experiment tracking on MLflow without the boilerplate.

``import tracksdk`` is fast: it does not import mlflow or pydantic-settings. Settings,
backends and MLflow load on the first tracked call.

    from tracksdk import tracked

    @tracked(experiment="churn")
    def train(learning_rate: float = 0.05) -> dict[str, float]:
        ...
        return {"val_auc": 0.91}   # logged as metrics
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tracksdk._api import (
    evaluate,
    flush,
    log_artifact,
    log_artifacts,
    log_checkpoint,
    log_dict,
    log_figure,
    log_input,
    log_metric,
    log_metrics,
    log_param,
    log_params,
    log_text,
    set_tag,
    set_tags,
)
from tracksdk._attach import attach
from tracksdk._config import configure, reset
from tracksdk._context import active_run
from tracksdk._decorator import Tracked, tracked
from tracksdk._manual import start
from tracksdk.exceptions import (
    ConfigError,
    ResumeError,
    TrackingError,
    TrackSDKError,
    TrackSDKWarning,
    ValidationError,
)

if TYPE_CHECKING:
    from tracksdk._run import Run
    from tracksdk.registry import Gate, Register, Result
    from tracksdk.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Gate",
    "Register",
    "Result",
    "ResumeError",
    "Run",
    "Settings",
    "TrackSDKError",
    "TrackSDKWarning",
    "Tracked",
    "TrackingError",
    "ValidationError",
    "__version__",
    "active_run",
    "attach",
    "configure",
    "evaluate",
    "flush",
    "log_artifact",
    "log_artifacts",
    "log_checkpoint",
    "log_dict",
    "log_figure",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "reset",
    "set_tag",
    "set_tags",
    "start",
    "tracked",
]


def __getattr__(name: str) -> Any:
    # Loaded on first use: Settings imports pydantic-settings (~250 ms), Run the
    # lifecycle machinery.
    if name == "Settings":
        from tracksdk.settings import Settings

        return Settings
    if name == "Run":
        from tracksdk._run import Run

        return Run
    if name in ("Gate", "Register", "Result"):
        from tracksdk import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tracksdk' has no attribute {name!r}")

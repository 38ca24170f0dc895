"""Turn the selected frameworks' autolog on for one run, and off when it ends.

``autolog=`` (or ``TRACKSDK_AUTOLOG``) names the frameworks; each plugin's
``tracksdk_autolog`` hook turns its own on and returns how to turn it off
(:mod:`tracksdk.autolog` holds the machinery the plugins share).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tracksdk import _warn, stores

if TYPE_CHECKING:
    from tracksdk.backends import Connection

__all__ = ["Switch", "selection"]


def selection(value: Any) -> dict[str, dict[str, Any]]:
    """Normalise ``autolog=`` to framework name -> options (``"*"``: every framework)."""
    if value is None or value is False:
        return {}
    if value is True:
        return {"*": {}}
    if isinstance(value, Mapping):
        return {str(k): dict(v or {}) for k, v in value.items()}
    if isinstance(value, str):
        value = [value]
    return {str(name): {} for name in value}


def _logs_models(conn: Connection | None) -> bool:
    """Whether the server has MLflow 3's logged-model endpoints (probed once per server)."""
    return conn is None or stores.capabilities(conn).logged_models


class Switch:
    """The autolog of one run: what was turned on, and how to turn it off."""

    def __init__(self) -> None:
        self._off: list[Callable[[], None]] = []

    def on(
        self,
        chosen: Mapping[str, dict[str, Any]],
        plugins: Sequence[str] | None,
        conn: Connection | None,
        in_mlflow_run: bool,
    ) -> None:
        """Turn on the autolog of every framework in ``chosen`` that a plugin provides.

        Args:
            chosen: :func:`selection`'s result.
            plugins: The plugins the settings allow (None: every installed one).
            conn: The run's store, or None offline.
            in_mlflow_run: Whether the run is MLflow's active run too, so that MLflow's own
                autolog (the ``"mlflow"`` engine) can write to it.
        """
        from tracksdk import _plugins, hookspecs

        if not chosen:
            return
        pm = _plugins.manager(plugins)
        available = _plugins.frameworks(pm)
        if chosen == {"*": {}}:
            chosen = {name: {} for name in available}
        for name, options in chosen.items():
            if name not in available:
                known = ", ".join(sorted(available)) or "none installed"
                _warn.warn(
                    f"tracksdk: no plugin provides autolog for {name!r} (available: "
                    f"{known}). Install its plugin, or fix the name in autolog=."
                )
                continue
            if in_mlflow_run and options.get("log_models") and not _logs_models(conn):
                options = {**options, "log_models": False}
                _warn.warn(
                    f"tracksdk: the server has no logged-model endpoints (MLflow 2.x); "
                    f"autolog for {name!r} runs with log_models=False, since MLflow would "
                    "otherwise drop the metrics too. Return the model to log it instead."
                )
            off = hookspecs.call_autolog(pm, name, options, in_mlflow_run)
            if off is not None:
                self._off.append(off)

    def off(self) -> None:
        """Turn off what :meth:`on` turned on, last first. Never raises."""
        while self._off:
            undo = self._off.pop()
            try:
                undo()
            except Exception as exc:  # a plugin's bug must not hide the run's status
                _warn.warn(f"tracksdk: turning autolog off failed: {type(exc).__name__}: {exc}")

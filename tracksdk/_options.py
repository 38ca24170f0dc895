"""What ``tracked(...)`` was given (a light module: no dataclasses at import)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class RunOptions:
    """Options of one ``tracked(...)``. Settings supply anything left as None."""

    __slots__ = (
        "autolog",
        "best",
        "experiment",
        "formats",
        "nested",
        "params",
        "register",
        "run_name",
        "settings",
        "strict",
        "tags",
    )

    def __init__(
        self,
        *,
        experiment: str | None = None,
        run_name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        params: bool | Iterable[str] = True,
        nested: bool | None = None,
        strict: bool | None = None,
        settings: Mapping[str, Any] | None = None,
        autolog: bool | Iterable[str] | Mapping[str, Mapping[str, Any]] | None = None,
        register: Any = None,
        formats: Iterable[str] = (),
        best: Any = None,
    ) -> None:
        self.experiment = experiment
        self.run_name = run_name
        self.tags = dict(tags) if tags else None
        self.params: bool | tuple[str, ...] = params if isinstance(params, bool) else tuple(params)
        self.nested = nested
        self.strict = strict
        self.settings = dict(settings or {})
        self.autolog = autolog
        # A bare name is the common case: tracked(register="churn-model").
        if isinstance(register, str):
            from tracksdk.registry import Register

            register = Register(register)
        self.register = register
        self.formats = tuple(formats)
        # best="val_auc" is Gate("val_auc"): the child run to report is the best by it.
        if isinstance(best, str):
            from tracksdk.registry import Gate

            best = Gate(best)
        self.best = best

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name in self.__slots__
            if getattr(self, name) not in (None, {}, (), True)
        )
        return f"RunOptions({fields})"

    def overrides(self) -> dict[str, Any]:
        """The settings these options override."""
        out = dict(self.settings)
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.strict is not None:
            out["strict"] = self.strict
        if self.autolog is not None:
            autolog = self.autolog
            if isinstance(autolog, str):
                autolog = [autolog]  # autolog="sklearn", not its letters
            elif not isinstance(autolog, bool | Mapping):
                autolog = list(autolog)
            out["autolog"] = autolog
        return out

"""What ``tracked(...)`` was given (a light module: no dataclasses at import)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from tracksdk.exceptions import ConfigError

if TYPE_CHECKING:
    from tracksdk.registry import Gate, Register


class TrackedOptions(TypedDict, total=False):
    """The options of a run, as keywords: ``tracked(...)``'s signature, written once.

    ``tracked`` documents each of them; :class:`RunOptions` holds them, with the defaults.
    """

    experiment: str | None
    run_name: str | None
    tags: Mapping[str, Any] | None
    params: bool | Iterable[str]
    nested: bool | None
    strict: bool | None
    settings: Mapping[str, Any] | None
    autolog: bool | Iterable[str] | Mapping[str, Mapping[str, Any]] | None
    register: str | Register | None
    formats: Iterable[str]
    best: str | Gate | None
    key: str | None
    resume: str | None
    run_id: str | None
    distributed: str | None
    seed: int | None


class RunOptions:
    """Options of one ``tracked(...)``. Settings supply anything left as None."""

    __slots__ = (
        "autolog",
        "best",
        "distributed",
        "experiment",
        "formats",
        "key",
        "nested",
        "params",
        "register",
        "resume",
        "run_id",
        "run_name",
        "seed",
        "settings",
        "strict",
        "tags",
    )

    def __init__(self, **options: Unpack[TrackedOptions]) -> None:
        """Hold ``options``; absent ones take their defaults.

        Raises:
            TypeError: An option that does not exist (a typo), with the closest name.
        """
        _check_names(options)
        self.experiment = options.get("experiment")
        self.run_name = options.get("run_name")
        tags = options.get("tags")
        self.tags = dict(tags) if tags else None
        params = options.get("params", True)
        self.params: bool | tuple[str, ...] = params if isinstance(params, bool) else tuple(params)
        self.nested = options.get("nested")
        self.strict = options.get("strict")
        self.settings = dict(options.get("settings") or {})
        self.autolog = options.get("autolog")
        # A bare name is the common case: tracked(register="churn-model").
        register = options.get("register")
        if isinstance(register, str):
            from tracksdk.registry import Register

            register = Register(register)
        self.register: Register | None = register
        self.formats = tuple(options.get("formats", ()))
        # best="val_auc" is Gate("val_auc"): the child run to report is the best by it.
        best = options.get("best")
        if isinstance(best, str):
            from tracksdk.registry import Gate

            best = Gate(best)
        self.best: Gate | None = best
        self.key = _text_option("key", options.get("key"))
        self.run_id = _text_option("run_id", options.get("run_id"))
        self.resume = _choice("resume", options.get("resume"), RESUME_MODES, "resume.md")
        self.distributed = _choice(
            "distributed", options.get("distributed"), DISTRIBUTED_MODES, "distributed.md"
        )
        from tracksdk._seed import check

        self.seed = check(options.get("seed"))
        if self.key is not None and self.run_id is not None:
            raise ConfigError(
                "tracked(key=..., run_id=...): give one of them: a key names the run "
                "to continue or create, a run_id a run to continue (docs/resume.md)"
            )

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
        if self.resume is not None:
            out["resume"] = self.resume
        if self.distributed is not None:
            out["distributed"] = {**out.get("distributed", {}), "mode": self.distributed}
        if self.experiment is not None:
            out["experiment"] = self.experiment
        if self.seed is not None:
            out["seed"] = self.seed
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


def _choice(name: str, value: str | None, allowed: tuple[str, ...], doc: str) -> str | None:
    """``value`` when it is one of ``allowed`` (or None), else a ConfigError saying which are."""
    if value is not None and value not in allowed:
        raise ConfigError(
            f"tracked({name}={value!r}): {name} must be one of "
            f"{', '.join(map(repr, allowed))} (docs/{doc})"
        )
    return value


#: What ``distributed=`` accepts (docs/distributed.md).
DISTRIBUTED_MODES = ("rank0", "shared", "each")

#: What ``resume=`` accepts (docs/resume.md).
RESUME_MODES = ("allow", "must", "never")


def _text_option(name: str, value: Any) -> str | None:
    """A run key or id: a non-empty string, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"tracked({name}={value!r}): {name} must be a non-empty string, e.g. "
            f"{name}=os.environ['SLURM_JOB_ID'] (docs/resume.md)"
        )
    return value.strip()


def _check_names(options: Mapping[str, Any]) -> None:
    """Raise TypeError, as Python would for a named parameter, on an unknown option."""
    known = TrackedOptions.__optional_keys__
    unknown = [name for name in options if name not in known]
    if not unknown:
        return
    import difflib

    name = unknown[0]
    guess = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" Did you mean {guess[0]!r}?" if guess else ""
    raise TypeError(
        f"tracked() got an unexpected keyword argument {name!r}.{hint} "
        f"Its options are: {', '.join(TrackedOptions.__annotations__)}."
    )

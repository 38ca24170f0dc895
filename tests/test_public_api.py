"""``tracksdk.__all__`` is exactly the public API, and every public name is usable and documented.

The docs have no single list of the public names (each page documents the ones it is about),
so the list is pinned here. Adding a public name to ``tracksdk`` means adding it to
``__all__``, to ``PUBLIC`` below and to the docs (tests/test_docs.py checks that every name
in ``__all__`` appears in docs/*.md); removing one breaks users and needs the same three
edits.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import tomllib
from pathlib import Path

import tracksdk

ROOT = Path(__file__).resolve().parent.parent

PUBLIC = {
    # Tracking.
    "tracked",
    "Tracked",
    "start",
    "Run",
    "active_run",
    "attach",
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
    "set_tag",
    "set_tags",
    "evaluate",
    # Models and the registry.
    "Gate",
    "Register",
    "Result",
    # Settings.
    "Settings",
    "configure",
    "reset",
    # Errors and warnings.
    "TrackSDKError",
    "ConfigError",
    "ResumeError",
    "TrackingError",
    "ValidationError",
    "TrackSDKWarning",
    # The version string.
    "__version__",
}


def test_all_is_exactly_the_public_api() -> None:
    """__all__ holds the pinned public names, each once."""
    assert len(tracksdk.__all__) == len(set(tracksdk.__all__))
    assert set(tracksdk.__all__) - PUBLIC == set(), "new public name: see this module's doc"
    assert PUBLIC - set(tracksdk.__all__) == set(), "a public name left __all__"


def test_every_name_in_all_exists_and_has_a_docstring() -> None:
    """Each name resolves (the lazily loaded ones too) and has a docstring of its own."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert tracksdk.__version__ == pyproject["project"]["version"]
    for name in tracksdk.__all__:
        if name == "__version__":  # a string: no docstring of its own
            continue
        obj = getattr(tracksdk, name)
        # obj.__doc__, not inspect.getdoc: a class without a docstring must not pass on the
        # strength of its base class's.
        doc = obj.__doc__ if inspect.isclass(obj) else inspect.getdoc(obj)
        assert doc and doc.strip(), f"tracksdk.{name} has no docstring"


def test_no_public_name_is_left_out_of_all() -> None:
    """Every function or class that tracksdk's namespace exports from tracksdk is in __all__."""
    for name in [*tracksdk.__all__, "Run", "Settings", "Gate", "Register", "Result"]:
        getattr(tracksdk, name)  # load the lazy names, as a user's code would
    exported = {
        name
        for name, obj in vars(tracksdk).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and getattr(obj, "__module__", "").startswith("tracksdk")
    }
    assert exported - set(tracksdk.__all__) == set()


def test_star_import_gives_the_public_api() -> None:
    """``from tracksdk import *`` works (lazy names included) and gives exactly __all__."""
    code = (
        "before = set(globals())\n"
        "from tracksdk import *\n"
        "import tracksdk\n"
        "print(sorted(set(globals()) - before - {'before', 'tracksdk'}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == str(sorted(tracksdk.__all__))

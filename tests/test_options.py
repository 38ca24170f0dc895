"""tracked(...)'s options: one list of names and types (TrackedOptions), checked at the call."""

from __future__ import annotations

import re

import pytest

from tracksdk import Gate, Register, tracked
from tracksdk._options import TrackedOptions


def test_a_misspelt_option_is_a_type_error_naming_the_closest() -> None:
    """As for any Python function, a keyword that does not exist is a TypeError; it names
    the option meant.
    """
    with pytest.raises(TypeError, match=r"'experment'\. Did you mean 'experiment'\?"):
        tracked(experment="churn")  # type: ignore[call-overload]


def test_every_option_is_documented_on_tracked() -> None:
    """The options documented in tracked's docstring are exactly TrackedOptions'."""
    doc = tracked.__doc__ or ""
    args = doc.split("Args:")[1].split("Returns:")[0]
    documented = re.findall(r"^        (\w+):", args, flags=re.MULTILINE)
    assert documented == ["func", *TrackedOptions.__annotations__]


def test_short_forms_of_register_and_best() -> None:
    """A name stands for Register(name) and Gate(metric); lists become tuples."""
    options = tracked(register="churn-model", best="val_auc", params=["a"], formats=["onnx"])
    assert options.options.register == Register("churn-model")
    assert options.options.best == Gate("val_auc")
    assert options.options.params == ("a",)
    assert options.options.formats == ("onnx",)

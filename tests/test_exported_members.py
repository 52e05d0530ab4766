"""The public surface is exactly what `__all__` lists, and every public name is documented."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "callresilience",
    "callresilience.engine",
    "callresilience.health",
    "callresilience.journal",
    "callresilience.metrics",
    "callresilience.resilience",
    "callresilience.routing",
    "callresilience.servicenow",
    "callresilience.sim",
    "callresilience.testing",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_exactly_the_public_names(name: str) -> None:
    """`__all__` equals the module's public names, sorted, with nothing missing or extra."""
    module = importlib.import_module(name)
    public = {
        member
        for member, value in vars(module).items()
        if not member.startswith("_")
        and not (hasattr(value, "__file__") or type(value).__name__ == "module")
        and member != "annotations"
    }
    assert set(module.__all__) == public
    assert list(module.__all__) == sorted(module.__all__)


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_has_a_docstring(name: str) -> None:
    """Every exported class and function says what it is for."""
    module = importlib.import_module(name)
    for member in module.__all__:
        value = getattr(module, member)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name}.{member} has no docstring"

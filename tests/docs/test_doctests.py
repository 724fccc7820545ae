"""The examples in the loss package's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import autotimm.losses

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(autotimm.losses.__path__, "autotimm.losses.")
)


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    with autotimm.losses.get_loss_registry().temporary():
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"

"""The examples in the package's docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import autotimm
import autotimm.losses

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(autotimm.__path__, "autotimm.")
    if not name.endswith("__main__")  # importing it runs the command line
)


def test_every_area_of_the_package_is_collected() -> None:
    areas = {name.split(".")[1] for name in MODULES}
    assert {"losses", "models", "data", "config", "trainer"} <= areas


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples(
    module_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(module_name)
    with autotimm.losses.get_loss_registry().temporary():
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"

"""Fixtures of the config CLI tests: synthetic datasets per task and the configs/ files."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT

CONFIGS = ROOT / "configs"
TASK_CONFIGS = {
    "classification": "classification.yaml",
    "segmentation": "segmentation.yaml",
    "detection": "detection.yaml",
    "instance_segmentation": "instance_segmentation.yaml",
}
"""Task -> its config in configs/ (each reads data/<task>)."""

_SYNTHETIC = {  # tiny: 4 training images (per class for classification)
    "classification": ["--image-size", "32", "--count", "4"],
    "segmentation": ["--image-size", "32", "--count", "4"],
    "detection": ["--image-size", "64", "--count", "4"],
    "instance_segmentation": ["--image-size", "64", "--count", "4"],
}


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``<tmp>/data/<task>`` for the four tasks, written by ``autotimm data synthetic``."""
    from autotimm.cli import main

    root = tmp_path_factory.mktemp("synthetic") / "data"
    for task, options in _SYNTHETIC.items():
        code = main(["data", "synthetic", "--task", task, "--out", str(root / task), *options])
        assert code == 0
    return root


def load_config(name: str, data_root: Path | None = None) -> dict[str, Any]:
    """A configs/ file as data, with ``data_dir`` pointed at ``data_root`` (absolute)."""
    config = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    if data_root is not None:
        data_dir = Path(config["data"]["init_args"]["data_dir"])
        config["data"]["init_args"]["data_dir"] = str(data_root / data_dir.name)
    return copy.deepcopy(config)


@pytest.fixture
def clean_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``sys.path`` and the configs/ example module are restored after the test.

    The registry is restored after every test (tests/conftest.py), so a module whose import
    registered a loss must be imported again by the next test that needs it.
    """
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_losses", raising=False)
    yield
    sys.modules.pop("my_losses", None)

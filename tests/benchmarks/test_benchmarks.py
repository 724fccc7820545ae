"""The benchmark entry point runs and prints one table with every comparison."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_python_m_benchmarks_prints_one_table_with_every_row() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| benchmark | ours | peer | ratio")
    text = "\n".join(table)
    expected = [
        "get_loss('focal'",
        "import autotimm.losses",
        "focal forward+backward",
        "giou forward+backward",
        "SemanticSegmentor",
    ]
    # rows whose peer library (the optional `bench` extra) is installed
    if importlib.util.find_spec("monai"):
        expected.append("dice forward+backward")
    if importlib.util.find_spec("segmentation_models_pytorch"):
        expected.append("lovasz forward+backward")
    for row in expected:
        assert row in text, row
    for row in table[2:]:
        ratio = float(row.split("|")[4])
        assert 0 < ratio < 100, row

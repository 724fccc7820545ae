"""The benchmark entry point runs and prints one table with every comparison."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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
    for expected in (
        "get_loss('focal'",
        "import autotimm.losses",
        "dice forward+backward",
        "focal forward+backward",
        "giou forward+backward",
        "SemanticSegmentor",
    ):
        assert expected in text, expected
    for row in table[2:]:
        ratio = float(row.split("|")[4])
        assert 0 < ratio < 100, row

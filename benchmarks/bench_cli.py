"""Fail-fast: ``autotimm fit --config bad.yaml`` against ``import autotimm, lightning, timm``.

A bad config must be rejected before anything is built, so its wall time should be close to
the cost of importing the libraries at all. Target: ratio <= 1.5.

Run: ``python benchmarks/bench_cli.py`` (or ``python -m benchmarks.bench_cli``). Each round
starts fresh interpreters, ours and the peer alternating; the medians are reported.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["BAD_CONFIG", "PEER_IMPORT", "main", "measure", "run"]

PEER_IMPORT = "import autotimm, lightning, timm"

BAD_CONFIG = """\
model:
  class_path: SemanticSegmentor
  init_args:
    backbone: resnet10t
    num_classes: 3
    pretrained: false
    lrr: 0.01
    loss_fn:
      name: dice
      params: {smoth: 0.5, reduction: avg}
data:
  class_path: SegmentationDataModule
  init_args:
    data_dir: data/missing
    batch_size: four
trainer:
  max_stepz: 10
"""
"""Problems in every section: jsonargparse stops, and the complete check reports all six."""


def measure(rounds: int = 5) -> tuple[float, float]:
    """Median wall seconds of ``autotimm fit --config bad.yaml`` and of the peer import.

    Example:
        >>> fit_seconds, import_seconds = measure(rounds=1)  # doctest: +SKIP
    """
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "bad.yaml"
        config.write_text(BAD_CONFIG, encoding="utf-8")
        ours = [sys.executable, "-m", "autotimm", "fit", "--config", str(config)]
        peer = [sys.executable, "-c", PEER_IMPORT]
        times: dict[str, list[float]] = {"ours": [], "peer": []}
        _wall(peer, directory, expected=0)  # warm the file cache for both
        for index in range(rounds):
            pair = [("ours", ours, 2), ("peer", peer, 0)]
            for name, command, code in pair if index % 2 == 0 else reversed(pair):
                times[name].append(_wall(command, directory, expected=code))
    return statistics.median(times["ours"]), statistics.median(times["peer"])


def _wall(command: list[str], cwd: str, *, expected: int) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != expected:
        raise RuntimeError(
            f"{' '.join(command)} exited with {result.returncode}, expected {expected}:\n"
            f"{result.stderr[-2000:]}"
        )
    return elapsed


def run(rounds: int = 5) -> list[dict[str, Any]]:
    """One row in the benchmark table's format."""
    ours, peer = measure(rounds)
    return [
        {
            "benchmark": "autotimm fit --config bad.yaml vs import autotimm, lightning, timm",
            "ours": f"{ours * 1e3:.0f} ms",
            "peer": f"{peer * 1e3:.0f} ms",
            "ratio": ours / peer,
            "target": "<= 1.5",
            "note": "fresh interpreter each; the bad config has problems in every section",
        }
    ]


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: ours {row['ours']}, peer {row['peer']}, "
            f"ratio {row['ratio']:.2f} (target {row['target']}); {row['note']}"
        )


if __name__ == "__main__":
    main()

"""A bad config fails fast: ``autotimm fit --config bad.yaml`` against importing what it needs.

``autotimm fit`` has to import autotimm, Lightning and timm before it can read a config, so
``python -c "import autotimm, lightning, timm"`` is the least any run costs. Checking a config
with a problem in every section (a misspelled loss argument, a missing data directory, ...) should
add little to that: no backbone built, no data read. Target: ``<= 1.5`` x, wall time of
fresh interpreters run alternately. The row is skipped while ``autotimm fit`` does not exist.

Run: ``python benchmarks/bench_cli.py`` (or ``python -m benchmarks --only fit``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._table import Row
from benchmarks._timing import command, interleaved_many

__all__ = ["BAD_CONFIG", "BASELINE", "FIT", "run"]

FIT = [sys.executable, "-m", "autotimm", "fit"]
BASELINE = [sys.executable, "-c", "import autotimm, lightning, timm"]

BENCHMARK = (
    "autotimm fit --config bad.yaml (misspelled loss argument, missing data_dir) "
    "vs python -c 'import autotimm, lightning, timm'"
)

# Problems in every section (jsonargparse stops at the first; the complete check reports all
# six); ``{data_dir}`` is replaced with a path that does not exist.
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
    data_dir: {data_dir}
    batch_size: four
trainer:
  max_stepz: 10
"""


def _fit_exists() -> bool:
    result = subprocess.run(
        [*FIT, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return result.returncode == 0


def run(rounds: int = 7) -> list[Row]:
    """One row, skipped while ``autotimm fit`` does not exist."""
    row = Row(key="fit", benchmark=BENCHMARK, threads="-", target="<= 1.5")
    if not _fit_exists():
        row.skipped = "`autotimm fit` does not exist yet"
        print(f"skipping fit: {row.skipped}", file=sys.stderr)
        return [row]
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bad.yaml"
        config.write_text(BAD_CONFIG.replace("{data_dir}", str(Path(tmp) / "missing")))
        ours, peer = [*FIT, "--config", str(config)], BASELINE
        # runs in the temporary directory, so a (wrongly) created run directory goes with it
        check = subprocess.run(ours, capture_output=True, text=True, timeout=600, cwd=tmp)
        if check.returncode != 2:
            last = (check.stderr.strip().splitlines() or [""])[-1]
            row.error = f"exit status {check.returncode}, expected 2 for a bad config: {last}"
            return [row]
        timing = interleaved_many(
            [command(ours, check=False, cwd=tmp), command(peer, cwd=tmp)],
            rounds=rounds,
            warmup=1,
            numbers=[1, 1],
        )
    row.ours = f"{timing.median(0) * 1e3:.0f} ms"
    row.peer = f"{timing.median(1) * 1e3:.0f} ms"
    row.ratio = timing.ratio(0, 1)
    row.note = "fresh interpreter each, wall time; exit status 2"
    return [row]


if __name__ == "__main__":
    from benchmarks._table import to_markdown

    print(to_markdown(run()))

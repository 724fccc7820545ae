"""Registry overhead: ``get_loss("focal", ...)`` against ``FocalLoss(...)``, and import cost.

Run: ``python benchmarks/bench_registry.py`` (or ``python -m benchmarks.bench_registry``).
Targets: per-call overhead under 10 us and ratio under 2; ``import autotimm.losses`` within
1.15x of ``import torch, pydantic``.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._table import Row
from benchmarks._timing import interleaved_commands, interleaved_many

__all__ = ["run"]


def run(rounds: int = 31, import_rounds: int = 9) -> list[Row]:
    """Measure and return one row per comparison (run at the caller's thread count)."""
    import torch

    from autotimm.losses import FocalLoss, get_loss

    timing = interleaved_many(
        [
            lambda: get_loss("focal", alpha=0.3, gamma=2.5),
            lambda: FocalLoss(alpha=0.3, gamma=2.5),
        ],
        rounds=rounds,
        warmup=1,
        numbers=[2000, 2000],
    )
    get_median, direct_median = timing.median(0), timing.median(1)
    imports = interleaved_commands(
        "import autotimm.losses", "import torch, pydantic", rounds=import_rounds
    )
    return [
        Row(
            key="registry",
            benchmark="get_loss('focal', alpha=0.3, gamma=2.5) vs FocalLoss(...)",
            threads=str(torch.get_num_threads()),
            ours=f"{get_median * 1e6:.1f} us",
            peer=f"{direct_median * 1e6:.1f} us",
            ratio=timing.ratio(0, 1),
            target="< 2",
            note=f"overhead {(get_median - direct_median) * 1e6:.1f} us/call (target < 10)",
        ),
        Row(
            key="import",
            benchmark="import autotimm.losses vs import torch, pydantic",
            threads="-",
            ours=f"{imports.median(0) * 1e3:.0f} ms",
            peer=f"{imports.median(1) * 1e3:.0f} ms",
            ratio=imports.ratio(0, 1),
            target="< 1.15",
            note="fresh interpreter each, wall time",
        ),
    ]


def main() -> None:
    from benchmarks._table import to_markdown

    print(to_markdown(run()))


if __name__ == "__main__":
    main()

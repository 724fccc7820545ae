"""Registry overhead: ``get_loss("focal", ...)`` against ``FocalLoss(...)``, and import cost.

Run: ``python benchmarks/bench_registry.py`` (or ``python -m benchmarks.bench_registry``).
Targets: per-call overhead under 10 us and ratio under 2; ``import autotimm.losses`` within
1.15x of ``import torch, pydantic``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._timing import interleaved, interleaved_commands


def run(rounds: int = 31, import_rounds: int = 9) -> list[dict[str, Any]]:
    """Measure and return one row per comparison."""
    from autotimm.losses import FocalLoss, get_loss

    get_median, direct_median = interleaved(
        lambda: get_loss("focal", alpha=0.3, gamma=2.5),
        lambda: FocalLoss(alpha=0.3, gamma=2.5),
        rounds=rounds,
        number=2000,
    )
    ours_import, peer_import = interleaved_commands(
        "import autotimm.losses", "import torch, pydantic", rounds=import_rounds
    )
    return [
        {
            "benchmark": "get_loss('focal', alpha=0.3, gamma=2.5) vs FocalLoss(...)",
            "ours": f"{get_median * 1e6:.1f} us",
            "peer": f"{direct_median * 1e6:.1f} us",
            "ratio": get_median / direct_median,
            "target": "< 2",
            "note": f"overhead {(get_median - direct_median) * 1e6:.1f} us/call (target < 10)",
        },
        {
            "benchmark": "import autotimm.losses vs import torch, pydantic",
            "ours": f"{ours_import * 1e3:.0f} ms",
            "peer": f"{peer_import * 1e3:.0f} ms",
            "ratio": ours_import / peer_import,
            "target": "< 1.15",
            "note": "fresh interpreter each",
        },
    ]


def main() -> None:
    for row in run():
        print(
            f"{row['benchmark']}: ours {row['ours']}, peer {row['peer']}, "
            f"ratio {row['ratio']:.2f} (target {row['target']}); {row['note']}"
        )


if __name__ == "__main__":
    main()

"""Every benchmark in one table: ``python -m benchmarks`` or ``python benchmarks/run.py``.

Each row is measured interleaved against its peer in the same run (medians of alternating
rounds) and reported as a ratio ours / peer. ``--write-docs`` also rewrites the table in
``docs/benchmarks.md`` with the machine it ran on and the command that produced it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_losses, bench_registry, bench_training  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN BENCHMARK TABLE -->", "<!-- END BENCHMARK TABLE -->"

LOSS_TARGETS = {"dice": "<= 0.8", "focal": "<= 0.6", "giou": "<= 1.0"}


def _loss_rows(rounds: int) -> list[dict[str, Any]]:
    rows = []
    for row in bench_losses.run(rounds=rounds):
        rows.append(
            {
                "benchmark": f"{row['name']} forward+backward: {row['description']}",
                "ours": f"{row['ours_ms']:.1f} ms, {row['ours_peak_mb']:.0f} MiB peak",
                "peer": f"{row['peer_ms']:.1f} ms, {row['peer_peak_mb']:.0f} MiB peak",
                "ratio": row["ratio"],
                "target": LOSS_TARGETS.get(row["name"], "-") + " (memory <= peer)",
                "note": "memory ok"
                if row["ours_peak_mb"] <= row["peer_peak_mb"]
                else "MEMORY ABOVE PEER",
            }
        )
    return rows


def collect(quick: bool = False) -> list[dict[str, Any]]:
    """Run every benchmark; ``quick`` uses fewer rounds (for a smoke test, not for figures)."""
    rows = bench_registry.run(rounds=5 if quick else 31, import_rounds=3 if quick else 9)
    rows += _loss_rows(rounds=3 if quick else 15)
    rows += bench_training.run(rounds=3 if quick else 7)
    return rows


def to_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | ours | peer | ratio | target | note |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(
            f"| {row['benchmark']} | {row['ours']} | {row['peer']} | {row['ratio']:.2f} "
            f"| {row['target']} | {row['note']} |"
        )
    return "\n".join(lines)


def machine() -> str:
    import torch

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average {load} "
        f"at start, {datetime.date.today().isoformat()}"
    )


def write_docs(table: str, where: str) -> None:
    text = DOCS.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{DOCS} has no {BEGIN} ... {END} section to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    body = f"\n\nMachine: {where}.\n\nCommand: `python -m benchmarks --write-docs`\n\n{table}\n\n"
    DOCS.write_text(f"{head}{BEGIN}{body}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test")
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a loaded 2-core machine multi-threaded "
        "kernels stall unpredictably, which swamps the ratios)",
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    where = machine()
    print(f"Machine: {where}", flush=True)
    table = to_markdown(collect(quick=args.quick))
    print(table)
    if args.write_docs:
        write_docs(table, where)
        print(f"updated {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Every benchmark in one table: ``python -m benchmarks`` or ``python benchmarks/run.py``.

The table is printed under a line naming the machine (CPU model, vector instruction set,
torch's CPU kernels, thread counts, load): figures differ across CPUs and thread counts, so a
table means nothing without it. Each loss runs at 1 thread and at all threads, against its
floor (the cheapest forward + backward of its activation) and its peer, interleaved in the
same run. ``--write-docs`` rewrites the table in ``docs/benchmarks.md`` together with the
machine line and the command that produced it. The exit status is 1 when a row could not run
(``ERROR``), 0 otherwise; missed targets are reported in the table, not in the status.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_cli, bench_losses, bench_registry, bench_training  # noqa: E402
from benchmarks._machine import all_threads, machine_line  # noqa: E402
from benchmarks._table import Row, to_markdown  # noqa: E402

__all__ = ["DOCS", "collect", "main", "summary", "write_docs"]

DOCS = ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- BEGIN BENCHMARK TABLE -->", "<!-- END BENCHMARK TABLE -->"

# what ``--only`` accepts besides loss names
SECTIONS = ("registry", "import", "training", "fit")


def _wanted(only: list[str] | None, *keys: str) -> bool:
    return not only or any(key in only for key in keys)


def collect(
    quick: bool = False, threads: list[int] | None = None, only: list[str] | None = None
) -> list[Row]:
    """Run the benchmarks (those named in ``only``, default all); one row per measurement.

    ``quick`` uses few rounds and short samples: a smoke test of the runner, not figures.
    The registry and training rows run at the first thread count, the losses at every one.
    """
    import torch

    threads = threads or sorted({1, all_threads()})
    before = torch.get_num_threads()
    rows: list[Row] = []
    try:
        torch.set_num_threads(threads[0])
        if _wanted(only, "registry", "import"):
            registry_rows = bench_registry.run(
                rounds=5 if quick else 31, import_rounds=3 if quick else 9
            )
            rows += [row for row in registry_rows if _wanted(only, row.key)]
        loss_names = [case.name for case in bench_losses.CASES]
        if _wanted(only, *loss_names):
            rows += bench_losses.run(
                rounds=3 if quick else 15,
                warmup=1 if quick else 2,
                names=[name for name in only or [] if name in loss_names] or None,
                threads=threads,
                min_sample=0.005 if quick else 0.02,
            )
        torch.set_num_threads(threads[0])
        if _wanted(only, "training"):
            rows += bench_training.run(rounds=2 if quick else 7, steps=2 if quick else 4)
        if _wanted(only, "fit"):
            rows += bench_cli.run(rounds=2 if quick else 7)
    finally:
        torch.set_num_threads(before)
    return rows


def summary(rows: list[Row]) -> str:
    """``"12 rows: 7 pass, 2 FAIL, 3 skipped, 0 ERROR"`` (rows without a target are neither)."""
    counts = {"pass": 0, "FAIL": 0, "skipped": 0, "ERROR": 0}
    for row in rows:
        for word in counts:
            if row.result.startswith(word):
                counts[word] += 1
    return f"{len(rows)} rows: " + ", ".join(f"{n} {word}" for word, n in counts.items())


def write_docs(text: str, path: Path = DOCS) -> None:
    """Replace what lies between the table markers of ``path`` with ``text``."""
    page = path.read_text()
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to replace")
    head, rest = page.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n\n{text}\n\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke test")
    parser.add_argument(
        "--write-docs", action="store_true", help="rewrite the table in docs/benchmarks.md"
    )
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS,
        help="the page --write-docs rewrites (default: docs/benchmarks.md)",
    )
    parser.add_argument(
        "--threads",
        type=bench_losses.parse_threads,
        default=None,
        help="comma-separated torch thread counts for the loss rows, 'all' meaning torch's "
        f"default ({all_threads()} here); default '1,all'",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help=f"run only these rows: loss names or {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    known = {case.name for case in bench_losses.CASES} | set(SECTIONS)
    unknown = sorted(set(args.only or []) - known)
    if unknown:
        parser.error(f"--only: unknown {unknown}; choose from {sorted(known)}")
    if args.write_docs and args.only:
        parser.error("--write-docs writes the whole table: drop --only")
    threads = args.threads or sorted({1, all_threads()})

    where = machine_line(threads)
    print(f"Machine: {where}", flush=True)
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] > (os.cpu_count() or 1)
    if busy and max(threads) > 1:
        print(
            "warning: the machine is busier than its core count; multi-threaded rows then "
            "measure threads waiting for a core as much as the losses.",
            file=sys.stderr,
            flush=True,
        )
    rows = collect(quick=args.quick, threads=threads, only=args.only)
    table = to_markdown(rows)
    print(table)
    print(summary(rows))
    if args.write_docs:
        shown = ["--write-docs"] + (["--quick"] if args.quick else [])
        if args.threads:
            shown += ["--threads", ",".join(map(str, threads))]
        command = shlex.join(["python", "-m", "benchmarks", *shown])
        write_docs(f"Machine: {where}.\n\nCommand: `{command}`\n\n{table}", args.docs)
        print(f"updated {args.docs}")
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

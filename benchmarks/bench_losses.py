"""Forward + backward time and peak memory of built-in losses against their reference peers.

Run ``python benchmarks/bench_losses.py [--rounds N]`` (CPU). Each row pits one of our losses
against the library users compare it with:

- ``dice``  on logits ``[8, 19, 128, 128]``  vs MONAI ``DiceLoss(softmax=True, to_onehot_y=True)``
- ``focal`` on ``[80000, 80]`` float targets, ``reduction="sum"``
  vs ``torchvision.ops.sigmoid_focal_loss``
- ``giou`` / ``diou`` / ``ciou`` on 200k box pairs vs ``torchvision.ops.*_box_iou_loss``
- ``lovasz`` on ``[4, 19, 64, 64]`` vs segmentation_models_pytorch ``LovaszLoss("multiclass")``
- ``cross_entropy`` on ``[8, 19, 128, 128]`` vs ``torch.nn.CrossEntropyLoss``

Timing: every round runs ours and the peer once each (forward + backward on fresh leaf
inputs), alternating which goes first, after warm-up rounds; the table reports medians over
rounds and the ratio ours/peer (below 1 means ours is faster). On a shared machine whose load
exceeds its cores, OpenMP parallel regions stall for milliseconds each, so multi-threaded
timings then count parallel regions more than work: ``--threads 1`` gives the stable
comparison (the script warns when this applies).

Peak memory: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free
of the CPU allocator during one forward + backward; the peak of the running sum of those events
is the most tensor memory alive at once on top of what existed before (the inputs). That counts
tensor storage exactly and ignores allocator caching and Python objects, so it compares
implementations rather than ``malloc`` behaviour. (``torch.cuda`` memory stats are unavailable
on CPU and process RSS is dominated by the allocator's caching.)

A row whose peer library is not installed is skipped with a message. ``run()`` returns the rows
as dicts (name, ours_ms, peer_ms, ratio, ours_peak_mb, peer_peak_mb) for other reports.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # ``python benchmarks/bench_losses.py`` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Inputs = tuple[torch.Tensor, ...]
LossFn = Callable[..., torch.Tensor]


@dataclass
class Case:
    """One comparison: how to make inputs, our loss, the peer loss and what it needs."""

    name: str
    make_inputs: Callable[[], Inputs]
    ours: Callable[[], LossFn]
    peer: Callable[[], LossFn]
    peer_module: str
    description: str


def _seg_inputs(shape: tuple[int, int, int, int]) -> Callable[[], Inputs]:
    def make() -> Inputs:
        generator = torch.Generator().manual_seed(0)
        batch, classes, height, width = shape
        logits = torch.randn(shape, generator=generator)
        target = torch.randint(0, classes, (batch, height, width), generator=generator)
        return logits, target

    return make


def _focal_inputs() -> Inputs:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(80000, 80, generator=generator) * 3
    target = (torch.rand(80000, 80, generator=generator) < 0.01).float()
    return logits, target


def _box_inputs() -> Inputs:
    generator = torch.Generator().manual_seed(0)

    def boxes() -> torch.Tensor:
        xy = torch.rand(200_000, 2, generator=generator) * 500
        wh = torch.rand(200_000, 2, generator=generator) * 100 + 1
        return torch.cat([xy, xy + wh], dim=1)

    return boxes(), boxes()


def _ours(name: str, **kwargs: Any) -> Callable[[], LossFn]:
    def build() -> LossFn:
        from autotimm.losses import get_loss

        module: LossFn = get_loss(name, **kwargs)
        return module

    return build


def _monai_dice() -> LossFn:
    from monai.losses.dice import DiceLoss

    dice = DiceLoss(softmax=True, to_onehot_y=True)
    return lambda logits, target: dice(logits, target.unsqueeze(1))


def _torchvision(function: str, **kwargs: Any) -> Callable[[], LossFn]:
    def build() -> LossFn:
        import torchvision.ops

        fn = getattr(torchvision.ops, function)
        return lambda pred, target: fn(pred, target, **kwargs)

    return build


def _smp_lovasz() -> LossFn:
    from segmentation_models_pytorch.losses import LovaszLoss

    loss: LossFn = LovaszLoss(mode="multiclass")
    return loss


def _torch_ce() -> LossFn:
    loss: LossFn = torch.nn.CrossEntropyLoss()
    return loss


CASES = [
    Case(
        "dice",
        _seg_inputs((8, 19, 128, 128)),
        _ours("dice"),
        _monai_dice,
        "monai",
        "logits [8,19,128,128] vs MONAI DiceLoss(softmax, to_onehot_y)",
    ),
    Case(
        "focal",
        _focal_inputs,
        _ours("focal", reduction="sum"),
        _torchvision("sigmoid_focal_loss", reduction="sum"),
        "torchvision",
        "logits [80000,80], float targets, sum vs torchvision sigmoid_focal_loss",
    ),
    Case(
        "giou",
        _box_inputs,
        _ours("giou"),
        _torchvision("generalized_box_iou_loss", reduction="mean"),
        "torchvision",
        "200k box pairs vs torchvision generalized_box_iou_loss",
    ),
    Case(
        "diou",
        _box_inputs,
        _ours("diou"),
        _torchvision("distance_box_iou_loss", reduction="mean"),
        "torchvision",
        "200k box pairs vs torchvision distance_box_iou_loss",
    ),
    Case(
        "ciou",
        _box_inputs,
        _ours("ciou"),
        _torchvision("complete_box_iou_loss", reduction="mean"),
        "torchvision",
        "200k box pairs vs torchvision complete_box_iou_loss",
    ),
    Case(
        "lovasz",
        _seg_inputs((4, 19, 64, 64)),
        _ours("lovasz"),
        _smp_lovasz,
        "segmentation_models_pytorch",
        "logits [4,19,64,64] vs smp LovaszLoss(multiclass)",
    ),
    Case(
        "cross_entropy",
        _seg_inputs((8, 19, 128, 128)),
        _ours("cross_entropy", ignore_index=255),
        _torch_ce,
        "torch",
        "logits [8,19,128,128] vs torch.nn.CrossEntropyLoss",
    ),
]


def _step(loss_fn: LossFn, inputs: Inputs) -> None:
    pred = inputs[0].detach().requires_grad_()
    torch.autograd.backward(loss_fn(pred, *inputs[1:]))


def _time_ms(loss_fn: LossFn, inputs: Inputs) -> float:
    start = time.perf_counter()
    _step(loss_fn, inputs)
    return (time.perf_counter() - start) * 1e3


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the profiler backend's own log lines, which it writes to file descriptor 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(loss_fn: LossFn, inputs: Inputs) -> float:
    """Peak tensor memory (MiB) allocated on top of the inputs during one forward + backward.

    Replays the profiler's raw allocation (+bytes) and free (-bytes) events of the CPU
    allocator in time order; the peak of their running sum is the answer. It includes the
    gradient of the prediction, which every implementation has to allocate.
    """
    from torch.profiler import ProfilerActivity, profile

    _step(loss_fn, inputs)  # warm up lazy initialisation outside the measurement
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _step(loss_fn, inputs)
    events = sorted(
        (event.start_ns(), event.nbytes())
        for event in prof.profiler.kineto_results.events()
        if event.name() == "[memory]"
    )
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak / 2**20


def run(rounds: int = 15, warmup: int = 3, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Time every case (interleaved medians) and measure peak memory; return one dict per row.

    Rows whose peer is not installed are skipped (with a message on stderr).
    """
    rows: list[dict[str, Any]] = []
    for case in CASES:
        if names and case.name not in names:
            continue
        try:
            if importlib.util.find_spec(case.peer_module) is None:
                raise ImportError(f"{case.peer_module} is not installed")
            peer = case.peer()
        except ImportError as error:
            print(f"skipping {case.name}: its peer is unavailable ({error})", file=sys.stderr)
            continue
        inputs = case.make_inputs()
        ours = case.ours()
        for _ in range(warmup):
            _step(ours, inputs)
            _step(peer, inputs)
        ours_ms: list[float] = []
        peer_ms: list[float] = []
        for i in range(rounds):
            if i % 2 == 0:
                ours_ms.append(_time_ms(ours, inputs))
                peer_ms.append(_time_ms(peer, inputs))
            else:
                peer_ms.append(_time_ms(peer, inputs))
                ours_ms.append(_time_ms(ours, inputs))
        ours_median, peer_median = statistics.median(ours_ms), statistics.median(peer_ms)
        rows.append(
            {
                "name": case.name,
                "description": case.description,
                "ours_ms": ours_median,
                "peer_ms": peer_median,
                "ratio": ours_median / peer_median,
                "ours_peak_mb": peak_memory_mb(ours, inputs),
                "peer_peak_mb": peak_memory_mb(peer, inputs),
            }
        )
    return rows


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`run`'s rows."""
    header = (
        f"{'loss':<14}{'ours ms':>10}{'peer ms':>10}{'ratio':>8}{'ours MiB':>10}{'peer MiB':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['name']:<14}{row['ours_ms']:>10.1f}{row['peer_ms']:>10.1f}{row['ratio']:>8.2f}"
            f"{row['ours_peak_mb']:>10.1f}{row['peer_peak_mb']:>10.1f}"
        )
    lines.append("")
    lines += [f"{row['name']}: {row['description']}" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per loss")
    parser.add_argument("--only", nargs="*", help="loss names to run (default: all)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds, "
        f"load average {load}",
        flush=True,
    )
    if torch.get_num_threads() > 1 and os.getloadavg()[0] > (os.cpu_count() or 1):
        print(
            "warning: the machine is busier than its core count; multi-threaded ops then stall "
            "on every parallel region (about 10 ms each here), which measures the scheduler "
            "rather than the losses. Compare with --threads 1.",
            flush=True,
        )
    print(format_rows(run(rounds=args.rounds, names=args.only)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

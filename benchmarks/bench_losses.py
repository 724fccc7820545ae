"""Forward + backward time and peak memory of built-in losses against their floor and their peers.

Run ``python -m benchmarks --only focal dice`` (the whole table) or
``python benchmarks/bench_losses.py [--rounds N] [--only NAME ...] [--threads 1,all]``.

Every loss is reached through its public API (``autotimm.losses.get_loss``), so the rows keep
working whatever the implementation behind it. Each row measures, interleaved in one run:

- **ours**: the registered loss, forward + backward on fresh leaf inputs;
- **floor**: the cheapest forward + backward of the same activation on the same input, i.e.
  ``torch.sigmoid(x).sum()`` for sigmoid-based losses, ``torch.softmax(x, 1).sum()`` for
  softmax-based ones and the summed intersection area of the two box sets for box IoU losses.
  No implementation of the loss can do less than read the input, apply the activation and
  write its gradient, so ``ours / floor`` says how far a loss is from what the machine allows,
  on any CPU (peers are often far from it themselves);
- **peer**, where one exists and is installed: the library users compare it with
  (``ours / peer``, below 1 means ours is faster).

Each loss runs at 1 thread and at all threads (``--threads``), since a loss that is near its
floor at 1 thread can stall at several when its kernels are small.

Timing: ``benchmarks._timing.interleaved_many``: warm-up calls, then rounds in which every
contender runs once in a rotated order; the table shows medians and the median of per-round
ratios. A ratio whose quartiles differ by more than 10% is marked noisy.

Peak memory (1-thread row only): ``torch.profiler`` with ``profile_memory=True`` records every
allocation and free of the CPU allocator during one forward + backward; the peak of the running
sum of those events is the most tensor memory alive at once on top of what existed before (the
inputs). That counts tensor storage exactly and ignores allocator caching and Python objects,
so it compares implementations rather than ``malloc`` behaviour.

A row whose peer library is not installed keeps its floor columns; a row whose loss is not
registered yet (``weighted_sum``, ``asymmetric``, ... while they are being written) is listed
as skipped, with its targets, and fills in on its own once ``get_loss`` knows the name.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

if __package__ in (None, ""):  # ``python benchmarks/bench_losses.py`` from a checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import all_threads, machine_line
from benchmarks._table import Row, to_markdown
from benchmarks._timing import Timing, interleaved_many

__all__ = ["CASES", "Case", "Floor", "peak_memory_mb", "run", "thread_label"]

Inputs = tuple[torch.Tensor, ...]
LossFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Floor:
    """The cheapest forward + backward of a loss's activation: ``fn(pred, *rest)``."""

    label: str
    fn: LossFn


def _sigmoid_floor(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x).sum()


def _softmax_floor(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, 1).sum()


def _box_floor(pred: torch.Tensor, target: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    # every IoU-type loss computes at least the intersection of the two boxes
    top_left = torch.maximum(pred[:, :2], target[:, :2])
    bottom_right = torch.minimum(pred[:, 2:], target[:, 2:])
    return (bottom_right - top_left).clamp(min=0).prod(1).sum()


SIGMOID = Floor("sigmoid(x).sum()", _sigmoid_floor)
SOFTMAX = Floor("softmax(x, 1).sum()", _softmax_floor)
BOX = Floor("box intersection area", _box_floor)


@dataclass
class Case:
    """One loss row: inputs, our loss (by registry name), its floor and optionally a peer."""

    name: str
    description: str
    make_inputs: Callable[[], Inputs]
    ours: Callable[[], LossFn]
    floor: Floor
    peer: Callable[[], LossFn] | None = None
    peer_module: str | None = None  # checked with find_spec before ``peer`` is called
    target: str = "-"  # ours / peer
    floor_target: str = "-"  # ours / floor
    note: str = ""
    requires: tuple[str, ...] = field(default=())  # registry names; default: (name,)


# ---------------------------------------------------------------------------------- inputs


def _seg_inputs(shape: tuple[int, int, int, int]) -> Callable[[], Inputs]:
    def make() -> Inputs:
        generator = torch.Generator().manual_seed(0)
        batch, classes, height, width = shape
        logits = torch.randn(shape, generator=generator)
        target = torch.randint(0, classes, (batch, height, width), generator=generator)
        return logits, target

    return make


def _dense_inputs() -> Inputs:
    """``[80000, 80]`` logits (an 80-class detector's anchors) and sparse 0/1 float targets."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(80000, 80, generator=generator) * 3
    target = (torch.rand(80000, 80, generator=generator) < 0.01).float()
    return logits, target


def _score_inputs() -> Inputs:
    """``[80000, 80]`` logits and IoU-aware soft targets: a score in (0, 1] at positives, else 0."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(80000, 80, generator=generator) * 3
    positive = torch.rand(80000, 80, generator=generator) < 0.01
    target = torch.where(positive, torch.rand(80000, 80, generator=generator), 0.0)
    return logits, target


def _class_index_inputs() -> Inputs:
    """``[80000, 80]`` logits and one class index per row."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(80000, 80, generator=generator) * 3
    return logits, torch.randint(0, 80, (80000,), generator=generator)


def _box_inputs() -> Inputs:
    generator = torch.Generator().manual_seed(0)

    def boxes() -> torch.Tensor:
        xy = torch.rand(200_000, 2, generator=generator) * 500
        wh = torch.rand(200_000, 2, generator=generator) * 100 + 1
        return torch.cat([xy, xy + wh], dim=1)

    return boxes(), boxes()


# ------------------------------------------------------------------------------ contenders


def _ours(name: str, **kwargs: Any) -> Callable[[], LossFn]:
    def build() -> LossFn:
        from autotimm.losses import get_loss

        module: LossFn = get_loss(name, **kwargs)
        return module

    return build


def _by_hand_ce_plus_dice() -> LossFn:
    """The peer of ``weighted_sum``: the same two registry losses called and added by hand."""
    from autotimm.losses import get_loss

    ce, dice = get_loss("cross_entropy"), get_loss("dice")
    return lambda logits, target: ce(logits, target) + dice(logits, target)


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


def _torch_bce() -> LossFn:
    loss: LossFn = torch.nn.BCEWithLogitsLoss()
    return loss


ASL_ARGS: dict[str, Any] = {"gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05}


def _timm_asl() -> LossFn:
    from timm.loss import AsymmetricLossMultiLabel

    loss: LossFn = AsymmetricLossMultiLabel(**ASL_ARGS, reduction="sum")
    return loss


SEG = (8, 19, 128, 128)
ELEMENTWISE = "<= 2"  # issue 13: every elementwise-heavy loss within 2x of its floor
ABOVE_FLOOR = (
    "exact in float32: {kernels} per element against the floor's one sigmoid, and {ops} "
    "element-wise torch ops per cache-sized step (no fused CPU kernel to call)"
)

CASES = [
    Case(
        "dice",
        "logits [8,19,128,128] vs MONAI DiceLoss(softmax, to_onehot_y)",
        _seg_inputs(SEG),
        _ours("dice"),
        SOFTMAX,
        _monai_dice,
        "monai",
        target="<= 0.8",
    ),
    Case(
        "focal",
        "logits [80000,80], float targets, sum vs torchvision sigmoid_focal_loss",
        _dense_inputs,
        _ours("focal", reduction="sum"),
        SIGMOID,
        _torchvision("sigmoid_focal_loss", reduction="sum"),
        "torchvision",
        target="<= 0.35",
        floor_target="<= 5",
    ),
    Case(
        "bce_with_logits",
        "logits [80000,80], float targets vs torch BCEWithLogitsLoss",
        _dense_inputs,
        _ours("bce_with_logits"),
        SIGMOID,
        _torch_bce,
        "torch",
        floor_target=ELEMENTWISE,
        note=ABOVE_FLOOR.format(kernels="sigmoid, exp and log1p", ops="about 10"),
    ),
    Case(
        "giou",
        "200k box pairs vs torchvision generalized_box_iou_loss",
        _box_inputs,
        _ours("giou"),
        BOX,
        _torchvision("generalized_box_iou_loss", reduction="mean"),
        "torchvision",
        target="<= 1.0",
    ),
    Case(
        "diou",
        "200k box pairs vs torchvision distance_box_iou_loss",
        _box_inputs,
        _ours("diou"),
        BOX,
        _torchvision("distance_box_iou_loss", reduction="mean"),
        "torchvision",
    ),
    Case(
        "ciou",
        "200k box pairs vs torchvision complete_box_iou_loss",
        _box_inputs,
        _ours("ciou"),
        BOX,
        _torchvision("complete_box_iou_loss", reduction="mean"),
        "torchvision",
    ),
    Case(
        "lovasz",
        "logits [4,19,64,64] vs smp LovaszLoss(multiclass)",
        _seg_inputs((4, 19, 64, 64)),
        _ours("lovasz"),
        SOFTMAX,
        _smp_lovasz,
        "segmentation_models_pytorch",
        note=(
            "sorts every class's errors: the sort, not the softmax, sets the cost; all classes "
            "are sorted at once (smp sorts one class at a time), faster for about 1 MiB more"
        ),
    ),
    Case(
        "cross_entropy",
        "logits [8,19,128,128] vs torch.nn.CrossEntropyLoss",
        _seg_inputs(SEG),
        _ours("cross_entropy", ignore_index=255),
        SOFTMAX,
        _torch_ce,
        "torch",
    ),
    Case(
        "focal_pixelwise",
        "logits [8,19,128,128], class indices (softmax focal per pixel; no peer)",
        _seg_inputs(SEG),
        _ours("focal_pixelwise"),
        SOFTMAX,
        floor_target=ELEMENTWISE,
    ),
    # Rows of losses that other issues add: skipped until ``get_loss`` knows the name.
    Case(
        "weighted_sum",
        "weighted_sum of cross_entropy + dice on logits [8,19,128,128] vs the two losses "
        "called and added by hand",
        _seg_inputs(SEG),
        _ours(
            "weighted_sum",
            terms=[{"name": "cross_entropy", "weight": 1.0}, {"name": "dice", "weight": 1.0}],
        ),
        SOFTMAX,
        _by_hand_ce_plus_dice,
        "autotimm",
        target="<= 1.05",
    ),
    Case(
        "asymmetric",
        "logits [80000,80], multi-hot targets, sum vs timm AsymmetricLossMultiLabel",
        _dense_inputs,
        _ours("asymmetric", **ASL_ARGS, reduction="sum"),
        SIGMOID,
        _timm_asl,
        "timm",
        target="<= 1.0",
        floor_target=ELEMENTWISE,
        note=ABOVE_FLOOR.format(kernels="two sigmoids and a log", ops="about 30")
        + "; a pass that finds the float targets all 0 or 1",
    ),
    Case(
        "softmax_focal",
        "logits [80000,80], class indices (no peer)",
        _class_index_inputs,
        _ours("softmax_focal"),
        SOFTMAX,
        floor_target=ELEMENTWISE,
    ),
    Case(
        "ohem_cross_entropy",
        "logits [8,19,128,128], class indices, thresh 0.7, min_kept 4096 of 16384 pixels per "
        "image, so that the hardest pixels are searched (no peer)",
        _seg_inputs(SEG),
        _ours("ohem_cross_entropy", thresh=0.7, min_kept=4096),
        SOFTMAX,
        floor_target=ELEMENTWISE,
    ),
    Case(
        "quality_focal",
        "logits [80000,80], soft IoU scores as [80000,80] targets (no peer)",
        _score_inputs,
        _ours("quality_focal"),
        SIGMOID,
        floor_target=ELEMENTWISE,
        note=ABOVE_FLOOR.format(kernels="two sigmoids, exp and log1p", ops="about 20"),
    ),
    Case(
        "varifocal",
        "logits [80000,80], soft IoU scores as [80000,80] targets (no peer)",
        _score_inputs,
        _ours("varifocal"),
        SIGMOID,
        floor_target=ELEMENTWISE,
        note=ABOVE_FLOOR.format(kernels="two sigmoids, exp and log1p", ops="about 20"),
    ),
]


# -------------------------------------------------------------------------------- measuring


def _step(loss_fn: LossFn, inputs: Inputs) -> None:
    pred = inputs[0].detach().requires_grad_()
    torch.autograd.backward(loss_fn(pred, *inputs[1:]))


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


def _registered(name: str) -> bool:
    from autotimm.losses import UnknownLossError, get_entry

    try:
        get_entry(name)
    except UnknownLossError:
        return False
    return True


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.2f} ms"


def thread_label(threads: int) -> str:
    """``"1"``, or ``"N (all)"`` for the machine's default thread count."""
    return f"{threads} (all)" if threads == all_threads() and threads > 1 else str(threads)


def _noise_note(timing: Timing, index: int, other: int, label: str) -> str:
    if not timing.noisy(index, other):
        return ""
    low, high = timing.spread(index, other)
    return f"noisy {label} (quartiles {low:.2f}-{high:.2f})"


def _peer_status(case: Case) -> tuple[LossFn | None, str]:
    """The peer loss, or ``None`` and why not."""
    if case.peer is None:
        return None, "-"
    if case.peer_module and importlib.util.find_spec(case.peer_module) is None:
        return None, f"{case.peer_module} not installed"
    try:
        return case.peer(), ""
    except ImportError as error:
        return None, f"unavailable ({error})"


def _measure(
    case: Case, threads: list[int], rounds: int, warmup: int, min_sample: float
) -> list[Row]:
    ours = case.ours()
    inputs = case.make_inputs()
    peer, peer_text = _peer_status(case)
    if peer is None and case.peer is not None:
        print(f"{case.name}: no peer ({peer_text}); floor only", file=sys.stderr)
    contenders: list[LossFn] = [ours, case.floor.fn] + ([peer] if peer is not None else [])
    memory = (
        peak_memory_mb(ours, inputs),
        peak_memory_mb(peer, inputs) if peer is not None else None,
    )
    rows = []
    for position, count in enumerate(threads):
        torch.set_num_threads(count)
        timing = interleaved_many(
            [functools.partial(_step, fn, inputs) for fn in contenders],
            rounds=rounds,
            warmup=warmup,
            min_sample=min_sample,
        )
        first = position == 0
        ours_text = _ms(timing.median(0))
        if first:
            ours_text += f", {memory[0]:.0f} MiB peak"
        notes = [case.note] if case.note else []
        ratio = None
        if peer is not None:
            peer_text = _ms(timing.median(2))
            if first and memory[1] is not None:
                peer_text += f", {memory[1]:.0f} MiB peak"
            ratio = timing.ratio(0, 2)
            notes.append(_noise_note(timing, 0, 2, "ours/peer"))
        notes.append(_noise_note(timing, 0, 1, "ours/floor"))
        rows.append(
            Row(
                key=case.name,
                benchmark=f"{case.name} forward+backward: {case.description}",
                threads=thread_label(count),
                ours=ours_text,
                peer=peer_text,
                ratio=ratio,
                target=case.target,
                floor=f"{case.floor.label} {_ms(timing.median(1))}",
                floor_ratio=timing.ratio(0, 1),
                floor_target=case.floor_target,
                memory_mib=(memory[0], memory[1]) if first and memory[1] is not None else None,
                note="; ".join(n for n in notes if n),
            )
        )
    return rows


def _unmeasured(case: Case, *, skipped: str | None = None, error: str | None = None) -> Row:
    """The row of a case that could not be measured: its targets, and why."""
    return Row(
        key=case.name,
        benchmark=f"{case.name} forward+backward: {case.description}",
        threads="-",
        target=case.target,
        floor=case.floor.label,
        floor_target=case.floor_target,
        skipped=skipped,
        error=error,
        note=case.note,
    )


def run(
    rounds: int = 15,
    warmup: int = 2,
    names: list[str] | None = None,
    threads: list[int] | None = None,
    min_sample: float = 0.02,
) -> list[Row]:
    """Measure every case at each thread count (default: 1 and all); one row per case and count.

    A case whose loss is not registered gives one skipped row; one that raises gives an
    ``ERROR`` row (traceback on stderr) and the others still run.
    """
    threads = threads or sorted({1, all_threads()})
    before = torch.get_num_threads()
    rows: list[Row] = []
    try:
        for case in CASES:
            if names and case.name not in names:
                continue
            missing = [name for name in case.requires or (case.name,) if not _registered(name)]
            if missing:
                reason = ", ".join(f"get_loss({name!r}) does not exist yet" for name in missing)
                print(f"skipping {case.name}: {reason}", file=sys.stderr)
                rows.append(_unmeasured(case, skipped=reason))
                continue
            try:
                rows += _measure(case, threads, rounds, warmup, min_sample)
            except Exception as error:  # one broken row must not hide the others
                traceback.print_exc()
                message = f"{type(error).__name__}: {error}".splitlines()[0][:200]
                rows.append(_unmeasured(case, error=message))
    finally:
        torch.set_num_threads(before)
    return rows


def parse_threads(text: str) -> list[int]:
    """``"1,all"`` -> ``[1, N]`` (duplicates dropped, order kept)."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        value = all_threads() if part == "all" else int(part)
        if value < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {value}")
        if value not in counts:
            counts.append(value)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per loss")
    parser.add_argument("--only", nargs="*", help="loss names to run (default: all)")
    parser.add_argument(
        "--threads", type=parse_threads, default=None, help="e.g. '1,all' (the default)"
    )
    args = parser.parse_args(argv)
    threads = args.threads or sorted({1, all_threads()})
    print(f"Machine: {machine_line(threads)}", flush=True)
    rows = run(rounds=args.rounds, names=args.only, threads=threads)
    print(to_markdown(rows))
    return 1 if any(row.error for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Interleaved timing: the contenders alternate round after round, so machine noise hits all alike.

On a shared machine the speed of the CPU changes from one second to the next (other
processes, frequency, OpenMP threads waiting for a core). Timing A for a while and then B
for a while measures that drift as much as A and B. Here every round runs each contender
once, in an order rotated every round, after warm-up calls; a round's times are compared
with each other (paired ratios), and the table reports medians, which ignore the rounds a
burst of load spoiled.
"""

from __future__ import annotations

import gc
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Timing", "command", "interleaved_commands", "interleaved_many"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call of each contender, one list entry per round (same order as given)."""

    samples: tuple[tuple[float, ...], ...]
    numbers: tuple[int, ...]

    def median(self, index: int) -> float:
        """Median seconds per call of contender ``index``."""
        return statistics.median(self.samples[index])

    def paired_ratios(self, index: int, other: int) -> list[float]:
        """Per-round ratios ``index / other``: both measured within the same round."""
        return [a / b for a, b in zip(self.samples[index], self.samples[other]) if b > 0]

    def ratio(self, index: int, other: int) -> float:
        """Median of the per-round ratios (robust to rounds slowed down as a whole)."""
        return statistics.median(self.paired_ratios(index, other))

    def spread(self, index: int, other: int) -> tuple[float, float]:
        """Lower and upper quartile of the per-round ratios (min and max below 4 rounds)."""
        ratios = sorted(self.paired_ratios(index, other))
        if len(ratios) < 4:
            return ratios[0], ratios[-1]
        low, _, high = statistics.quantiles(ratios, n=4)
        return low, high

    def noisy(self, index: int, other: int, tolerance: float = 0.1) -> bool:
        """Whether the quartiles of the ratio differ by more than ``tolerance`` of the median."""
        low, high = self.spread(index, other)
        return (high - low) > tolerance * self.ratio(index, other)


def _time_once(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def interleaved_many(
    fns: Sequence[Callable[[], object]],
    *,
    rounds: int,
    warmup: int = 2,
    min_sample: float = 0.02,
    numbers: Sequence[int] | None = None,
) -> Timing:
    """Time every callable once per round, rotating which goes first.

    ``warmup`` untimed calls of each come first (lazy initialisation, allocator pools, caches).
    Each timed sample runs a callable ``number`` times in a row, chosen from the last warm-up
    call so that a sample lasts at least ``min_sample`` seconds (fast kernels would otherwise
    measure the timer); ``numbers`` fixes them instead. The garbage collector is kept out of
    the timed rounds.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if numbers is None:
        chosen = []
        for fn in fns:
            seconds = 0.0
            for _ in range(max(1, warmup)):
                seconds = _time_once(fn, 1)
            chosen.append(max(1, min(10_000, math.ceil(min_sample / max(seconds, 1e-9)))))
        numbers = chosen
    else:
        for _ in range(warmup):
            for fn in fns:
                fn()
    samples: list[list[float]] = [[] for _ in fns]
    order = list(range(len(fns)))
    enabled = gc.isenabled()
    try:
        for index in range(rounds):
            gc.collect()
            gc.disable()
            shift = index % len(order)
            for k in order[shift:] + order[:shift]:
                samples[k].append(_time_once(fns[k], numbers[k]))
            if enabled:
                gc.enable()
    finally:
        if enabled:
            gc.enable()
    return Timing(tuple(tuple(s) for s in samples), tuple(numbers))


def command(
    argv: Sequence[str], *, check: bool = True, cwd: str | None = None
) -> Callable[[], object]:
    """A callable running ``argv`` in a subprocess (output discarded)."""
    return lambda: subprocess.run(
        list(argv), check=check, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def interleaved_commands(ours: str, peer: str, *, rounds: int) -> Timing:
    """Wall seconds of two ``python -c`` snippets run alternately in fresh interpreters."""
    return interleaved_many(
        [command([sys.executable, "-c", ours]), command([sys.executable, "-c", peer])],
        rounds=rounds,
        warmup=1,
        numbers=[1, 1],
    )

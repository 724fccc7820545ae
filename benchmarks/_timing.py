"""Interleaved timing: ours and the peer alternate, so machine noise hits both alike."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

__all__ = ["interleaved", "interleaved_commands"]


def interleaved(
    ours: Callable[[], object], peer: Callable[[], object], *, rounds: int, number: int = 1
) -> tuple[float, float]:
    """Median seconds per call of ``ours`` and ``peer``, alternating which goes first."""
    ours(), peer()  # warm up caches, lazily built schemas, allocator pools
    ours_times: list[float] = []
    peer_times: list[float] = []
    for index in range(rounds):
        pair = [(ours, ours_times), (peer, peer_times)]
        for fn, times in pair if index % 2 == 0 else reversed(pair):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            times.append((time.perf_counter() - start) / number)
    return statistics.median(ours_times), statistics.median(peer_times)


def interleaved_commands(ours: str, peer: str, *, rounds: int) -> tuple[float, float]:
    """Median wall seconds of two ``python -c`` snippets run alternately in fresh interpreters."""

    def command(code: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, "-c", code], check=True)

    return interleaved(command(ours), command(peer), rounds=rounds)

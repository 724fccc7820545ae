"""What the benchmarks ran on: CPU model, vector instruction set, torch's kernels and threads.

Loss timings depend on the CPU's vector units (torch picks AVX2 or AVX-512 kernels at run
time) and on the thread count, so every table is printed next to this line.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import torch

# torch's own default, read before anything here changes it: what "all threads" means
_DEFAULT_THREADS = max(1, torch.get_num_threads())

__all__ = ["CpuInfo", "all_threads", "cpu_info", "machine_line", "parse_cpuinfo"]

# Vector extensions worth naming, widest last within each family; the best one present is the
# headline, the others are listed after it.
X86_VECTOR_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
)
X86_HEADLINE = ("avx512f", "avx2", "avx", "sse4_2")
ARM_VECTOR_FLAGS = ("asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme")
ARM_HEADLINE = ("sve2", "sve", "asimd")


class CpuInfo:
    """The CPU model and the vector flags the kernel reports for it."""

    def __init__(self, model: str, flags: frozenset[str]) -> None:
        self.model = model
        self.flags = flags

    @property
    def vector_flags(self) -> list[str]:
        """The vector-relevant flags present, in a fixed order (empty when unknown)."""
        return [flag for flag in X86_VECTOR_FLAGS + ARM_VECTOR_FLAGS if flag in self.flags]

    @property
    def vector_isa(self) -> str:
        """The widest vector extension present (``"avx512f"``, ``"avx2"``, ...) or ``"unknown"``."""
        for flag in X86_HEADLINE + ARM_HEADLINE:
            if flag in self.flags:
                return flag
        return "unknown"


def parse_cpuinfo(text: str) -> CpuInfo:
    """Read the first processor's model and flags out of ``/proc/cpuinfo`` text.

    x86 kernels write ``model name`` and ``flags``; arm64 ones ``Features`` and sometimes no
    model at all (then ``CPU part`` / ``Hardware`` is the best there is).
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip().lower()
        if sep and key not in fields:
            fields[key] = value.strip()
    model = next(
        (fields[k] for k in ("model name", "hardware", "cpu model", "cpu part") if fields.get(k)),
        "",
    )
    flags = fields.get("flags") or fields.get("features") or ""
    return CpuInfo(model or platform.processor() or "unknown CPU", frozenset(flags.split()))


def cpu_info(path: Path = Path("/proc/cpuinfo")) -> CpuInfo:
    """This machine's CPU (model from ``platform`` and no flags where ``/proc`` is absent)."""
    try:
        return parse_cpuinfo(path.read_text())
    except OSError:
        return CpuInfo(platform.processor() or "unknown CPU", frozenset())


def all_threads() -> int:
    """The thread count torch uses by default here (what "all threads" means in the table)."""
    return _DEFAULT_THREADS


def machine_line(threads: list[int] | None = None) -> str:
    """One line naming the CPU, its vector instructions, torch's kernels, threads and load."""
    cpu = cpu_info()
    flags = " ".join(cpu.vector_flags) or "not readable"
    capability = torch.backends.cpu.get_cpu_capability()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    thread_text = " and ".join(str(n) for n in threads) if threads else str(all_threads())
    return (
        f"{cpu.model} ({platform.machine()}, {cores} cores), vector ISA {cpu.vector_isa} "
        f"[{flags}], torch CPU capability {capability}, torch {torch.__version__}, "
        f"Python {platform.python_version()}, loss rows at {thread_text} threads, "
        f"load average {load} at start, {datetime.date.today().isoformat()}"
    )

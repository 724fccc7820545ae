"""One row per measurement, its targets judged as measured, and the markdown table of them all.

A row compares ours with a peer (``ours / peer``) and, for losses, with a floor: the cheapest
forward + backward of the same activation on the same input (``ours / floor``). Targets are
written as ``"<= 0.6"``; a row passes when every target it could measure holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COLUMNS", "Row", "meets", "to_markdown"]

COLUMNS = (
    "benchmark",
    "threads",
    "ours",
    "peer",
    "ours / peer",
    "target",
    "floor",
    "ours / floor",
    "floor target",
    "result",
    "note",
)

_TARGET = re.compile(r"^\s*(<=|<|>=|>)\s*([0-9]*\.?[0-9]+)\s*$")


def meets(value: float, target: str) -> bool:
    """Whether ``value`` satisfies a target such as ``"<= 0.6"`` or ``"< 2"``."""
    match = _TARGET.match(target)
    if match is None:
        raise ValueError(f"target must look like '<= 0.6', got {target!r}")
    op, bound = match.group(1), float(match.group(2))
    return {
        "<=": value <= bound,
        "<": value < bound,
        ">=": value >= bound,
        ">": value > bound,
    }[op]


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


@dataclass
class Row:
    """One line of the table; ``key`` is what ``--only`` selects it by."""

    key: str
    benchmark: str
    threads: str = "1"
    ours: str = "-"
    peer: str = "-"
    ratio: float | None = None
    target: str = "-"
    floor: str = "-"
    floor_ratio: float | None = None
    floor_target: str = "-"
    memory_mib: tuple[float, float] | None = None
    skipped: str | None = None
    error: str | None = None
    note: str = ""

    @property
    def failures(self) -> list[str]:
        """The targets measured and missed (empty when all measured ones hold)."""
        missed = []
        if self.target != "-" and self.ratio is not None and not meets(self.ratio, self.target):
            missed.append(f"ours/peer {self.ratio:.2f}, target {self.target}")
        if (
            self.floor_target != "-"
            and self.floor_ratio is not None
            and not meets(self.floor_ratio, self.floor_target)
        ):
            missed.append(f"ours/floor {self.floor_ratio:.2f}, target {self.floor_target}")
        if self.memory_mib is not None and self.memory_mib[0] > self.memory_mib[1]:
            missed.append("memory above peer")
        return missed

    @property
    def result(self) -> str:
        """``pass``, ``FAIL: ...``, ``skipped: ...``, ``ERROR: ...``, ``not measured: ...`` (its
        peer is missing) or ``-`` (no target)."""
        if self.error is not None:
            return f"ERROR: {self.error}"
        if self.skipped is not None:
            return f"skipped: {self.skipped}"
        unmeasured = [
            label
            for label, target, value in (
                ("ours/peer", self.target, self.ratio),
                ("ours/floor", self.floor_target, self.floor_ratio),
            )
            if target != "-" and value is None
        ]
        measured = (
            (self.target != "-" and self.ratio is not None)
            or (self.floor_target != "-" and self.floor_ratio is not None)
            or self.memory_mib is not None
        )
        if self.failures:
            text = "FAIL: " + "; ".join(self.failures)
        elif measured:
            text = "pass"
        elif unmeasured:
            return f"not measured: {', '.join(unmeasured)}"
        else:
            return "-"
        if unmeasured:
            text += f" ({', '.join(unmeasured)} not measured)"
        return text

    def cells(self) -> list[str]:
        """The row's cells in :data:`COLUMNS` order."""
        target = self.target
        if self.memory_mib is not None:
            target = f"{target}, memory <= peer" if target != "-" else "memory <= peer"
        return [
            self.benchmark,
            self.threads,
            self.ours,
            self.peer,
            _ratio_text(self.ratio),
            target,
            self.floor,
            _ratio_text(self.floor_ratio),
            self.floor_target,
            self.result,
            self.note or "-",
        ]


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "/").split())


def to_markdown(rows: list[Row]) -> str:
    """A markdown table of the rows (``|`` inside a cell becomes ``/``)."""
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row.cells()) + " |")
    return "\n".join(lines)

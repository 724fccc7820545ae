"""Small shared type vocabulary of the loss package (no torch import needed to read it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

__all__ = [
    "TASKS",
    "InputKind",
    "NonNegative",
    "NumClasses",
    "Probability",
    "Reduction",
    "TargetKind",
    "Task",
]

Task = Literal["classification", "detection", "segmentation"]
"""The tasks a loss can be registered for."""

TASKS: tuple[Task, ...] = ("classification", "detection", "segmentation")

Reduction = Literal["mean", "sum", "none"]
"""How a loss reduces its per-element values; every built-in loss takes ``reduction``."""

InputKind = Literal["logits", "probabilities", "log_probabilities"]
"""What a loss expects as its prediction input; models adapt their raw outputs to it."""

TargetKind = Literal["class_indices", "dense", "boxes", "structured"]
"""What a loss expects as its target.

- ``class_indices``: integer class ids (``[N]`` or ``[B, H, W]``), with an ignore value.
- ``dense``: a float tensor of the prediction's shape (one-hot, soft labels or binary masks).
- ``boxes``: ``[N, 4]`` boxes in ``x1, y1, x2, y2``.
- ``structured``: several named inputs (e.g. the FCOS criterion).
"""

# constrained constructor-parameter types shared by the loss modules (read by the registry)
NumClasses = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]

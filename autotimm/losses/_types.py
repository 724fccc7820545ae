"""The loss package's shared type vocabulary: tasks, input kinds and constrained parameter types.

A loss constructor annotated with these types is validated by the registry before it runs:
``smooth: NonNegative`` rejects ``-1`` and ``nan``, ``weight: NonNegativeTensor | None`` rejects
``[nan, 1, 1]`` and negative class weights.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, get_args

import torch
from pydantic import Field, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "CLASS_DIMS",
    "INPUT_KINDS",
    "SEGMENTATION_MODES",
    "TARGET_KINDS",
    "TASKS",
    "ClassDim",
    "InputKind",
    "NonNegative",
    "NonNegativeInt",
    "NonNegativeTensor",
    "NumClasses",
    "Positive",
    "Probability",
    "Reduction",
    "SegmentationMode",
    "TargetKind",
    "Task",
    "TensorParameter",
]

Task = Literal["classification", "detection", "segmentation"]
"""The tasks a loss can be registered for."""

TASKS: tuple[Task, ...] = ("classification", "detection", "segmentation")

Reduction = Literal["mean", "sum", "none"]
"""How a loss reduces its per-element values; every built-in loss takes ``reduction``."""

InputKind = Literal["logits", "probabilities", "log_probabilities"]
"""What a loss expects as its prediction input; models adapt their raw outputs to it."""

INPUT_KINDS: tuple[InputKind, ...] = get_args(InputKind)

TargetKind = Literal["class_indices", "dense", "boxes", "structured"]
"""What a loss expects as its target.

- ``class_indices``: integer class ids (``[N]`` or ``[B, H, W]``), with an ignore value.
- ``dense``: a float tensor of the prediction's shape (one-hot, soft labels or binary masks).
- ``boxes``: ``[N, 4]`` boxes in ``x1, y1, x2, y2``.
- ``structured``: several named inputs (e.g. the FCOS criterion).
"""

TARGET_KINDS: tuple[TargetKind, ...] = get_args(TargetKind)

ClassDim = Literal[1, -1]
"""Where a loss reads the classes of its prediction.

- ``1``: ``[N, C, ...]``, torch's convention (``cross_entropy``, ``dice``, ...).
- ``-1``: ``[..., C]``, classes last (``focal``, as ``torchvision.ops.sigmoid_focal_loss``).

For ``[N, C]`` predictions the two agree.
"""

CLASS_DIMS: tuple[ClassDim, ...] = get_args(ClassDim)
SegmentationMode = Literal["multiclass", "multilabel", "binary"]
"""How a segmentation loss reads its logits ``[B, C, H, W]`` (as segmentation_models_pytorch's
``mode``):

- ``multiclass``: a softmax over ``C >= 2`` exclusive classes; class-index targets ``[B, H, W]``.
- ``multilabel``: a sigmoid per channel, ``C`` independent masks; dense targets ``[B, C, H, W]``.
- ``binary``: one sigmoid channel ``[B, 1, H, W]`` (the foreground); dense targets
  ``[B, 1, H, W]`` or ``[B, H, W]``.
"""

SEGMENTATION_MODES: tuple[SegmentationMode, ...] = get_args(SegmentationMode)

NumClasses = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Probability = Annotated[float, Field(ge=0, le=1)]


@dataclasses.dataclass(frozen=True)
class TensorParameter:
    """How the registry validates a ``torch.Tensor`` constructor parameter.

    It accepts a tensor, a number or a (nested) list of numbers, the last two as configs and
    checkpoints hold them. Every element must be finite and, when ``minimum`` is set, at least
    ``minimum``. In JSON the tensor is a (nested) list. A bare ``torch.Tensor`` annotation means
    ``TensorParameter()``.

    Example:
        >>> TensorParameter(minimum=0)([1, 2])
        tensor([1., 2.])
        >>> TensorParameter(minimum=0)([float("nan"), 1.0])
        Traceback (most recent call last):
        ...
        ValueError: every element must be finite and >= 0
    """

    minimum: float | None = None

    @property
    def requirement(self) -> str:
        """The rule in words, e.g. ``finite and >= 0``."""
        return "finite" + ("" if self.minimum is None else f" and >= {self.minimum:g}")

    def __call__(self, value: Any) -> torch.Tensor:
        tensor = _as_tensor(value)
        values = tensor.detach()
        finite = not (values.is_floating_point() or values.is_complex()) or bool(
            torch.isfinite(values).all()
        )
        if not finite or (self.minimum is not None and bool((values < self.minimum).any())):
            raise ValueError(f"every element must be {self.requirement}")
        return tensor

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            self,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda tensor: tensor.tolist(), when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        number: dict[str, Any] = {"type": "number"}
        if self.minimum is not None:
            number["minimum"] = self.minimum
        return {
            "title": "Tensor",
            "anyOf": [number, {"type": "array", "items": {"anyOf": [number, {"type": "array"}]}}],
            "description": f"a tensor, a number, or a (nested) list of numbers; {self.requirement}",
        }


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a scalar weight
        return torch.tensor(float(value))
    if isinstance(value, (list, tuple)) and not _contains_str(value):
        try:
            return torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ValueError("expected a tensor, a number or a (nested) list of numbers")


def _contains_str(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return True
    return isinstance(value, (list, tuple)) and any(_contains_str(v) for v in value)


NonNegativeTensor = Annotated[torch.Tensor, TensorParameter(minimum=0)]
"""A tensor of finite, non-negative values: class weights, ``pos_weight``, per-class ``alpha``."""

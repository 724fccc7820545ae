"""Helpers shared by the loss families: float32 upcast, reductions, safe denominators."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from autotimm.losses._types import Reduction

__all__ = [
    "TINY",
    "as_float_tensor",
    "compiling",
    "flatten_masks",
    "flatten_segmentation",
    "inner_reduction",
    "nonzero",
    "reduce_loss",
    "to_float32",
    "weighted_reduce",
]

TINY = torch.finfo(torch.float32).tiny
"""The smallest normal float32: a floor for ``1 - p_t`` before a power ``gamma < 1``."""

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_REDUCTIONS = ("mean", "sum", "none")


class _Float16ToFloat32(torch.autograd.Function):
    """Upcast float16 to float32; the gradient is cast back saturating at float16's range.

    A float32 gradient such as ``1e12`` (e.g. BCE on a saturated probability) would otherwise
    become ``inf`` in float16 and then NaN in the layer that produced the input.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.float()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        limit = torch.finfo(torch.float16).max
        return grad.clamp(-limit, limit).to(torch.float16)


def to_float32(x: Tensor) -> Tensor:
    """``x`` as a float tensor, upcasting float16/bfloat16 (and integers/bools) to float32.

    Example:
        >>> to_float32(torch.ones(2, dtype=torch.float16)).dtype
        torch.float32
    """
    if x.dtype == torch.float16 and x.requires_grad and torch.is_grad_enabled():
        upcast: Tensor = _Float16ToFloat32.apply(x)
        return upcast
    if x.dtype in _LOW_PRECISION or not x.is_floating_point():
        return x.float()
    return x


def as_float_tensor(
    value: Tensor | list[float] | None, *, name: str = "loss", argument: str = "weight"
) -> Tensor | None:
    """A weight argument as a floating tensor (lists accepted, float dtypes kept), or ``None``.

    A tensor that requires grad is refused with a ``ValueError`` naming ``name`` and
    ``argument``: loss weights are fixed settings, and torch cannot differentiate its losses
    with respect to them.

    Example:
        >>> as_float_tensor([1, 2])
        tensor([1., 2.])
    """
    if value is None:
        return None
    if isinstance(value, Tensor) and value.requires_grad:
        raise ValueError(
            f"{name}: {argument} must not require grad (it is a fixed setting of the loss, "
            f"not a parameter); pass {argument}.detach()"
        )
    tensor = torch.as_tensor(value)
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def compiling() -> bool:
    """Whether ``torch.compile`` is tracing (value checks and data-dependent shortcuts skip)."""
    return bool(torch.compiler.is_compiling())


def nonzero(denominator: Tensor) -> Tensor:
    """``denominator`` with zeros replaced by one (for "0 / 0 = 0" means); NaN stays NaN.

    Example:
        >>> nonzero(torch.tensor([0.0, 2.0, float("nan")]))
        tensor([1., 2., nan])
    """
    return torch.where(denominator == 0, torch.ones_like(denominator), denominator)


def inner_reduction(reduction: str) -> Reduction:
    """The reduction to ask of an inner element-wise loss: ``"none"`` or ``"sum"``.

    Raises ``ValueError`` for anything but ``"mean"``, ``"sum"`` and ``"none"``, so that no
    loss treats a misspelled reduction as one of them.

    Example:
        >>> inner_reduction("mean")
        'sum'
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return "none" if reduction == "none" else "sum"


def reduce_loss(loss: Tensor, reduction: Reduction) -> Tensor:
    """Reduce an element-wise loss; the mean of an empty tensor is 0 (with a gradient).

    Example:
        >>> reduce_loss(torch.tensor([1.0, 3.0]), "mean")
        tensor(2.)
        >>> reduce_loss(torch.zeros(0), "mean")
        tensor(0.)
    """
    if inner_reduction(reduction) == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / max(loss.numel(), 1)


def weighted_reduce(loss: Tensor, weight: Tensor | None, reduction: Reduction) -> Tensor:
    """Reduce ``weight * loss``; the weighted mean is ``sum(w * l) / sum(w)`` (0 if no weight).

    Example:
        >>> weighted_reduce(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0]), "mean")
        tensor(2.5000)
    """
    if weight is None:
        return reduce_loss(loss, reduction)
    weighted = loss * weight.to(loss.dtype)
    if inner_reduction(reduction) == "none":
        return weighted
    total = weighted.sum()
    if reduction == "sum":
        return total
    return total / nonzero(weight.to(loss.dtype).expand_as(loss).sum())


def _may_hold(values: Tensor, ignore_index: int, label_range: tuple[int, int] | None) -> bool:
    """Whether some value can equal ``ignore_index``: one cheap pass (``aminmax``), decided only
    outside ``torch.compile`` (while tracing the answer is always yes)."""
    if compiling():
        return True
    if values.numel() == 0 or values.dtype == torch.bool:
        return False
    low, high = label_range or tuple(v.item() for v in torch.aminmax(values))
    return bool(low <= ignore_index <= high)


def flatten_segmentation(
    logits: Tensor, target: Tensor, ignore_index: int, label_range: tuple[int, int] | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``logits [B, C, *]`` -> ``[B, C, N]`` float, targets -> ``[B, N]`` with ignored set to
    class 0, and the float validity mask ``[B, N]`` (``None`` when nothing is ignored, which is
    only decided outside ``torch.compile``).

    ``label_range``: ``(min, max)`` of the labels if known (from the class-index check), which
    saves the pass that looks for ignored pixels.
    """
    x = to_float32(logits)
    batch, classes = x.shape[0], x.shape[1]
    pixels = math.prod(x.shape[2:])
    x = x.reshape(batch, classes, pixels)
    t = target.reshape(batch, pixels).long()
    if not _may_hold(t, ignore_index, label_range):
        return x, t, None
    valid = t != ignore_index
    t = torch.where(valid, t, torch.zeros_like(t))
    return x, t, valid.to(x.dtype)


def flatten_masks(
    logits: Tensor, target: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Sigmoid segmentation: ``logits [B, C, *]`` -> ``[B, C, N]`` float, dense masks of the
    logits' shape (or ``[B, *]`` when ``C = 1``) -> ``[B, C, N]`` floats with ignored elements
    set to 0, and the float validity mask ``[B, C, N]`` (``None`` when nothing is ignored).

    Example:
        >>> masks = torch.tensor([[[1, 255], [0, 1]]])  # [B, H, W] for logits [B, 1, H, W]
        >>> x, g, valid = flatten_masks(torch.zeros(1, 1, 2, 2), masks, ignore_index=255)
        >>> g.tolist(), valid.tolist()
        ([[[1.0, 0.0, 0.0, 1.0]]], [[[1.0, 0.0, 1.0, 1.0]]])
    """
    x = to_float32(logits)
    batch, classes = x.shape[0], x.shape[1]
    x = x.reshape(batch, classes, math.prod(x.shape[2:]))
    g = target.reshape(x.shape)
    if not _may_hold(g, ignore_index, None):
        return x, g.to(x.dtype), None
    valid = g != ignore_index
    g = torch.where(valid, g, torch.zeros_like(g))
    return x, g.to(x.dtype), valid.to(x.dtype)

"""IoU, GIoU, DIoU and CIoU losses of ``[..., 4]`` boxes ``(x1, y1, x2, y2)``."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses.functional._utils import to_float32

__all__ = ["BoxLossKind", "IoUMode", "box_iou_loss", "iou_loss"]

BoxLossKind = Literal["giou", "diou", "ciou"]
IoUMode = Literal["linear", "log"]


def box_iou_loss(
    pred: Tensor, target: Tensor, *, kind: BoxLossKind = "giou", eps: float = 1e-7
) -> Tensor:
    """Element-wise GIoU / DIoU / CIoU loss of ``[..., 4]`` boxes (x1, y1, x2, y2).

    Same values and gradients (with respect to both boxes) as torchvision's
    ``generalized_box_iou_loss``, ``distance_box_iou_loss`` and ``complete_box_iou_loss``;
    degenerate boxes (zero width or height, points) give finite values and gradients (the CIoU
    aspect term divides by ``max(|h|, eps)``).

    Example:
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> box_iou_loss(pred, pred + 1, kind="giou")  # 1 - 1/7 + (9 - 7) / 9
        tensor([1.0794])
    """
    p = to_float32(pred)
    g = target.to(p.dtype)
    x1, y1, x2, y2 = p.unbind(-1)
    gx1, gy1, gx2, gy2 = g.unbind(-1)
    w, h = x2 - x1, y2 - y1
    iou, union = _iou_and_union((x1, y1, x2, y2), (gx1, gy1, gx2, gy2), w * h, eps)
    enclosing_w = torch.maximum(x2, gx2) - torch.minimum(x1, gx1)
    enclosing_h = torch.maximum(y2, gy2) - torch.minimum(y1, gy1)
    if kind == "giou":
        # 1 - iou + (area - union) / (area + eps), written so that autograd keeps one tensor less
        area = enclosing_w * enclosing_h + eps
        return 2 - iou - union / area
    diagonal = enclosing_w.square() + enclosing_h.square() + eps
    centers = ((x1 + x2 - gx1 - gx2) / 2).square() + ((y1 + y2 - gy1 - gy2) / 2).square()
    loss = 1 - iou + centers / diagonal
    if kind == "diou":
        return loss
    # both aspect angles carry a gradient, as in torchvision (a target box can be learned too)
    target_angle: Tensor = _AspectAngle.apply(gx2 - gx1, gy2 - gy1, eps)
    angle: Tensor = _AspectAngle.apply(w, h, eps)
    aspect = target_angle - angle
    v = (4 / math.pi**2) * aspect.square()
    with torch.no_grad():
        trade_off = v / (1 - iou + v + eps)
    return loss + trade_off * v


Coordinates = tuple[Tensor, ...]


def _iou_and_union(
    p: Coordinates, g: Coordinates, area: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """IoU of paired boxes ``(x1, y1, x2, y2)`` and their union plus ``eps`` (the IoU's
    denominator, as in torchvision's box losses); ``area`` is that of the ``p`` boxes."""
    x1, y1, x2, y2 = p
    gx1, gy1, gx2, gy2 = g
    # relu (not clamp) saves its output, which the product below saves anyway: fewer tensors
    # kept for backward; and like torchvision's mask it passes no gradient at exactly 0.
    inter = F.relu(torch.minimum(x2, gx2) - torch.maximum(x1, gx1)) * F.relu(
        torch.minimum(y2, gy2) - torch.maximum(y1, gy1)
    )
    union = area + (gx2 - gx1) * (gy2 - gy1) - inter + eps  # with eps
    return inter / union, union


def iou_loss(
    pred: Tensor, target: Tensor, *, mode: IoUMode = "linear", eps: float = 1e-7
) -> Tensor:
    """Element-wise IoU loss of ``[..., 4]`` boxes: ``1 - IoU`` (``"linear"``) or
    ``-log max(IoU, eps)`` (``"log"``, as mmdet's ``IoULoss``, finite for disjoint boxes),
    with ``IoU = |A n B| / (|A u B| + eps)``; gradients with respect to both boxes.

    Example:
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> iou_loss(pred, pred + 1), iou_loss(pred, pred + 1, mode="log")  # IoU = 1/7
        (tensor([0.8571]), tensor([1.9459]))
    """
    p = to_float32(pred)
    g = target.to(p.dtype)
    x1, y1, x2, y2 = p.unbind(-1)
    iou, _ = _iou_and_union((x1, y1, x2, y2), g.unbind(-1), (x2 - x1) * (y2 - y1), eps)
    if mode == "linear":
        return 1 - iou
    if mode == "log":
        return -torch.log(torch.clamp_min(iou, eps))
    raise ValueError(f"mode must be 'linear' or 'log', got {mode!r}")


def _away_from_zero(x: Tensor, eps: float) -> Tensor:
    """``x`` with entries of magnitude below ``eps`` replaced by ``eps``."""
    return torch.where(x.abs() < eps, torch.full_like(x, eps), x)


class _AspectAngle(torch.autograd.Function):
    """``atan(w / h)`` with ``|h| < eps`` taken as ``eps`` (no gradient to such ``h``).

    Saves only ``w`` and ``h``, which the box loss keeps alive anyway, instead of autograd's
    ratio and clamped height; the backward recomputes ``h / (w^2 + h^2)`` and ``-w / (...)``.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, h: Tensor, eps: float) -> Tensor:
        ctx.eps = eps
        ctx.save_for_backward(w, h)
        return torch.atan(w / _away_from_zero(h, eps))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        w, h = ctx.saved_tensors
        replaced = h.abs() < ctx.eps
        safe_h = torch.where(replaced, torch.full_like(h, ctx.eps), h)
        scale = grad / (w.square() + safe_h.square())
        grad_h = torch.where(replaced, torch.zeros_like(h), -w * scale)
        return safe_h * scale, grad_h, None

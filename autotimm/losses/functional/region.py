"""Region-overlap losses per (sample, class): the Tversky loss, which is dice at
``alpha = beta = 1/2`` (with half the smoothing) and Jaccard at ``alpha = beta = 1``.

The soft counts come from a softmax over the classes (``mode="multiclass"``, class-index
targets) or a sigmoid per channel (``"binary"`` and ``"multilabel"``, dense masks); the rest
(smoothing, focal exponent, background, class weights, reduction) is the same for all modes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from autotimm.losses._types import Reduction, SegmentationMode
from autotimm.losses.functional._utils import (
    TINY,
    flatten_masks,
    flatten_segmentation,
    nonzero,
    reduce_loss,
)

__all__ = ["dice_loss", "segmentation_counts", "tversky_loss"]


class _SoftmaxCounts(torch.autograd.Function):
    """``(sum_n p g, sum_n p)`` per (sample, class) for ``p = softmax(x, 1)``, ``g`` one-hot.

    Saves only ``p`` (zeroed at ignored pixels) and the target; the backward pass computes the
    softmax-composed gradient directly, without a one-hot tensor or autograd's zero-filled
    gather gradient:

        dx = p * (A + [t = c] B - S),  S[b, n] = sum_c p[b, c, n] A[b, c] + p[b, t_n, n] B[b, t_n]

    where ``A`` and ``B`` are the upstream gradients of the two sums.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            p = x.softmax(1)
            if valid is not None:
                p.mul_(valid.unsqueeze(1))
            index = t.unsqueeze(1)
            at_target = p.gather(1, index)  # [B, 1, N]
            intersection = torch.zeros(p.shape[:2], dtype=p.dtype, device=p.device)
            intersection.scatter_add_(1, index.squeeze(1), at_target.squeeze(1))
            predicted = p.sum(-1)
        ctx.save_for_backward(p, index, at_target)
        return intersection, predicted

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_intersection: Tensor, grad_predicted: Tensor
    ) -> tuple[Tensor | None, None, None]:
        p, index, at_target = ctx.saved_tensors
        with torch.autocast(device_type=p.device.type, enabled=False):
            a = grad_predicted.to(p.dtype)  # [B, C]
            b_at_target = grad_intersection.to(p.dtype).gather(1, index.squeeze(1)).unsqueeze(1)
            s = torch.bmm(a.unsqueeze(1), p).addcmul_(at_target, b_at_target)  # [B, 1, N]
            grad = torch.sub(a.unsqueeze(-1), s)  # [B, C, N]
            grad.scatter_add_(1, index, b_at_target)
            grad.mul_(p)
        return grad, None, None


def segmentation_counts(
    logits: Tensor,
    target: Tensor,
    *,
    mode: SegmentationMode = "multiclass",
    ignore_index: int = 255,
    label_range: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft per-(sample, class) sums over non-ignored pixels, each ``[B, C]``.

    Returns ``(intersection, predicted, target)``: ``sum(p * g)``, ``sum(p)`` and ``sum(g)``.
    ``mode="multiclass"``: ``p = softmax(logits, 1)`` and ``g`` the one-hot of class-index
    targets, without building the one-hot tensor (a gather and a scatter-add of ``[B, N]``
    values, and an analytic backward). ``"binary"`` / ``"multilabel"``: ``p = sigmoid(logits)``
    and ``g`` the dense masks (ignored where equal to ``ignore_index``, element by element).

    Example:
        >>> logits = torch.zeros(1, 1, 3)  # binary: sigmoid(0) = 1/2 at each of 3 pixels
        >>> segmentation_counts(logits, torch.tensor([[1, 0, 255]]), mode="binary")
        (tensor([[0.5000]]), tensor([[1.]]), tensor([[1.]]))
    """
    if mode != "multiclass":
        x, g, valid = flatten_masks(logits, target, ignore_index)
        p = torch.sigmoid(x) if valid is None else torch.sigmoid(x) * valid
        return (p * g).sum(-1), p.sum(-1), g.sum(-1)
    x, t, valid = flatten_segmentation(logits, target, ignore_index, label_range)
    batch, classes = x.shape[0], x.shape[1]
    intersection, predicted = _SoftmaxCounts.apply(x, t, valid)
    ones = torch.ones((), dtype=x.dtype, device=x.device).expand(t.shape)
    target_sum = torch.zeros(batch, classes, dtype=x.dtype, device=x.device)
    target_sum.scatter_add_(1, t, ones if valid is None else valid)
    return intersection, predicted, target_sum


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 1 where the denominator is 0 (nothing to get wrong).

    NaN stays NaN: a model whose outputs went NaN must not read a perfect score.
    """
    return torch.where(
        denominator == 0, torch.ones_like(denominator), numerator / nonzero(denominator)
    )


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    smooth: float = 1.0,
    mode: SegmentationMode = "multiclass",
    class_weights: Tensor | None = None,
    include_background: bool = True,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``(1 - (TP + s) / (TP + alpha FP + beta FN + s)) ** gamma`` per (sample, class).

    ``TP = sum(p g)``, ``FP = sum(p (1 - g))``, ``FN = sum((1 - p) g)`` over the non-ignored
    pixels (:func:`segmentation_counts` for ``mode``); ``alpha`` weights false positives, as in
    MONAI. A class absent from both prediction and target with ``s = 0`` scores 0.
    ``alpha = beta = 1`` is the soft Jaccard loss ``1 - (I + s) / (P + G - I + s)``;
    ``gamma != 1`` is the focal Tversky loss, raised per (sample, class).

    ``include_background=False`` leaves channel 0 out (``"none"`` then returns ``[B, C - 1]``);
    ``class_weights [C]`` multiply each class's loss before the reduction (MONAI's ``weight``:
    ``"mean"`` still divides by the number of (sample, class) terms). ``"none"`` returns
    ``[B, C]``.

    Example:
        >>> logits = torch.zeros(1, 2, 2)  # p = 1/2: TP = FP = FN = 1/2 for each class
        >>> tversky_loss(logits, torch.tensor([[0, 1]]), alpha=0.2, beta=0.2, smooth=0.0)
        tensor(0.2857)
    """
    tp, predicted, target_sum = segmentation_counts(
        logits, target, mode=mode, ignore_index=ignore_index, label_range=label_range
    )
    # TP + alpha (P - TP) + beta (G - TP), summed in this order so that dice and Jaccard round
    # exactly as their own formulas: (P + G) / 2 and P + G - TP
    denominator = alpha * predicted + beta * target_sum + (1 - alpha - beta) * tp + smooth
    loss = 1 - _ratio(tp + smooth, denominator)
    if not include_background:
        loss = loss[:, 1:]
        class_weights = None if class_weights is None else class_weights[1:]
    if gamma != 1:
        # a perfect score stays exactly 0; elsewhere the floor keeps the gradient finite for
        # gamma < 1 (and a ratio rounded one ulp above 1 from a NaN power); NaN passes through
        loss = torch.where(loss == 0, loss, loss.clamp_min(TINY).pow(gamma))
    if class_weights is not None:
        loss = loss * class_weights.to(loss.dtype)
    return reduce_loss(loss, reduction)


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Soft dice ``1 - (2 I + s) / (P + G + s)`` per (sample, class); ``"none"`` -> ``[B, C]``.

    The Tversky loss with ``alpha = beta = 1/2`` and smoothing ``s / 2``, on softmax
    probabilities and class-index targets; :func:`tversky_loss` with those values takes the
    other modes, class weights and ``include_background``.

    Example:
        >>> logits = torch.zeros(1, 2, 2)  # p = 1/2 everywhere
        >>> dice_loss(logits, torch.tensor([[0, 1]]), smooth=0.0)  # 1 - 2 (1/2) / (1 + 1)
        tensor(0.5000)
    """
    return tversky_loss(
        logits,
        target,
        alpha=0.5,
        beta=0.5,
        smooth=smooth / 2,
        ignore_index=ignore_index,
        reduction=reduction,
        label_range=label_range,
    )

"""Cross entropy with online hard example mining (OHEM) over the pixels of a batch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import inner_reduction, nonzero, to_float32

__all__ = ["ohem_cross_entropy", "ohem_keep"]


class _WeightedCrossEntropy(torch.autograd.Function):
    """``ce * w`` per pixel for fixed weights ``w [B, N]`` and a cross entropy ``ce [B, N]``
    computed beforehand (without a graph) from logits ``x [B, C, N]``.

    Saves nothing but its inputs; the backward pass recomputes the softmax from the logits,
    ``dx = softmax(x) a - onehot(t) a`` with ``a = upstream * w``: one fused softmax, a scaling
    in place and a scatter, instead of autograd's zero-filled NLL gradient and log-softmax
    backward.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, w: Tensor, ce: Tensor) -> Tensor:
        ctx.save_for_backward(x, t, w)
        return ce * w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        x, t, w = ctx.saved_tensors
        with torch.autocast(device_type=x.device.type, enabled=False):
            a = (grad.to(x.dtype) * w).unsqueeze(1)  # [B, 1, N]
            dx = x.softmax(1).mul_(a)
            dx.scatter_add_(1, t.unsqueeze(1), a.neg())
        return dx, None, None, None


def ohem_keep(ce: Tensor, valid: Tensor, *, thresh: float, count: int) -> Tensor:
    """Which pixels OHEM keeps: ``p_t = exp(-ce) < thresh``, and at least the ``count``
    hardest (largest ``ce``, ties at the boundary included) of the valid ones.

    Branch-free, so that ``torch.compile`` traces it as one graph: the ``count``-th largest
    cross entropy is found with ``kthvalue`` (linear time, no sort), ignored pixels counting as
    the easiest of all. A NaN cross entropy is always kept, so a NaN reaches the loss.

    Example:
        >>> ce = torch.tensor([0.1, 2.0, 0.5, 0.05])  # p_t = 0.90, 0.14, 0.61, 0.95
        >>> ohem_keep(ce, torch.ones(4, dtype=torch.bool), thresh=0.7, count=3).tolist()
        [True, True, True, False]
    """
    if count >= ce.numel():  # every valid pixel is among the hardest
        return valid
    # p_t < thresh  <=>  ce > -log(thresh); "easy" is the complement, so NaN is never easy
    easy = ce <= (-math.log(thresh) if thresh > 0 else math.inf)
    if count > 0:
        hardness = torch.where(valid, ce, torch.full_like(ce, -1.0)).reshape(-1)
        # the count-th largest is the (n - count + 1)-th smallest
        boundary = torch.kthvalue(hardness, hardness.numel() - count + 1).values
        easy &= ce < boundary
    return valid & ~easy


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    weight: Tensor | None = None,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
) -> Tensor:
    """Cross entropy over the hard pixels only: ``p_t < thresh``, at least ``min_kept`` per
    image (the hardest of the batch, ``min_kept * B`` in all), as mmseg's ``OHEMPixelSampler``.

    ``logits [B, C, *]`` and class-index targets ``[B, *]``; pixels equal to ``ignore_index``
    are never kept. ``"mean"`` averages over the kept pixels (weighted by ``weight[t]`` when
    class weights are given, as ``F.cross_entropy``); ``"none"`` returns the per-pixel loss,
    0 where not kept. The selection has no gradient.

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])  # [1, 2, 3 pixels]
        >>> target = torch.tensor([[0, 0, 0]])  # p_t = 0.88, 0.5, 0.27: the last two are kept
        >>> ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1)
        tensor(1.0032)
    """
    inner = inner_reduction(reduction)
    x = to_float32(logits)
    batch, classes = x.shape[0], x.shape[1]
    x = x.reshape(batch, classes, math.prod(x.shape[2:]))
    t = target.reshape(batch, x.shape[2]).long()
    valid = t != ignore_index
    t = torch.where(valid, t, torch.zeros_like(t))
    with torch.no_grad(), torch.autocast(device_type=x.device.type, enabled=False):
        ce = x.log_softmax(1).gather(1, t.unsqueeze(1)).squeeze(1).neg_()
        kept = ohem_keep(ce, valid, thresh=thresh, count=min_kept * batch)
        pixel_weight = kept.to(x.dtype)
        if weight is not None:
            pixel_weight *= weight.to(x.dtype)[t]
    loss: Tensor = _WeightedCrossEntropy.apply(x, t, pixel_weight, ce)
    if inner == "none":
        return loss.reshape(target.shape)
    total = loss.sum()
    return total if reduction == "sum" else total / nonzero(pixel_weight.sum())

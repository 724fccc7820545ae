"""Cross entropy with online hard example mining (OHEM) over the pixels of a batch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import flatten_segmentation, inner_reduction, nonzero

__all__ = ["ohem_cross_entropy", "ohem_keep"]


class _WeightedCrossEntropy(torch.autograd.Function):
    """``ce * w`` per pixel for fixed weights ``w [B, N]`` and a cross entropy ``ce [B, N]``
    computed beforehand (without a graph) from logits ``x [B, C, N]``.

    Saves nothing but its inputs; the backward pass recomputes the softmax from the logits,
    ``dx = (softmax(x) - onehot(t)) * upstream * w``: one fused softmax, a scatter and a
    scaling in place, instead of autograd's zero-filled NLL gradient and log-softmax backward.
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
            dx = x.softmax(1)  # minus the one-hot target, times upstream * w
            minus_one = torch.full((), -1.0, dtype=x.dtype, device=x.device)
            dx.scatter_add_(1, t.unsqueeze(1), minus_one.expand(t.unsqueeze(1).shape))
            dx.mul_((grad.to(x.dtype) * w).unsqueeze(1))
        return dx, None, None, None


def ohem_keep(ce: Tensor, valid: Tensor | None, *, thresh: float, count: int) -> Tensor:
    """Which pixels OHEM keeps: ``p_t = exp(-ce) < thresh``, and at least the ``count``
    hardest (largest ``ce``, ties at the boundary included) of the valid ones.

    One comparison with one bound, branch-free for ``torch.compile``: a pixel is kept when
    ``ce >= min(c, the count-th largest ce)``, ``c`` the smallest number above ``-log(thresh)``.
    The count-th largest comes from ``kthvalue`` (linear time, no sort), ignored pixels (``valid``
    False; ``None``: none) counting as ``-1``, below every cross entropy. A NaN is not kept, but
    reaches the loss all the same (``ce * weight`` is NaN).

    Example:
        >>> ce = torch.tensor([0.1, 2.0, 0.5, 0.05])  # p_t = 0.90, 0.14, 0.61, 0.95
        >>> ohem_keep(ce, None, thresh=0.7, count=3).tolist()
        [True, True, True, False]
    """
    hardness = ce if valid is None else ce.masked_fill(~valid, -1.0)
    if count >= ce.numel():  # every valid pixel is among the hardest
        return hardness >= 0
    # p_t < thresh  <=>  ce > -log(thresh)  <=>  ce >= the next float above it
    limit = torch.tensor(-math.log(thresh) if thresh > 0 else math.inf, dtype=ce.dtype)
    bound = torch.nextafter(limit, torch.tensor(math.inf, dtype=ce.dtype)).to(ce.device)
    if count > 0:  # the count-th largest is the (n - count + 1)-th smallest
        kth = torch.kthvalue(hardness.reshape(-1), hardness.numel() - count + 1).values
        bound = torch.minimum(bound, kth).clamp_min(0)  # >= 0: never an ignored pixel
    return hardness >= bound


def ohem_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    thresh: float = 0.7,
    min_kept: int = 100_000,
    weight: Tensor | None = None,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Cross entropy over the hard pixels only: ``p_t < thresh``, at least ``min_kept`` per
    image (the hardest of the batch, ``min_kept * B`` in all), as mmseg's ``OHEMPixelSampler``.

    ``logits [B, C, *]`` and class-index targets ``[B, *]``; pixels equal to ``ignore_index``
    are never kept. ``"mean"`` averages over the kept pixels (weighted by ``weight[t]`` when
    class weights are given, as ``F.cross_entropy``); ``"none"`` returns the per-pixel loss,
    0 where not kept. The selection has no gradient. ``label_range``: ``(min, max)`` of the
    labels if known (from the class-index check).

    Example:
        >>> logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]]])  # [1, 2, 3 pixels]
        >>> target = torch.tensor([[0, 0, 0]])  # p_t = 0.88, 0.5, 0.27: the last two are kept
        >>> ohem_cross_entropy(logits, target, thresh=0.7, min_kept=1)
        tensor(1.0032)
    """
    inner = inner_reduction(reduction)
    x, t, valid_float = flatten_segmentation(logits, target, ignore_index, label_range)
    valid = None if valid_float is None else valid_float.bool()
    batch = x.shape[0]
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

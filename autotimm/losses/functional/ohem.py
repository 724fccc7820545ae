"""Cross entropy with online hard example mining (OHEM) over the pixels of a batch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import inner_reduction, nonzero, to_float32

__all__ = ["ohem_cross_entropy", "ohem_keep"]


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
    # p_t < thresh  <=>  ce > -log(thresh); "easy" is the complement, so NaN is never easy
    easy = ce <= (-math.log(thresh) if thresh > 0 else math.inf)
    count = min(count, ce.numel())
    if count > 0:
        hardness = torch.where(valid, ce, torch.full_like(ce, -1.0)).reshape(-1)
        boundary = -torch.kthvalue(-hardness, count).values  # the count-th largest
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
    t = target.long()
    with torch.autocast(device_type=x.device.type, enabled=False):
        ce = F.cross_entropy(x, t, ignore_index=ignore_index, reduction="none")
    with torch.no_grad():
        kept = ohem_keep(ce.detach(), t != ignore_index, thresh=thresh, count=min_kept * x.shape[0])
        pixel_weight = kept.to(ce.dtype)
        if weight is not None:
            pixel_weight *= weight.to(ce.dtype)[torch.where(kept, t, torch.zeros_like(t))]
    loss = ce * pixel_weight
    if inner == "none":
        return loss
    total = loss.sum()
    return total if reduction == "sum" else total / nonzero(pixel_weight.sum())

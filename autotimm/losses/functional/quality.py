"""Losses of dense detectors that learn localisation quality: the quality focal and
distribution focal losses of GFL (Li et al. 2020) and the varifocal loss of VarifocalNet
(Zhang et al. 2021), with the semantics of mmdet's ``quality_focal_loss_tensor_target``,
``distribution_focal_loss`` and ``varifocal_loss``.

The two sigmoid losses take dense soft targets of the logits' shape: the IoU of the predicted
box with its ground truth at the ground truth's class, 0 elsewhere. They run on the engine of
the focal loss (analytic gradient, cache-sized steps), and are exact in both float32 tails
where the targets are 0 or 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._chunked import (
    Scratch,
    Terms,
    TermsFn,
    chunked_loss,
    power,
    softplus_of_minus_abs,
)
from autotimm.losses.functional._utils import (
    TINY,
    compiling,
    reduce_loss,
    to_float32,
    weighted_reduce,
)
from autotimm.losses.functional.focal import binary_focal_terms

__all__ = ["distribution_focal_loss", "quality_focal_loss", "varifocal_loss"]


def _soft_common(x: Tensor, t: Tensor, scratch: Scratch) -> tuple[Tensor, Tensor, Tensor]:
    """``(s, r, ce)``: ``sigmoid(x)``, ``sigmoid(-x)`` and the binary cross entropy
    ``lerp(softplus(x), softplus(-x), t)`` (exact for targets 0 and 1), in buffers 1-3; buffers
    0 and 4 are free afterwards."""
    negated, s, r, ce, spare = scratch.views(x)[:5]
    torch.neg(x, out=negated)
    torch.sigmoid(x, out=s)
    torch.sigmoid(negated, out=r)
    tail = softplus_of_minus_abs(x, spare)
    torch.lerp(torch.clamp_min(x, 0, out=ce), negated.clamp_min_(0), t, out=ce).add_(tail)
    return s, r, ce


def _quality_terms(beta: float) -> TermsFn:
    """QFL terms: ``|t - s|^beta ce`` with ``s = sigmoid(x)``. On a step of 0/1 targets this is
    the focal loss with ``gamma = beta`` (its exact binary terms); otherwise, with
    ``d = s - t`` (as ``lerp(s, -sigmoid(-x), t)``: exact at 0 and 1),

        l = |d|^(beta - 1) (|d| ce),   dl/dx = |d|^(beta - 1) sign(d) (d^2 + beta s (1 - s) ce),

    where ``|d|^(beta - 1)`` takes ``|d|`` as at least the smallest normal float (finite for
    ``beta < 1``; both other factors vanish at ``d = 0``).
    """

    def terms(x: Tensor, t: Tensor, hard: bool, need_grad: bool, scratch: Scratch) -> Terms:
        if hard:
            return binary_focal_terms(x, t, None, beta, need_grad, scratch)
        s, r, ce = _soft_common(x, t, scratch)
        d, _, _, _, magnitude, value, factor = scratch.views(x)
        torch.lerp(s, torch.neg(r, out=d), t, out=d)
        if beta == 0:  # binary cross entropy
            return ce, None, d
        torch.abs(d, out=magnitude)
        torch.mul(magnitude, ce, out=value)
        scale: Tensor | None = None
        if beta == 2:
            scale = magnitude
        elif beta != 1:
            scale = power(torch.clamp_min(magnitude, TINY, out=factor), beta - 1, factor)
        if not need_grad:
            return value, scale, None
        slope = s.mul_(r).mul_(ce).mul_(torch.sign(d, out=r))  # sign(d) s (1 - s) ce
        return value, scale, torch.mul(d, magnitude, out=r).add_(slope, alpha=beta)

    return terms


def quality_focal_loss(
    logits: Tensor, target: Tensor, *, beta: float = 2.0, reduction: Reduction = "mean"
) -> Tensor:
    """Quality focal loss ``|y - sigmoid(x)|^beta BCE(x, y)`` for soft targets ``y`` in [0, 1].

    Args:
        logits: Classification logits of any shape, e.g. ``[N, C]``.
        target: Quality targets of the same shape: the IoU score at an anchor's class, else 0.
        beta: Focusing exponent (>= 0); 0 gives binary cross entropy.
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.

    Example:
        >>> quality_focal_loss(torch.zeros(2), torch.tensor([0.5, 0.0]))  # (0 + 1/4 log 2) / 2
        tensor(0.0866)
    """
    x = to_float32(logits).contiguous()
    known_binary = not target.is_floating_point()
    t = target.to(x.dtype).contiguous()
    if compiling() or t.requires_grad:
        return reduce_loss(_quality_reference(x, t, beta), reduction)
    return chunked_loss(
        x,
        t,
        _quality_terms(beta),
        buffers=5 if known_binary else 7,
        reduction=reduction,
        hard=True if known_binary else None,
    )


def _quality_reference(x: Tensor, t: Tensor, beta: float) -> Tensor:
    """Element-wise QFL through autograd (while compiling, or for targets that need a
    gradient); ``|d|`` is clamped at the smallest normal float before its power."""
    ce = torch.lerp(F.softplus(x), F.softplus(-x), t)
    if beta == 0:
        return ce
    distance = torch.lerp(torch.sigmoid(x), -torch.sigmoid(-x), t).abs()
    return ce * distance.clamp_min(TINY).pow(beta)


def _varifocal_terms(alpha: float, gamma: float, iou_weighted: bool) -> TermsFn:
    """VFL terms: with ``s = sigmoid(x)`` and ``ce`` the binary cross entropy against ``t``,

    - ``t > 0``: ``l = f ce`` with ``f = t`` (``iou_weighted``) or 1, ``dl/dx = f (s - t)``;
    - ``t = 0``: ``l = alpha s^gamma ce`` and ``dl/dx = alpha s^gamma (s + gamma (1 - s) ce)``.

    The two cases are selected by ``sign(t)`` through ``lerp`` (exact at 0 and 1), and
    ``s - t`` is ``lerp(s, -sigmoid(-x), t)``, exact at targets 0 and 1.
    """

    def terms(x: Tensor, t: Tensor, hard: bool, need_grad: bool, scratch: Scratch) -> Terms:
        s, r, ce = _soft_common(x, t, scratch)
        grad, _, _, _, positive, factor = scratch.views(x)
        torch.sign(t, out=positive)
        negative_weight = (
            power(s, gamma, factor).mul_(alpha) if gamma != 0 else scratch.constant(alpha)
        )
        positive_weight = t if iou_weighted else scratch.one
        torch.lerp(negative_weight, positive_weight, positive, out=factor)
        if not need_grad:
            return ce, factor, None
        torch.lerp(s, torch.neg(r, out=grad), t, out=grad)  # d ce / dx = s - t
        if gamma != 0:  # + (1 - positive) gamma (1 - s) ce
            focusing = torch.sub(scratch.one, positive, out=positive).mul_(r).mul_(ce)
            grad.add_(focusing, alpha=gamma)
        return ce, factor, grad

    return terms


def varifocal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.75,
    gamma: float = 2.0,
    iou_weighted: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    """Varifocal loss for soft targets ``y`` in [0, 1]: ``y BCE(x, y)`` where ``y > 0``
    (``BCE(x, y)`` without ``iou_weighted``), ``alpha sigmoid(x)^gamma BCE(x, 0)`` where
    ``y = 0``.

    Args:
        logits: Classification logits of any shape, e.g. ``[N, C]``.
        target: IoU-aware classification scores of the same shape (0 for negatives).
        alpha: Weight of the negatives.
        gamma: Focusing exponent of the negatives (>= 0).
        iou_weighted: Weight each positive by its target score.
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.

    Example:
        >>> varifocal_loss(torch.zeros(2), torch.tensor([1.0, 0.0]))  # (1 + 0.75 / 4) log 2 / 2
        tensor(0.4116)
    """
    x = to_float32(logits).contiguous()
    t = target.to(x.dtype).contiguous()
    if compiling() or t.requires_grad:
        return reduce_loss(_varifocal_reference(x, t, alpha, gamma, iou_weighted), reduction)
    terms = _varifocal_terms(alpha, gamma, iou_weighted)
    return chunked_loss(x, t, terms, buffers=6, reduction=reduction, hard=False)


def _varifocal_reference(
    x: Tensor, t: Tensor, alpha: float, gamma: float, iou_weighted: bool
) -> Tensor:
    """Element-wise VFL through autograd (while compiling, or for targets with a gradient,
    which, as in mmdet, flows through the weight ``t`` of the positives too)."""
    ce = torch.lerp(F.softplus(x), F.softplus(-x), t)
    positive = torch.sign(t)
    negative_weight = alpha * torch.sigmoid(x) ** gamma if gamma != 0 else torch.full_like(x, alpha)
    positive_weight = t if iou_weighted else torch.ones_like(t)
    return ce * torch.lerp(negative_weight, positive_weight, positive)


def distribution_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Distribution focal loss: cross entropy of the distribution ``logits [..., n + 1]`` over
    the bins ``0 .. n`` against a continuous ``target [...]`` in ``[0, n]``, split between the
    two bins around it by linear interpolation:

        l = -((b + 1 - y) log p_b + (y - b) log p_(b+1)),   b = min(floor(y), n - 1).

    ``weight`` (broadcastable to ``target``, e.g. per box) gives the weighted mean
    ``sum(w l) / sum(w)``; ``"none"`` returns ``w l`` of ``target``'s shape.

    Example:
        >>> logits = torch.zeros(1, 5)  # bins 0 .. 4, uniform: -log p = log 5
        >>> distribution_focal_loss(logits, torch.tensor([2.3]))
        tensor(1.6094)
    """
    x = to_float32(logits)
    y = target.to(x.dtype)
    bins = x.shape[-1]
    log_p = x.log_softmax(-1)
    left = y.detach().floor().clamp(0, max(bins - 2, 0)).long()
    right_weight = y - left.to(y.dtype)
    picked = log_p.gather(-1, torch.stack([left, left + 1], -1))
    loss = -torch.lerp(picked[..., 0], picked[..., 1], right_weight)
    return weighted_reduce(loss, weight, reduction)

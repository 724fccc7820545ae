"""Focal losses: sigmoid focal (RetinaNet) on dense or index targets, softmax focal per pixel,
and the per-pixel focal loss of every segmentation mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction, SegmentationMode
from autotimm.losses.functional._chunked import (
    Scratch,
    Terms,
    TermsFn,
    chunked_loss,
    power,
    softplus,
    softplus_of_minus_abs,
)
from autotimm.losses.functional._utils import (
    TINY,
    compiling,
    flatten_masks,
    inner_reduction,
    reduce_loss,
    to_float32,
)

__all__ = [
    "focal_pixelwise_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_indices",
    "softmax_focal_loss",
]
# Precision. With s = sigmoid(x) and t the target, the loss is a_t q^gamma ce with
#   q  = 1 - p_t = (1 - t) s + t sigmoid(-x)
#   ce = -log p_t = (1 - t) softplus(x) + t softplus(-x).
# Both are weighted means of values that are exact to a few ulps on either side of 0, and
# torch.lerp(a, b, t) evaluates (1 - t) a + t b without cancellation (it returns b exactly at
# t = 1), so both tails keep their relative precision. The usual forms lose them:
# softplus(x) - t x is exactly 0 for a confident positive (x > 16 in float32, true value
# ~exp(-x)), and 1 - p_t = 1 - sigmoid(x) is exactly 0 there too.


def _alpha_t(t: Tensor, alpha: float) -> Tensor:
    """``alpha`` for positive and ``1 - alpha`` for negative targets (interpolated for soft)."""
    weights = torch.tensor([1 - alpha, alpha], dtype=t.dtype, device=t.device)
    return torch.lerp(weights[0], weights[1], t)


def _focal_reference(
    x: Tensor, t: Tensor, alpha: float | None, gamma: float, weight: Tensor | None
) -> Tensor:
    """Element-wise sigmoid focal loss through autograd (used when compiling, or for soft
    targets that need a gradient). ``1 - p_t`` is clamped at the smallest normal float, which
    keeps the gradient finite for ``gamma < 1`` at saturated logits."""
    loss = torch.lerp(F.softplus(x), F.softplus(-x), t)
    if gamma != 0:
        one_minus_pt = torch.lerp(torch.sigmoid(x), torch.sigmoid(-x), t)
        loss = loss * one_minus_pt.clamp_min(TINY).pow(gamma)
    if alpha is not None:
        loss = loss * _alpha_t(t, alpha)
    if weight is not None:
        loss = loss * weight
    return loss


def binary_focal_terms(
    x: Tensor, t: Tensor, alpha: float | None, gamma: float, need_grad: bool, scratch: Scratch
) -> Terms:
    """``(ce, factor, dl/dx / factor)`` for targets that are exactly 0 or 1.

    Then ``w = (1 - 2t) x`` is the logit of ``1 - p_t``: ``q = sigmoid(w)`` and
    ``ce = softplus(w)``, exact in both tails, and with ``u = 1 - 2t``

        dl/dx = factor * u * (q + gamma (1 - q) ce).
    """
    u, w, q, ce, spare = scratch.views(x)[:5]
    torch.add(scratch.one, t, alpha=-2.0, out=u)  # +1 for negatives, -1 for positives
    torch.mul(x, u, out=w)
    torch.sigmoid(w, out=q)
    softplus(w, ce, spare)
    factor: Tensor | None = None
    if gamma != 0:  # w is free from here on
        factor = power(q, gamma, w)
    if alpha is not None:  # alpha for u = -1, 1 - alpha for u = +1
        alpha_t = torch.add(scratch.half, u, alpha=0.5 - alpha, out=w if factor is None else spare)
        factor = alpha_t if factor is None else factor.mul_(alpha_t)
    if not need_grad:
        return ce, factor, None
    if gamma == 0:
        return ce, factor, q.mul_(u)
    grad = torch.addcmul(ce, q, ce, value=-1.0, out=spare)  # p_t ce = ce - q ce
    return ce, factor, torch.add(q, grad, alpha=gamma, out=grad).mul_(u)


def _soft_terms(
    x: Tensor, t: Tensor, alpha: float | None, gamma: float, need_grad: bool, scratch: Scratch
) -> Terms:
    """``(ce, factor, dl/dx / factor)`` for any targets in [0, 1]; with ``s = sigmoid(x)``

    dce/dx = (1 - t) s - t sigmoid(-x),   dq/dx = (1 - 2t) s sigmoid(-x),
    dl/dx  = factor [dce/dx + gamma ce (dq/dx) / q].
    """
    negated, s, s_neg, q, ce, spare, grad = scratch.views(x)
    torch.neg(x, out=negated)
    torch.sigmoid(x, out=s)
    torch.sigmoid(negated, out=s_neg)
    torch.lerp(s, s_neg, t, out=q)
    # softplus(+-x) = max(+-x, 0) + softplus(-|x|): the lerp of the two is that common term
    # (one softplus, the costly part, instead of two) plus a lerp of non-negative numbers
    tail = softplus_of_minus_abs(x, spare)
    torch.lerp(torch.clamp_min(x, 0, out=ce), negated.clamp_min_(0), t, out=ce).add_(tail)
    factor: Tensor | None = None  # negated and spare are free from here on
    if gamma != 0:
        factor = power(q, gamma, spare)
    if alpha is not None:
        weights = torch.tensor([1 - alpha, alpha], dtype=t.dtype, device=t.device)
        alpha_t = torch.lerp(weights[0], weights[1], t, out=negated)
        factor = alpha_t if factor is None else factor.mul_(alpha_t)
    if not need_grad:
        return ce, factor, None
    torch.lerp(s, torch.neg(s_neg, out=grad), t, out=grad)  # dce/dx
    if gamma != 0:  # q = 0 only where s s_neg = 0 too
        modulating = s.mul_(s_neg).mul_(ce).div_(q.clamp_min_(TINY))
        u = torch.add(scratch.one, t, alpha=-2.0, out=s_neg)
        grad.addcmul_(modulating, u, value=gamma)
    return ce, factor, grad


def _focal_terms(alpha: float | None, gamma: float) -> TermsFn:
    """The focal terms: the shorter :func:`binary_focal_terms` when the targets are all 0 or 1
    (always for integer and bool targets), else :func:`_soft_terms`."""

    def terms(x: Tensor, t: Tensor, hard: bool, need_grad: bool, scratch: Scratch) -> Terms:
        return (binary_focal_terms if hard else _soft_terms)(x, t, alpha, gamma, need_grad, scratch)

    return terms


def sigmoid_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Sigmoid focal loss (RetinaNet) on targets of ``logits``' shape, as torchvision's
    ``sigmoid_focal_loss`` (``alpha=None`` disables the class balance, like torchvision's -1).

    Args:
        logits: Logits of any shape.
        target: Binary (or soft) targets of the same shape.
        alpha: Weight of positives in [0, 1]; negatives get ``1 - alpha``.
        gamma: Focusing exponent (>= 0).
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        weight: Optional non-negative multiplier broadcastable to ``logits`` (no gradient).

    Example:
        >>> sigmoid_focal_loss(torch.zeros(2), torch.tensor([0.0, 1.0]), alpha=None)
        tensor(0.1733)
    """
    x = to_float32(logits).contiguous()
    exact_binary = not target.is_floating_point()  # bool or integer 0/1 targets
    t = target.to(x.dtype).contiguous()
    w = None if weight is None else weight.to(x.dtype)
    if compiling() or t.requires_grad or (w is not None and w.requires_grad):
        loss = _focal_reference(x, t, alpha, gamma, w)
        return reduce_loss(loss, reduction)
    return chunked_loss(
        x,
        t,
        _focal_terms(alpha, gamma),
        buffers=5 if exact_binary else 7,
        reduction=reduction,
        weight=w,
        hard=True if exact_binary else None,
    )


def sigmoid_focal_loss_with_indices(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    ignore_index: int = -1,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss with integer targets: ``logits [..., C]``, ``target [...]``.

    Labels ``0 .. C-1`` are classes, ``C`` is background (an all-zero target row) and
    ``ignore_index`` rows are left out; ``"mean"`` averages over the elements of the kept rows.

    Example:
        >>> logits = torch.zeros(3, 2)
        >>> sigmoid_focal_loss_with_indices(logits, torch.tensor([0, 2, -1]), alpha=None)
        tensor(0.1733)
    """
    classes = logits.shape[-1]
    valid = target != ignore_index
    one_hot = target.unsqueeze(-1) == torch.arange(classes, device=target.device)
    row_weight = valid.unsqueeze(-1).to(torch.float32)
    inner = inner_reduction(reduction)
    loss = sigmoid_focal_loss(
        logits, one_hot, alpha=alpha, gamma=gamma, reduction=inner, weight=row_weight
    )
    if reduction == "mean":
        loss = loss / (valid.sum() * classes).clamp_min(1).to(loss.dtype)
    return loss


def softmax_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
) -> Tensor:
    """Softmax focal loss ``-w_c (1 - p_t)^gamma log p_t``, averaged over non-ignored pixels.

    ``alpha``: a float scales the loss, a ``[C]`` tensor weights the classes. With
    ``gamma=0`` and no ``alpha`` this is ``F.cross_entropy(..., ignore_index=...)``.
    ``"none"`` returns the per-pixel loss (0 at ignored pixels).

    Example:
        >>> softmax_focal_loss(torch.zeros(1, 2, 1), torch.tensor([[1]]))  # (1/2)^2 log 2
        tensor(0.1733)
    """
    x = to_float32(logits)
    log_p = x.log_softmax(1)
    t = target.long()
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t))
    log_pt = log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -log_pt
    if gamma != 0:
        loss = loss * (-torch.expm1(log_pt)).clamp_min(TINY).pow(gamma)
    if isinstance(alpha, Tensor):
        loss = loss * alpha.to(x.dtype)[safe]
    elif alpha is not None:
        loss = loss * alpha
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if inner_reduction(reduction) == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp_min(1).to(total.dtype)


def focal_pixelwise_loss(
    logits: Tensor,
    target: Tensor,
    *,
    mode: SegmentationMode = "multiclass",
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
) -> Tensor:
    """Focal loss per pixel ``-w (1 - p_t)^gamma log p_t`` for any segmentation ``mode``.

    ``"multiclass"``: :func:`softmax_focal_loss` on class-index targets. ``"binary"`` /
    ``"multilabel"``: :func:`sigmoid_focal_loss` per element of the dense masks (``alpha=None``
    there: no positive/negative balance), elements equal to ``ignore_index`` left out. In every
    mode ``alpha`` is ``None``, a float that scales the loss or a ``[C]`` tensor of class
    weights, and ``"mean"`` averages over the non-ignored elements; ``"none"`` has the target's
    shape for class indices, the logits' shape for masks (0 where ignored).

    Example:
        >>> logits = torch.zeros(1, 1, 2)  # binary: p_t = 1/2 at both pixels
        >>> focal_pixelwise_loss(logits, torch.tensor([[1, 0]]), mode="binary")  # (1/2)^2 log 2
        tensor(0.1733)
    """
    if mode == "multiclass":
        return softmax_focal_loss(
            logits, target, gamma=gamma, alpha=alpha, ignore_index=ignore_index, reduction=reduction
        )
    x, g, valid = flatten_masks(logits, target, ignore_index)
    weight = valid
    if isinstance(alpha, Tensor):
        class_weight = alpha.to(x.dtype).view(1, -1, 1)
        weight = class_weight if valid is None else valid * class_weight
    inner = inner_reduction(reduction)
    loss = sigmoid_focal_loss(x, g, alpha=None, gamma=gamma, reduction=inner, weight=weight)
    if alpha is not None and not isinstance(alpha, Tensor):
        loss = loss * alpha
    if inner == "none":
        return loss.reshape(logits.shape)
    if reduction == "sum":
        return loss
    if valid is None:
        return loss / max(g.numel(), 1)
    return loss / valid.sum().clamp_min(1)

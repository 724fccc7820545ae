"""Asymmetric loss (ASL, Ridnik et al. 2021) for multi-label classification, with the
semantics of timm's ``AsymmetricLossMultiLabel``.

With ``p = sigmoid(x)``, the target ``y`` (after label smoothing, ``y (1 - s) + s / 2``), the
shifted probability of a negative ``m = min(1 - p + clip, 1)``, ``p_t = y p + (1 - y) m`` and
``gamma_t = gamma_pos y + gamma_neg (1 - y)``:

    loss = -(y log max(p, eps) + (1 - y) log max(m, eps)) (1 - p_t)^gamma_t

Precision: ``log p`` is ``-softplus(-x)`` and ``1 - p`` is ``sigmoid(-x)``, never
``1 - sigmoid(x)``, so a confidently wrong logit keeps its loss up to the ``eps`` bound (timm's
float32 ``1 - sigmoid(x)`` is exactly 0 beyond ``x ~ 17``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._chunked import (
    Scratch,
    Terms,
    TermsFn,
    all_zero_or_one,
    by_target,
    chunked_loss,
    power,
)
from autotimm.losses.functional._utils import TINY, compiling, reduce_loss, to_float32

__all__ = ["asymmetric_loss"]


def _reference(
    x: Tensor,
    y: Tensor,
    gamma_neg: float,
    gamma_pos: float,
    clip: float,
    eps: float,
    weight: Tensor | None,
) -> Tensor:
    """Element-wise ASL through autograd, for any targets in [0, 1] (soft or smoothed) and
    while compiling. ``1 - p_t`` is clamped at the smallest normal float before its power,
    which keeps the gradient finite for exponents below 1."""
    log_eps = math.log(eps)
    ce_pos = -torch.clamp_min(F.logsigmoid(x), log_eps)  # -log max(p, eps)
    if clip > 0:
        shifted = torch.clamp_max(torch.sigmoid(-x) + clip, 1.0)  # m = min(1 - p + clip, 1)
        ce_neg = -torch.log(torch.clamp_min(shifted, eps))
        base_neg = torch.clamp_min(torch.sigmoid(x) - clip, 0.0)  # 1 - m
    else:
        ce_neg = -torch.clamp_min(F.logsigmoid(-x), log_eps)
        base_neg = torch.sigmoid(x)
    loss = torch.lerp(ce_neg, ce_pos, y)
    if gamma_neg != 0 or gamma_pos != 0:
        one_minus_pt = torch.lerp(base_neg, torch.sigmoid(-x), y)
        exponent = gamma_neg + (gamma_pos - gamma_neg) * y
        loss = loss * one_minus_pt.clamp_min(TINY).pow(exponent)
    if weight is not None:
        loss = loss * weight
    return loss


def _power_or_one(base: Tensor, gamma: float, out: Tensor) -> Tensor | float:
    """``base^gamma``: 1 for ``gamma = 0``, ``base`` itself for 1, else into ``out``."""
    if gamma == 0:
        return 1.0
    return base if gamma == 1 else power(base, gamma, out)


def _power_slope(base: Tensor, gamma: float, out: Tensor) -> Tensor | float:
    """``d(base^gamma)/d(base) = gamma base^(gamma - 1)`` (``base >= 0``, ``gamma > 0``); a
    negative power takes ``base`` as at least the smallest normal float, so it stays finite."""
    if gamma == 1:
        return 1.0
    if gamma == 2:
        return torch.mul(base, 2.0, out=out)
    if gamma in (3, 4):
        return power(base, gamma - 1, out).mul_(gamma)
    if gamma < 1:
        base = torch.clamp_min(base, TINY, out=out)
    return power(base, gamma - 1, out).mul_(gamma)


def _binary_terms(gamma_neg: float, gamma_pos: float, clip: float, eps: float) -> TermsFn:
    """The ASL terms of a step whose targets are all 0 or 1 (the loss and its full gradient).

    With ``w = (1 - 2t) x`` (``+x`` for negatives, ``-x`` for positives), ``q = sigmoid(w)``
    is ``1 - p_t`` before clipping and ``r = sigmoid(-w)`` is ``p_t``. With ``clip_t = clip``
    for negatives and 0 for positives, the shifted probability is ``m = min(r + clip_t, 1)``,
    ``base = 1 - m = max(q - clip_t, 0)``, ``ce = -log max(m, eps)`` and the loss is
    ``base^gamma_t ce``. Where ``base > 0``, ``dq/dw = q r`` and ``dce/dw = q r / m``, so

        dl/dx = (1 - 2t) q r (base^gamma_t / m + gamma_t base^(gamma_t - 1) ce),

    with the first term 0 where ``m < eps`` (the clamp of the log), and both 0 where
    ``base = 0`` (the clipped negatives: there ``m = 1`` and ``ce = 0``).
    """

    def terms(x: Tensor, t: Tensor, hard: bool, need_grad: bool, scratch: Scratch) -> Terms:
        w, q, r, m, base, f, ce, grad, slope = scratch.views(x)
        torch.addcmul(x, t, x, value=-2.0, out=w)
        torch.sigmoid(w, out=q)
        torch.sigmoid(w.neg_(), out=r)  # w is free from here on
        if clip > 0:  # clip_t = clip (1 - t), exactly 0 or clip, before r and q join it
            clip_t = torch.mul(t, -clip, out=base).add_(clip)
            torch.add(r, clip_t, out=m).clamp_max_(1.0)
            torch.sub(q, clip_t, out=base).clamp_min_(0.0)
        else:
            m, base = r, q
        f_neg = _power_or_one(base, gamma_neg, f)
        f_pos = _power_or_one(base, gamma_pos, w)
        by_target(f_neg, f_pos, t, f, scratch)  # base^gamma_t
        torch.clamp_min(m, eps, out=ce)  # max(m, eps) for now
        if need_grad:
            torch.div(f, ce, out=grad)
            if clip > 0 and gamma_neg == 0:  # base^0 = 1 does not vanish where m is clipped
                grad.mul_(torch.sign(base, out=w))
            if m.numel() and float(m.min()) < eps:  # a clamped log passes no gradient
                grad.mul_(m >= eps)
        torch.log(ce, out=ce).neg_()
        value = f.mul_(ce)
        if not need_grad:
            return value, None, None
        s_neg = _power_slope(base, gamma_neg, w) if gamma_neg != 0 else 0.0
        s_pos = _power_slope(base, gamma_pos, slope) if gamma_pos != 0 else 0.0
        gamma_slope = by_target(s_neg, s_pos, t, slope, scratch)
        grad.addcmul_(gamma_slope, ce).mul_(q).mul_(r)
        return value, None, grad.addcmul_(t, grad, value=-2.0)  # times dw/dx = 1 - 2t

    return terms


def asymmetric_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma_neg: float = 4.0,
    gamma_pos: float = 1.0,
    clip: float | None = 0.05,
    eps: float = 1e-8,
    label_smoothing: float = 0.0,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Asymmetric loss of ``logits`` against multi-hot (or soft) targets of their shape.

    Args:
        logits: Logits of any shape, e.g. ``[N, C]``.
        target: Targets in [0, 1] of the same shape (float, int or bool).
        gamma_neg, gamma_pos: Focusing exponents of negative and positive targets (>= 0).
        clip: Probability margin shifted onto negatives (``None`` or 0: none).
        eps: Lower bound of the probabilities inside the logs, in (0, 1).
        label_smoothing: Moves every target towards 1/2: ``y (1 - s) + s / 2``.
        weight: Optional non-negative multiplier broadcastable to ``logits`` (e.g. ``[C]``).
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.

    Targets that are all 0 or 1 (without smoothing) take an analytic gradient computed in
    cache-sized steps; soft targets go through autograd.

    Example:
        >>> # p = 1/2: log 2 (1/2 + 1/2^4) / 2 (positive focused by (1 - p), negative by p^4)
        >>> asymmetric_loss(torch.zeros(1, 2), torch.tensor([[1, 0]]), clip=None)
        tensor(0.1949)
    """
    x = to_float32(logits).contiguous()
    known_binary = not target.is_floating_point()
    y = target.to(x.dtype).contiguous()
    c = clip or 0.0
    w = None if weight is None else weight.to(x.dtype)
    if label_smoothing:
        y = torch.lerp(y, torch.full_like(y, 0.5), label_smoothing)
    fast = not (compiling() or y.requires_grad or (w is not None and w.requires_grad))
    if fast and not label_smoothing and (known_binary or all_zero_or_one(y)):
        terms = _binary_terms(gamma_neg, gamma_pos, c, eps)
        return chunked_loss(x, y, terms, buffers=9, reduction=reduction, weight=w, hard=True)
    # soft targets: through autograd (an analytic soft path would be faster, mixup is rarer)
    return reduce_loss(_reference(x, y, gamma_neg, gamma_pos, c, eps, w), reduction)

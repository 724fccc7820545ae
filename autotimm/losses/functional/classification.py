"""Cross entropy, NLL, binary cross entropy and MSE: torch's semantics, computed in float32,
where a batch with nothing to learn gives 0 instead of NaN."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import inner_reduction, nonzero, reduce_loss, to_float32
from autotimm.losses.functional.focal import sigmoid_focal_loss

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_targets",
    "cross_entropy",
    "mse_loss",
    "nll_loss",
    "poly1_cross_entropy",
]


def _over_labels(
    loss_fn: Callable[..., Tensor],
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    reduction: Reduction,
    label_range: tuple[int, int] | None,
) -> Tensor:
    """torch's ``loss_fn`` (cross entropy or NLL) on class indices, in float32, with torch's
    weighted mean ``sum / sum(weight[target])`` over non-ignored targets, 0 when none counts.

    With a known ``label_range`` that excludes ``ignore_index`` and no weights, the count is
    just the number of targets (no pass over them).
    """
    x = to_float32(pred)
    w = None if weight is None else weight.to(x.dtype)
    t = target.long()
    loss = loss_fn(x, t, weight=w, ignore_index=ignore_index, reduction=inner_reduction(reduction))
    if reduction != "mean":
        return loss
    nothing_ignored = label_range is not None and not (
        label_range[0] <= ignore_index <= label_range[1]
    )
    if w is None and nothing_ignored and t.numel() > 0:
        return loss / t.numel()
    valid = t != ignore_index
    if w is None:
        denominator = valid.sum().to(loss.dtype)
    else:
        denominator = (w[torch.where(valid, t, torch.zeros_like(t))] * valid).sum()
    return loss / nonzero(denominator)


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``F.cross_entropy``, computed in float32, where a batch with nothing to learn gives 0.

    ``target`` holds class indices, or class probabilities of ``logits``' shape (float).
    ``label_range``: ``(min, max)`` of the indices if known (from ``check_class_indices``).

    Example:
        >>> cross_entropy(torch.zeros(2, 4), torch.tensor([1, -100]))  # log 4
        tensor(1.3863)
    """
    if not target.is_floating_point():
        smoothed = functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
        return _over_labels(smoothed, logits, target, weight, ignore_index, reduction, label_range)
    x = to_float32(logits)
    loss = F.cross_entropy(
        x,
        target.to(x.dtype),
        weight=None if weight is None else weight.to(x.dtype),
        reduction=inner_reduction(reduction),
        label_smoothing=label_smoothing,
    )
    if reduction == "mean":  # over the samples: all but the class dimension
        loss = loss / max(x.numel() // max(x.shape[0 if x.ndim == 1 else 1], 1), 1)
    return loss


def nll_loss(
    log_probs: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``F.nll_loss`` on log-probabilities in float32; an all-ignored batch gives 0.

    ``label_range``: ``(min, max)`` of the indices if known (from ``check_class_indices``).

    Example:
        >>> nll_loss(torch.full((1, 2), -0.5), torch.tensor([-100]))  # nothing to learn
        tensor(0.)
    """
    return _over_labels(F.nll_loss, log_probs, target, weight, ignore_index, reduction, label_range)


def poly1_cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    epsilon: float = 1.0,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """Poly-1 cross entropy (Leng et al. 2022): cross entropy plus ``epsilon (1 - p_t)``.

    With the target distribution ``q`` (one-hot, label-smoothed ``(1 - s) q + s / C``, or the
    given probabilities) and class weights ``w`` (1 without), per sample

        l = sum_c w_c q_c (-log p_c + epsilon (1 - p_c)),

    which is the paper's ``CE + epsilon (1 - p_t)`` (``1 - sum_c q_c p_c`` with smoothing) and
    exactly ``F.cross_entropy`` at ``epsilon = 0``, including the reduction: ``"mean"`` divides
    by ``sum w_(y_n)`` over non-ignored class-index targets, by the number of samples for
    probability targets.

    Example:
        >>> poly1_cross_entropy(torch.zeros(1, 4), torch.tensor([1]))  # log 4 + 3/4
        tensor(2.1363)
    """
    x = to_float32(logits)
    class_dim = 0 if x.ndim == 1 else 1
    classes = x.shape[class_dim]
    log_p = x.log_softmax(class_dim)
    w = None if weight is None else weight.to(x.dtype).view(-1, *[1] * (x.ndim - class_dim - 1))

    def poly1(log_p: Tensor) -> Tensor:  # -log p + epsilon (1 - p), exact as p -> 1
        return -log_p - epsilon * torch.expm1(log_p) if epsilon else -log_p

    def spread(per_class: Tensor) -> Tensor:  # sum over the classes, each weighted
        return (per_class if w is None else per_class * w).sum(class_dim)

    if target.is_floating_point():  # class probabilities
        q = target.to(x.dtype)
        if label_smoothing:
            q = q * (1 - label_smoothing) + label_smoothing / classes
        return reduce_loss(spread(q * poly1(log_p)), reduction)
    t = target.long()
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t))
    picked = poly1(log_p.gather(class_dim, safe.unsqueeze(class_dim)).squeeze(class_dim))
    target_weight = None if weight is None else weight.to(x.dtype)[safe]
    loss = picked if target_weight is None else picked * target_weight
    if label_smoothing:
        loss = (1 - label_smoothing) * loss + label_smoothing / classes * spread(poly1(log_p))
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if inner_reduction(reduction) == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    counted = valid.to(x.dtype) if target_weight is None else valid * target_weight
    return total / nonzero(counted.sum())


def binary_targets(
    logits: Tensor,
    target: Tensor,
    *,
    label_smoothing: float = 0.0,
    target_threshold: float | None = None,
    smooth_dense: bool = False,
) -> Tensor:
    """Targets of ``logits``' shape for a binary cross entropy, as timm's ``BinaryCrossEntropy``
    makes them.

    Class indices (``target`` without the class dimension 1, or a scalar for ``[C]`` logits)
    become one-hot rows: ``1 - s + s / C`` at the class and ``s / C`` elsewhere. Dense targets
    are kept (mixup and cutmix soften them already), or moved towards 1/2 as
    ``y (1 - s) + s / 2`` with ``smooth_dense``. ``target_threshold`` then makes every target
    above it 1 and the others 0. Targets known to be 0 or 1 come back as ``bool``.

    Example:
        >>> binary_targets(torch.zeros(1, 4), torch.tensor([2]), label_smoothing=0.2)
        tensor([[0.0500, 0.0500, 0.8500, 0.0500]])
    """
    if target.shape != logits.shape:  # class indices
        class_dim = 0 if logits.ndim == 1 else 1
        classes = logits.shape[class_dim]
        labels = torch.arange(classes, device=target.device)
        one_hot = target.unsqueeze(class_dim) == labels.view(-1, *[1] * (target.ndim - class_dim))
        if not label_smoothing:
            target = one_hot
        else:
            dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
            target = one_hot.to(dtype) * (1 - label_smoothing) + label_smoothing / classes
    elif smooth_dense and label_smoothing:
        target = target.float() if not target.is_floating_point() else target
        target = target * (1 - label_smoothing) + label_smoothing / 2
    if target_threshold is not None:
        target = target > target_threshold
    return target


def binary_cross_entropy_with_logits(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``F.binary_cross_entropy_with_logits`` in float32 (integer/bool targets are accepted).

    Without ``pos_weight`` this is the sigmoid focal loss with ``gamma=0`` and no ``alpha``,
    and is computed by it: exact in both float32 tails (torch's value is 0 beyond |x| ~ 17,
    for the correct class) and several times faster on the CPU. :func:`binary_targets` makes
    the targets of class indices and label smoothing.

    Example:
        >>> binary_cross_entropy_with_logits(torch.zeros(2), torch.tensor([0, 1]))  # log 2
        tensor(0.6931)
    """
    if pos_weight is None:
        return sigmoid_focal_loss(
            logits, target, alpha=None, gamma=0.0, reduction=reduction, weight=weight
        )
    x = to_float32(logits)
    loss = F.binary_cross_entropy_with_logits(
        x,
        target.to(x.dtype),
        weight=None if weight is None else weight.to(x.dtype),
        pos_weight=None if pos_weight is None else pos_weight.to(x.dtype),
        reduction="none",
    )
    return reduce_loss(loss, reduction)


def binary_cross_entropy(
    probs: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``F.binary_cross_entropy`` on probabilities in float32 (log clamped at -100, as torch).

    Example:
        >>> binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.0]))  # log 2
        tensor(0.6931)
    """
    x = to_float32(probs)
    with torch.autocast(device_type=x.device.type, enabled=False):
        loss = F.binary_cross_entropy(
            x,
            target.to(x.dtype),
            weight=None if weight is None else weight.to(x.dtype),
            reduction="none",
        )
    return reduce_loss(loss, reduction)


def mse_loss(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """``F.mse_loss`` in float32; the mean of nothing is 0.

    Example:
        >>> mse_loss(torch.zeros(3), torch.ones(3))
        tensor(1.)
    """
    x = to_float32(pred)
    return reduce_loss(F.mse_loss(x, target.to(x.dtype), reduction="none"), reduction)

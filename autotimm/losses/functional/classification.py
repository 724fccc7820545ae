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
    "cross_entropy",
    "mse_loss",
    "nll_loss",
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
    for the correct class) and several times faster on the CPU.

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

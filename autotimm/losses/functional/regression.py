"""L1 and smooth L1 losses of box regression: torch's values, computed in float32, with
optional per-box weights."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import to_float32, weighted_reduce

__all__ = ["l1_loss", "smooth_l1_loss"]


def _per_box(weight: Tensor | None) -> Tensor | None:
    """Per-box weights ``[...]`` as ``[..., 1]``, to broadcast over the 4 coordinates."""
    return None if weight is None else weight.unsqueeze(-1)


def l1_loss(
    pred: Tensor, target: Tensor, *, reduction: Reduction = "mean", weight: Tensor | None = None
) -> Tensor:
    """``F.l1_loss`` of ``[..., 4]`` boxes in float32, with optional per-box ``weight [...]``.

    ``"none"`` gives the per-coordinate loss (times the box's weight), ``"sum"`` its sum and
    ``"mean"`` the weighted mean over coordinates, ``sum(w l) / (4 sum(w))``: torch's mean
    when every weight is 1.

    Example:
        >>> import torch
        >>> l1_loss(torch.zeros(2, 4), torch.ones(2, 4), weight=torch.tensor([1.0, 0.0]))
        tensor(1.)
    """
    x = to_float32(pred)
    loss = F.l1_loss(x, target.to(x.dtype), reduction="none")
    return weighted_reduce(loss, _per_box(weight), reduction)


def smooth_l1_loss(
    pred: Tensor,
    target: Tensor,
    *,
    beta: float = 1.0,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """``F.smooth_l1_loss`` of ``[..., 4]`` boxes in float32 (``0.5 d^2 / beta`` below
    ``beta``, ``|d| - beta / 2`` above; ``beta = 0`` is L1), with optional per-box weights
    reduced as in :func:`l1_loss`.

    Example:
        >>> import torch
        >>> target = torch.tensor([[0.5, 2.0, 0.0, 0.0]])
        >>> smooth_l1_loss(torch.zeros(1, 4), target)  # (1/8 + 3/2) / 4
        tensor(0.4062)
    """
    x = to_float32(pred)
    loss = F.smooth_l1_loss(x, target.to(x.dtype), beta=beta, reduction="none")
    return weighted_reduce(loss, _per_box(weight), reduction)

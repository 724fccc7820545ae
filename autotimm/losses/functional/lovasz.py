"""The Lovász-softmax loss (Berman et al. 2018), all classes sorted at once."""

from __future__ import annotations

import torch
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import flatten_segmentation, inner_reduction, reduce_loss

__all__ = ["lovasz_softmax_loss"]


def lovasz_softmax_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = 255,
    per_image: bool = False,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Lovász-softmax over the classes present in the target (Berman et al. 2018).

    As segmentation_models_pytorch's ``LovaszLoss(mode="multiclass")``: with
    ``per_image=False`` one loss for the whole batch (a 0-dim tensor for every reduction);
    with ``per_image=True`` one loss per image (``"none"`` -> ``[B]``, ``"mean"`` averages).
    All classes are handled at once: errors ``[B', C, N]`` are sorted along the pixels.

    Example:
        >>> logits = torch.tensor([[[3.0, -3.0], [-3.0, 3.0]]])  # [1, 2 classes, 2 pixels]
        >>> lovasz_softmax_loss(logits, torch.tensor([[0, 1]])) < 0.05
        tensor(True)
    """
    inner_reduction(reduction)  # rejects an unknown reduction, also where the batch loss ignores it
    x, t, valid = flatten_segmentation(logits, target, ignore_index, label_range)
    classes = x.shape[1]
    p = x.softmax(1)
    fg = t.unsqueeze(1) == torch.arange(classes, device=x.device).view(1, classes, 1)
    if valid is not None:
        fg &= valid.unsqueeze(1).bool()
    # |fg - p| without keeping a float copy for backward; ignored pixels get error 0, so they
    # sort last and contribute nothing
    errors = torch.where(fg, 1 - p, p if valid is None else p * valid.unsqueeze(1))
    if not per_image:
        errors = errors.transpose(0, 1).reshape(1, classes, -1)
        fg = fg.transpose(0, 1).reshape(1, classes, -1)
    if errors.shape[-1] == 0:  # no pixels at all
        empty = errors.sum((1, 2))
        return empty.reshape(()) if not per_image else reduce_loss(empty, reduction)
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    del errors
    with torch.no_grad():  # the Lovász weights: increments of the Jaccard loss along the order
        seen_fg = fg.gather(-1, order).to(x.dtype).cumsum_(-1)
        del fg, order
        total = seen_fg[..., -1:].clone()
        position = torch.arange(1, seen_fg.shape[-1] + 1, dtype=x.dtype, device=x.device)
        # jaccard = 1 - (total - seen_fg) / union, union = total + (position - seen_fg)
        union = torch.sub(position, seen_fg).add_(total)
        jaccard = seen_fg.sub_(total).div_(union).add_(1)
        weights = union  # reuse the buffer: weights[i] = jaccard[i] - jaccard[i - 1]
        weights[..., :1] = jaccard[..., :1]
        # in place on the view, not out=: torch.compile(fullgraph=True) traces in-place ops
        # on non-contiguous views but not out= tensors
        weights[..., 1:].copy_(jaccard[..., 1:]).sub_(jaccard[..., :-1])
        del jaccard, seen_fg
    per_class = (errors_sorted * weights).sum(-1)  # [B', C]
    present = (total.squeeze(-1) > 0).to(x.dtype)
    per_item = (per_class * present).sum(-1) / present.sum(-1).clamp_min(1)  # [B']
    if not per_image:
        return per_item.reshape(())
    return reduce_loss(per_item, reduction)

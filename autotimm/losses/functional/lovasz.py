"""The Lovász losses (Berman et al. 2018): Lovász-softmax over exclusive classes and the Lovász
hinge per channel for binary and multi-label masks, every class (channel) sorted at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import (
    flatten_masks,
    flatten_segmentation,
    inner_reduction,
    reduce_loss,
)

__all__ = ["lovasz_hinge_loss", "lovasz_softmax_loss"]


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
    per_class, present = _lovasz_extension(errors, fg, per_image)
    if per_class is None:
        return _no_pixels(errors, per_image, reduction)
    present_float = present.to(x.dtype)
    per_item = (per_class * present_float).sum(-1) / present_float.sum(-1).clamp_min(1)
    return per_item.reshape(()) if not per_image else reduce_loss(per_item, reduction)


def lovasz_hinge_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = 255,
    per_image: bool = False,
    reduction: Reduction = "mean",
) -> Tensor:
    """Lovász hinge per channel (Berman et al. 2018) on logits ``[B, C, *]`` and 0/1 masks.

    Per channel: hinge errors ``1 - x (2 g - 1)``, sorted, weighted by the increments of the
    Jaccard loss along that order, through a ReLU; then the mean over the ``C`` channels (every
    channel, present in the target or not). ``per_image=False`` pools the batch per channel
    (a 0-dim tensor for every reduction); ``per_image=True`` scores each image (``"none"`` ->
    ``[B]``). Elements equal to ``ignore_index`` are left out. For one channel this is
    segmentation_models_pytorch's ``LovaszLoss(mode="binary")``.

    Example:
        >>> logits = torch.tensor([[[3.0, -3.0]]])  # [1, 1 channel, 2 pixels], both right
        >>> lovasz_hinge_loss(logits, torch.tensor([[[1, 0]]]))
        tensor(0.)
    """
    inner_reduction(reduction)
    x, g, valid = flatten_masks(logits, target, ignore_index)
    fg = g > 0.5
    errors = 1 - x * (2 * g - 1)
    if valid is not None:  # ignored elements sort last, where their Jaccard increment is 0
        errors = torch.where(valid.bool(), errors, torch.full_like(errors, -torch.inf))
    per_class, _ = _lovasz_extension(errors, fg, per_image, hinge=True)
    if per_class is None:
        return _no_pixels(errors, per_image, reduction)
    per_item = per_class.mean(-1)
    return per_item.reshape(()) if not per_image else reduce_loss(per_item, reduction)


def _no_pixels(errors: Tensor, per_image: bool, reduction: Reduction) -> Tensor:
    """The loss of inputs without pixels: 0, still connected to the graph."""
    return errors.sum() if not per_image else reduce_loss(errors.sum((1, 2)), reduction)


def _lovasz_extension(
    errors: Tensor, fg: Tensor, per_image: bool, *, hinge: bool = False
) -> tuple[Tensor | None, Tensor]:
    """Per (item, class) Lovász extension of the Jaccard loss at ``errors [B, C, N]``.

    Items are the images (``per_image``) or the whole batch. Returns ``([B', C], present)``,
    ``present`` saying which classes have foreground; ``None`` for no pixels at all.
    ``hinge``: the errors pass through a ReLU (the Lovász hinge).
    """
    classes = errors.shape[1]
    if not per_image:
        errors = errors.transpose(0, 1).reshape(1, classes, -1)
        fg = fg.transpose(0, 1).reshape(1, classes, -1)
    if errors.shape[-1] == 0:
        return None, fg.any(-1)
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    del errors
    with torch.no_grad():  # the Lovász weights: increments of the Jaccard loss along the order
        seen_fg = fg.gather(-1, order).to(errors_sorted.dtype).cumsum_(-1)
        del order
        total = seen_fg[..., -1:].clone()
        position = torch.arange(
            1, seen_fg.shape[-1] + 1, dtype=seen_fg.dtype, device=seen_fg.device
        )
        # jaccard = 1 - (total - seen_fg) / union, union = total + (position - seen_fg)
        union = torch.sub(position, seen_fg).add_(total)
        jaccard = seen_fg.sub_(total).div_(union).add_(1)
        weights = union  # reuse the buffer: weights[i] = jaccard[i] - jaccard[i - 1]
        weights[..., :1] = jaccard[..., :1]
        # in place on the view, not out=: torch.compile(fullgraph=True) traces in-place ops
        # on non-contiguous views but not out= tensors
        weights[..., 1:].copy_(jaccard[..., 1:]).sub_(jaccard[..., :-1])
        del jaccard, seen_fg
    if hinge:
        errors_sorted = F.relu(errors_sorted)
    return (errors_sorted * weights).sum(-1), total.squeeze(-1) > 0

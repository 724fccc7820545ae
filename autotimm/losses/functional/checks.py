"""Input checks, one per target kind: class indices, dense targets, boxes.

Each raises a ``ValueError`` that names the loss, the bad value and the shapes involved, so a
wrong label or shape never surfaces as an index error from inside torch. Checks that read
tensor values are skipped while ``torch.compile`` traces.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from autotimm.losses.functional._utils import compiling

__all__ = [
    "check_binary_targets",
    "check_boxes",
    "check_broadcastable",
    "check_class_indices",
    "check_dense",
    "check_softmax_channels",
    "check_unit_interval",
]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _shapes(pred: Tensor, target: Tensor | None) -> str:
    text = f"(prediction shape {tuple(pred.shape)}"
    return text + (")" if target is None else f", target shape {tuple(target.shape)})")


def _class_count(
    pred: Tensor,
    class_dim: int | None,
    num_classes: int | None,
    class_weights: Tensor | None,
    name: str,
    shapes: str,
) -> int | None:
    """The size of the class dimension, checked against ``num_classes`` and the weights."""
    if class_dim is None:
        if num_classes not in (None, 1):
            raise ValueError(
                f"{name}: num_classes={num_classes} but the prediction has no class dimension "
                f"(a single class) {shapes}"
            )
        return None
    if pred.ndim == 0 or not -pred.ndim <= class_dim < pred.ndim:
        raise ValueError(f"{name}: the prediction has no class dimension {class_dim} {shapes}")
    classes = pred.shape[class_dim]
    if num_classes is not None and classes != num_classes:
        raise ValueError(
            f"{name}: num_classes={num_classes} but the prediction has {classes} classes "
            f"along dimension {class_dim} {shapes}"
        )
    if class_weights is not None and tuple(class_weights.shape) != (classes,):
        raise ValueError(
            f"{name}: class weights of shape {tuple(class_weights.shape)} do not match the "
            f"{classes} classes of the prediction {shapes}"
        )
    return classes


def check_class_indices(
    pred: Tensor,
    target: Tensor,
    *,
    name: str,
    class_dim: int = 1,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    extra_labels: int = 0,
    class_weights: Tensor | None = None,
) -> tuple[int, int] | None:
    """Check integer class labels: ``pred``'s shape without ``class_dim``, values in range.

    Labels ``0 .. C + extra_labels - 1`` are valid (``extra_labels=1`` admits a background
    label ``C``), and so is ``ignore_index``. Returns ``(min, max)`` of the labels (``None`` for
    empty targets or while compiling), which the segmentation functions accept as
    ``label_range`` to skip their search for ignored pixels.

    Example:
        >>> check_class_indices(torch.zeros(2, 3), torch.tensor([0, 2]), name="ce")
        (0, 2)
        >>> check_class_indices(torch.zeros(2, 3), torch.tensor([0, 3]), name="ce")
        Traceback (most recent call last):
        ...
        ValueError: ce: target label 3 is neither a class in [0, 3) nor ignore_index=None \
(prediction shape (2, 3), target shape (2,))
    """
    if compiling():
        return None
    if ignore_index is not None and not _INT64_MIN <= ignore_index <= _INT64_MAX:
        raise ValueError(
            f"{name}: ignore_index={ignore_index} is outside the range of integer targets, "
            f"[{_INT64_MIN}, {_INT64_MAX}] (int64)"
        )
    shapes = _shapes(pred, target)
    classes = _class_count(pred, class_dim, num_classes, class_weights, name, shapes)
    assert classes is not None
    dim = class_dim % pred.ndim
    expected = (*pred.shape[:dim], *pred.shape[dim + 1 :])
    if tuple(target.shape) != expected:
        raise ValueError(
            f"{name}: expected class-index targets of shape {expected} for this prediction {shapes}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"{name}: class-index targets must be an integer tensor, got {target.dtype} {shapes}"
        )
    if target.numel() == 0:
        return None
    limit = classes + extra_labels
    low, high = (int(v.item()) for v in torch.aminmax(target))
    if low < 0 or high >= limit:
        invalid = (target < 0) | (target >= limit)
        if ignore_index is not None:
            invalid &= target != ignore_index
        if bool(invalid.any()):
            value = int(target[invalid][0].item())
            allowed = f"a class in [0, {classes})"
            if extra_labels:
                allowed = f"a label in [0, {limit}) ({classes} classes + background)"
            raise ValueError(
                f"{name}: target label {value} is neither {allowed} nor "
                f"ignore_index={ignore_index} {shapes}"
            )
    return low, high


def check_softmax_channels(logits: Tensor, *, name: str, class_dim: int = 1) -> None:
    """Refuse a softmax over a single channel: it is 1 everywhere, so a loss on it is constant.

    Dice, Jaccard, Tversky and Lovász on ``[B, 1, H, W]`` logits would return the same number
    for every prediction, with a zero gradient: a model would train on nothing.

    Example:
        >>> check_softmax_channels(torch.zeros(2, 1, 4, 4), name="dice")
        Traceback (most recent call last):
        ...
        ValueError: dice: the logits have 1 channel (shape (2, 1, 4, 4)), ... num_classes=2 ...
    """
    if logits.ndim > class_dim and logits.shape[class_dim] == 1:
        raise ValueError(
            f"{name}: the logits have 1 channel (shape {tuple(logits.shape)}), and a softmax "
            "over one channel is 1 everywhere, so this loss would be constant with a zero "
            "gradient. For binary segmentation use num_classes=2 (background and foreground), "
            "or a binary/sigmoid loss such as bce_with_logits."
        )


def check_dense(
    pred: Tensor,
    target: Tensor,
    *,
    name: str,
    class_dim: int | None = None,
    num_classes: int | None = None,
    class_weights: Tensor | None = None,
) -> None:
    """Check a target of the prediction's shape (one-hot, soft labels, masks, regression).

    ``class_dim``: the prediction's class dimension, whose size must equal ``num_classes``
    and that of ``class_weights`` when those are given (``None``: no class dimension).

    Example:
        >>> check_dense(torch.zeros(2, 3), torch.zeros(2, 4), name="bce")
        Traceback (most recent call last):
        ...
        ValueError: bce: the target must have the prediction's shape \
(prediction shape (2, 3), target shape (2, 4))
    """
    if compiling():
        return
    shapes = _shapes(pred, target)
    _class_count(pred, class_dim, num_classes, class_weights, name, shapes)
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: the target must have the prediction's shape {shapes}")


def check_binary_targets(
    pred: Tensor,
    target: Tensor,
    *,
    name: str,
    class_dim: int | None = None,
    num_classes: int | None = None,
    weights: Mapping[str, Tensor | None] | None = None,
) -> None:
    """Check dense binary (or soft) targets: ``pred``'s shape, values in [0, 1], and weights
    (``{"pos_weight": ...}``) that broadcast to ``pred``.

    Example:
        >>> check_binary_targets(torch.zeros(2), torch.tensor([0.0, 2.0]), name="bce")
        Traceback (most recent call last):
        ...
        ValueError: bce: target value 2.0 is outside [0.0, 1.0] (shape (2,))
    """
    check_dense(pred, target, name=name, class_dim=class_dim, num_classes=num_classes)
    for argument, value in (weights or {}).items():
        check_broadcastable(value, pred, name=name, argument=argument)
    check_unit_interval(target, name=name, argument="target")


def check_boxes(pred: Tensor, target: Tensor, *, name: str, weight: Tensor | None = None) -> None:
    """Check ``[..., 4]`` boxes ``(x1, y1, x2, y2)`` of equal shapes, and per-box weights.

    Example:
        >>> check_boxes(torch.zeros(3, 5), torch.zeros(3, 5), name="giou")
        Traceback (most recent call last):
        ...
        ValueError: giou: boxes must have shape [..., 4] (x1, y1, x2, y2) \
(prediction shape (3, 5), target shape (3, 5))
    """
    if compiling():
        return
    shapes = _shapes(pred, target)
    if pred.ndim == 0 or pred.shape[-1] != 4:
        raise ValueError(f"{name}: boxes must have shape [..., 4] (x1, y1, x2, y2) {shapes}")
    if tuple(target.shape) != tuple(pred.shape):
        raise ValueError(f"{name}: the target must have the prediction's shape {shapes}")
    if weight is not None and tuple(weight.shape) != tuple(pred.shape[:-1]):
        raise ValueError(
            f"{name}: box weights of shape {tuple(weight.shape)} do not match the "
            f"{tuple(pred.shape[:-1])} boxes {shapes}"
        )


def check_broadcastable(
    value: Tensor | None, pred: Tensor, *, name: str, argument: str
) -> None:
    """Check that a weight such as ``pos_weight`` broadcasts to the prediction's shape.

    Example:
        >>> check_broadcastable(torch.ones(5), torch.zeros(4, 3), name="bce", argument="weight")
        Traceback (most recent call last):
        ...
        ValueError: bce: weight of shape (5,) does not broadcast to the prediction's shape (4, 3)
    """
    if value is None or compiling():
        return
    fits = value.ndim <= pred.ndim and all(
        size in (1, full) for size, full in zip(reversed(value.shape), reversed(pred.shape))
    )
    if not fits:
        raise ValueError(
            f"{name}: {argument} of shape {tuple(value.shape)} does not broadcast to the "
            f"prediction's shape {tuple(pred.shape)}"
        )


def check_unit_interval(values: Tensor, *, name: str, argument: str) -> None:
    """Raise ``ValueError`` unless every value lies in [0, 1] (NaN does not).

    Example:
        >>> check_unit_interval(torch.tensor([0.0, 2.0]), name="focal", argument="target")
        Traceback (most recent call last):
        ...
        ValueError: focal: target value 2.0 is outside [0.0, 1.0] (shape (2,))
    """
    if compiling() or values.numel() == 0 or values.dtype == torch.bool:
        return
    v = values.detach()
    low, high = (float(b.item()) for b in torch.aminmax(v))  # NaN if any value is NaN
    if low >= 0 and high <= 1:
        return
    outside = ~((v >= 0) & (v <= 1))
    bad = float(v[outside][0].item())
    raise ValueError(
        f"{name}: {argument} value {bad} is outside [0.0, 1.0] (shape {tuple(values.shape)})"
    )

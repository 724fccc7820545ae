"""Checks of the models' constructor arguments and input images.

Each raises a ``ValueError`` (or ``TypeError``) that names the argument and what was expected,
so a mistake fails when the model is built or called, not deep inside torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_class_weights",
    "check_images",
    "check_num_classes",
    "check_probability",
    "count_or_none",
    "weights_or_none",
]


def check_num_classes(num_classes: Any, argument: str = "num_classes") -> int:
    """Return ``num_classes`` as an int, or raise ``ValueError`` naming the argument.

    Example:
        >>> check_num_classes(3)
        3
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{argument} must be an integer >= 1; got {num_classes!r}")
    return num_classes


def check_probability(value: Any, argument: str) -> float:
    """Return ``value`` as a float in ``[0, 1]``, or raise ``ValueError`` naming the argument.

    Example:
        >>> check_probability(0.5, "score_thresh")
        0.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{argument} must be in [0, 1]; got {value!r}")
    return float(value)


def check_class_weights(
    class_weights: Tensor | Sequence[float] | None, num_classes: int
) -> Tensor | None:
    """``class_weights`` as a float tensor ``[num_classes]`` (or ``None``).

    Example:
        >>> check_class_weights([1, 2, 3], 3)
        tensor([1., 2., 3.])
    """
    if class_weights is None:
        return None
    weights = torch.as_tensor(class_weights, dtype=torch.float32)
    if weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights must have one weight per class ({num_classes}); "
            f"got shape {list(weights.shape)}"
        )
    return weights


def check_images(images: Any, in_chans: int, argument: str = "images") -> Tensor:
    """Check that ``images`` is a float tensor ``[B, in_chans, H, W]``; return it.

    Example:
        >>> check_images(torch.zeros(2, 3, 8, 8), 3).shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{argument} must be a torch.Tensor [B, {in_chans}, H, W]; got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise ValueError(
            f"{argument} must have shape [B, {in_chans}, H, W] (a batch of {in_chans}-channel "
            f"images); got {list(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"{argument} must be a floating point tensor (normalised images); got {images.dtype}"
        )
    return images


def count_or_none(value: Any) -> int | None:
    """``value`` if it is an int >= 1, else ``None``: the models' ``loss_slots`` read their
    (possibly unchecked, e.g. from a config) arguments with it and never raise.

    Example:
        >>> count_or_none(3), count_or_none("3"), count_or_none(True)
        (3, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def weights_or_none(value: Any) -> tuple[float, ...] | None:
    """``value`` as a tuple of floats if it is a 1-D tensor or sequence of numbers, else
    ``None`` (the models check the weights themselves; see :func:`check_class_weights`).

    Example:
        >>> weights_or_none([1, 2.5]), weights_or_none("heavy")
        ((1.0, 2.5), None)
    """
    if isinstance(value, Tensor):
        return tuple(float(v) for v in value.detach().cpu().reshape(-1).tolist())
    numbers = isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    if numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return tuple(float(v) for v in value)
    return None

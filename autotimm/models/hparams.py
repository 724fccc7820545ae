"""Hyperparameters as plain data: what ``torch.load(weights_only=True)`` and every logger accept."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

__all__ = ["plain_hparam"]


def plain_hparam(value: Any) -> Any:
    """Tensors to lists, tuples to lists, recursively; refuse anything else that is not plain.

    Example:
        >>> import torch
        >>> plain_hparam({"w": torch.tensor([1.0, 2.0]), "r": (6, 12)})
        {'w': [1.0, 2.0], 'r': [6, 12]}
    """
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_hparam(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_hparam(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"hyperparameter value of type {type(value).__name__} cannot be stored as plain data"
    )

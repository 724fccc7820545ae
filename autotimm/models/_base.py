"""Loss adaptation: how a model's raw logits and targets reach the loss it resolved.

Nothing here knows about a particular loss: :func:`adapt_to_loss` reads only the registry
entry's ``expects`` / ``target`` (through a :class:`~autotimm.losses.resolve.ResolvedLoss` or a
:class:`~autotimm.models.model_loss.ModelLoss`), and :func:`warn_unused` its parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Protocol

import torch.nn.functional as F
from torch import Tensor

from autotimm.losses._types import InputKind, TargetKind
from autotimm.losses.resolve import ResolvedLoss

__all__ = ["LossKinds", "adapt_to_loss", "warn_unused"]


class LossKinds(Protocol):
    """What a loss takes, as the registry records it."""

    @property
    def expects(self) -> InputKind: ...

    @property
    def target(self) -> TargetKind: ...


def adapt_to_loss(
    loss: LossKinds,
    prediction: Tensor,
    target: Tensor,
    *,
    class_dim: int | None = 1,
    multi_label: bool = False,
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Turn raw logits and the task's targets into what ``loss``'s registry entry expects.

    - prediction: ``logits`` as is; ``probabilities`` -> softmax over ``class_dim`` when the
      classes are mutually exclusive and the loss takes class indices, otherwise sigmoid;
      ``log_probabilities`` -> log-softmax / log-sigmoid likewise.
    - target: class indices become one-hot floats shaped like ``prediction`` when the loss
      takes ``dense`` targets (pixels equal to ``ignore_index`` get an all-zero vector);
      dense targets become floats; anything else passes through.

    ``class_dim=None`` means independent binary logits (e.g. masks); ``multi_label`` means the
    targets are already dense multi-hot vectors.

    Example:
        >>> import torch
        >>> from autotimm.losses.resolve import resolve_loss
        >>> bce = resolve_loss("bce")
        >>> p, t = adapt_to_loss(bce, torch.zeros(2, 3), torch.tensor([0, 2]))
        >>> p[0, 0].item(), t.tolist()
        (0.5, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    """
    softmax_dim = class_dim if not multi_label and loss.target == "class_indices" else None
    if loss.expects == "probabilities":
        prediction = (
            prediction.sigmoid() if softmax_dim is None else prediction.softmax(softmax_dim)
        )
    elif loss.expects == "log_probabilities":
        prediction = (
            F.logsigmoid(prediction) if softmax_dim is None else prediction.log_softmax(softmax_dim)
        )
    if loss.target == "dense":
        if not target.is_floating_point() and class_dim is not None and not multi_label:
            target = _one_hot(target, prediction.shape[class_dim], class_dim, ignore_index)
        target = target.to(prediction.dtype)
    return prediction, target


def _one_hot(target: Tensor, num_classes: int, class_dim: int, ignore_index: int | None) -> Tensor:
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    one_hot = F.one_hot(target.clamp(0, num_classes - 1).long(), num_classes)
    one_hot = one_hot * valid.unsqueeze(-1)
    return one_hot.movedim(-1, class_dim).float()


def warn_unused(loss: ResolvedLoss, values: Mapping[str, Any], argument: str = "loss_fn") -> None:
    """Warn about model arguments given for the loss (e.g. ``class_weights``) that it ignores.

    Context values reach a loss only when its constructor has a parameter of that name; a
    value the user set explicitly should not vanish silently.

    Example:
        >>> from autotimm.losses.resolve import resolve_loss
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_unused(resolve_loss("dice"), {"class_weights": [1.0, 2.0]})
        >>> "class_weights" in str(caught[0].message)
        True
    """
    accepted = {p.name for p in loss.entry.parameters} if loss.entry is not None else set()
    for name, value in values.items():
        if value is not None and name not in accepted:
            what = (
                f"loss {loss.entry.name!r} has no {name!r} parameter"
                if loss.entry is not None
                else f"{argument} is an instance of an unregistered {type(loss.module).__name__}"
            )
            warnings.warn(
                f"{name} was given but {what}, so it is not used. Configure the loss directly "
                "(e.g. through the loss kwargs) or pick a loss that takes it.",
                UserWarning,
                stacklevel=3,
            )

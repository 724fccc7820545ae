"""``ModelLoss``: the one loss a model calls, as a submodule of the model.

A model turns its loss argument into a :class:`~autotimm.losses.resolve.ResolvedLoss` with
:func:`~autotimm.losses.resolve.resolve_loss` and keeps it as ``model.loss`` (and
``model.mask_loss`` for the instance segmentor's mask head), a :class:`ModelLoss`: the loss
module (``.module``, moved and saved with the model), what the registry says it takes
(``.expects``, ``.target``) and the spec that rebuilds it (``.spec``). Calling it with the
model's raw outputs and the task's targets adapts them to what the loss takes
(:func:`autotimm.models._base.adapt_to_loss`) and calls the loss.

It keeps plain data only (no registry entry), so a model pickles whatever its loss.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from autotimm.losses._types import InputKind, TargetKind
from autotimm.losses.resolve import ResolvedLoss
from autotimm.losses.spec import LossSpec
from autotimm.models._base import adapt_to_loss

__all__ = ["ModelLoss"]


class ModelLoss(nn.Module):
    """A resolved loss bound to how a model's outputs reach it.

    Args:
        resolved: What :func:`~autotimm.losses.resolve.resolve_loss` returned.
        class_dim: The class dimension of the model's logits (``None``: independent binary
            logits, e.g. masks).
        multi_label: The targets are already dense multi-hot vectors.
        ignore_index: Target value of pixels to leave out of one-hot dense targets.

    Attributes:
        module: The loss module that is called.
        name: Its registry name (``None`` for an instance of an unregistered class).
        expects: What it takes as prediction (``"logits"``, ``"probabilities"``, ...).
        target: What it takes as target (``"class_indices"``, ``"dense"``, ...).
        spec: The plain data that rebuilds it, or ``None``.

    Example:
        >>> import torch
        >>> from autotimm.losses.resolve import resolve_loss
        >>> loss = ModelLoss(resolve_loss("bce"))  # probabilities and one-hot targets
        >>> loss.name, loss.expects, loss.target
        ('bce', 'probabilities', 'dense')
        >>> round(loss(torch.zeros(2, 3), torch.tensor([0, 2])).item(), 4)  # sigmoid(0) = 0.5
        0.6931
    """

    module: nn.Module
    name: str | None
    expects: InputKind
    target: TargetKind
    spec: LossSpec | None

    def __init__(
        self,
        resolved: ResolvedLoss,
        *,
        class_dim: int | None = 1,
        multi_label: bool = False,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        self.module = resolved.module
        self.name = resolved.entry.name if resolved.entry is not None else None
        self.expects = resolved.expects
        self.target = resolved.target
        self.spec = resolved.spec
        self.class_dim = class_dim
        self.multi_label = multi_label
        self.ignore_index = ignore_index

    def forward(self, prediction: Tensor, target: Tensor) -> Tensor:
        """The loss of raw ``prediction`` (logits) against the task's ``target``."""
        prediction, target = adapt_to_loss(
            self,
            prediction,
            target,
            class_dim=self.class_dim,
            multi_label=self.multi_label,
            ignore_index=self.ignore_index,
        )
        return self.module(prediction, target)

    def components(self) -> dict[str, Tensor]:
        """The parts of a composite loss after its last call, keyed ``loss_<part>`` for logging.

        Losses that report parts (``last_components``, e.g. ``combined_segmentation`` and
        ``fcos``) give them here, detached; other losses give ``{}``.
        """
        parts = getattr(self.module, "last_components", None)
        if not isinstance(parts, Mapping):
            return {}
        named = {}
        for key, value in parts.items():
            key = str(key)
            named[key if key.startswith("loss") else f"loss_{key}"] = value
        return named

    def extra_repr(self) -> str:
        return f"name={self.name!r}, expects={self.expects!r}, target={self.target!r}"

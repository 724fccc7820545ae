"""``ModelLoss``: the one loss a model calls, as a submodule of the model.

A model resolves each loss argument through its :class:`~autotimm.losses.resolve.LossSlot`
and keeps the result as ``model.loss`` (and ``model.mask_loss`` for the instance segmentor's
mask head), a :class:`ModelLoss`: the loss module (``.module``, moved and saved with the
model), what the model feeds it (``.feed``), what it takes (``.takes``, ``.expects``,
``.target``) and the spec that rebuilds it (``.spec``). Calling it with the model's raw outputs
and targets adapts them to what the loss takes
(:func:`~autotimm.losses.adapt.adapt_to_loss`) and calls the loss.

It keeps plain data only (no registry entry, no schema class), so a model pickles whatever its
loss.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from autotimm.losses._stack import user_stacklevel
from autotimm.losses.adapt import LossFeed, LossTakes, adapt_to_loss
from autotimm.losses.resolve import ResolvedLoss, TakenKinds
from autotimm.losses.spec import LossSpec

__all__ = ["ModelLoss"]


class ModelLoss(nn.Module, TakenKinds):
    """A resolved loss bound to what its model feeds it.

    Args:
        resolved: What :func:`~autotimm.losses.resolve.resolve_loss` (or
            :meth:`LossSlot.resolve <autotimm.losses.resolve.LossSlot.resolve>`) returned.

    Attributes:
        module: The loss module that is called.
        name: Its registry name (``None`` for an instance of an unregistered class).
        feed: What the model feeds it (``None``: called as fed).
        takes: What it takes (``None``: undeclared, called as fed).
        spec: The plain data that rebuilds it, or ``None``.

    Example:
        >>> import torch
        >>> from autotimm.losses.adapt import LossFeed
        >>> from autotimm.losses.resolve import resolve_loss
        >>> feed = LossFeed(task="classification", target="class_indices",
        ...                 prediction=("N", "C"), num_classes=3)
        >>> loss = ModelLoss(resolve_loss("bce", feed=feed))  # probabilities, one-hot targets
        >>> loss.name, loss.expects, loss.target
        ('bce', 'probabilities', 'dense')
        >>> round(loss(torch.zeros(2, 3), torch.tensor([0, 2])).item(), 4)  # sigmoid(0) = 0.5
        0.6931
    """

    module: nn.Module
    name: str | None
    feed: LossFeed | None
    takes: LossTakes | None
    spec: LossSpec | None

    def __init__(self, resolved: ResolvedLoss) -> None:
        super().__init__()
        self.module = resolved.module
        self.name = resolved.entry.name if resolved.entry is not None else None
        self.feed = resolved.feed
        self.takes = resolved.takes
        self.spec = resolved.spec
        self.register_load_state_dict_pre_hook(_read_loss_state)  # type: ignore[no-untyped-call]

    def forward(self, *inputs: Tensor) -> Tensor:
        """The loss of the model's raw ``prediction`` and ``target`` (or, for a structured
        feed, of its inputs as they are)."""
        if self.feed is not None and len(inputs) == 2:
            prediction, target = adapt_to_loss(self.feed, self.takes, inputs[0], inputs[1])
            return self.module(prediction, target)  # type: ignore[no-any-return]
        return self.module(*inputs)  # type: ignore[no-any-return]

    def components(self) -> dict[str, Tensor]:
        """The parts of a composite loss after its last call, keyed ``loss_<part>`` for logging.

        Every module of the loss that reports parts (``last_components``: e.g.
        ``combined_segmentation``, ``fcos``, ``weighted_sum``) gives them here, also one inside
        another (a ``weighted_sum`` that ``fcos`` uses as its classification loss). A part whose
        key another module took already is prefixed with the path of the module that reports
        it. Losses without parts give ``{}``.
        """
        named: dict[str, Tensor] = {}
        for path, module in self.module.named_modules():
            parts = getattr(module, "last_components", None)
            if not isinstance(parts, Mapping):
                continue
            for key, value in parts.items():
                key = str(key)
                # parts already named loss_<x> (fcos, combined) keep their name; any other key,
                # a user's label included ("loss", "lossy"), becomes loss_<key>
                name = key if key.startswith("loss_") else f"loss_{key}"
                if name in named:
                    name = f"loss_{path.replace('.', '_')}_{key}"
                named[name] = value
        return named

    def extra_repr(self) -> str:
        return f"name={self.name!r}, expects={self.expects!r}, target={self.target!r}"


def _read_loss_state(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any
) -> None:
    """Read the loss's state from a checkpoint as this model's loss has it.

    Checkpoints written before ``ModelLoss`` wrapped the loss have ``loss.weight`` for
    ``loss.module.weight``. A checkpoint of another loss (``load_from_checkpoint(path,
    loss_fn=...)`` to fine-tune with a new one) has other keys: the loss keeps the state it
    was built with (from its arguments), with a warning when that drops stored loss state.
    """
    inner = prefix + "module."
    for key in [k for k in state_dict if k.startswith(prefix) and not k.startswith(inner)]:
        state_dict[inner + key[len(prefix) :]] = state_dict.pop(key)
    stored = {k for k in state_dict if k.startswith(prefix)}
    own = {prefix + k: v for k, v in module.state_dict().items()}
    if stored == set(own):
        return
    for key in stored:
        del state_dict[key]
    state_dict.update(own)
    if stored:
        warnings.warn(
            f"the checkpoint's loss state ({', '.join(sorted(stored))}) is not that of this "
            f"model's {prefix.rstrip('.')} (another loss, or other terms); the loss keeps the "
            "state it was built with",
            UserWarning,
            stacklevel=user_stacklevel(),
        )

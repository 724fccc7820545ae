"""The one path by which every model turns its ``loss_fn`` argument into a loss module.

A model passes what the user gave (a registry name or alias, a :class:`LossSpec` or its dict, or
an ``nn.Module``), its own context values (``num_classes``, ``ignore_index``, ...) and the user's
``loss_kwargs``. Context values reach the loss only when its schema has a parameter of that name;
explicit kwargs win. Bad arguments raise the registry's ``LossConfigError`` here, at model
construction, before any data is read.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Union

from torch import nn

from autotimm.losses._entry import LossEntry
from autotimm.losses._types import InputKind, TargetKind
from autotimm.losses.registry import get_loss_registry
from autotimm.losses.spec import LossSpec, find_entry

__all__ = ["LossLike", "ResolvedLoss", "resolve_loss"]

LossLike = Union[str, LossSpec, Mapping[str, Any], nn.Module]  # noqa: UP007 - runtime alias
"""What a model's ``loss_fn`` accepts."""

_UNREGISTERED = "unregistered:"


@dataclasses.dataclass(frozen=True)
class ResolvedLoss:
    """A loss module together with what the registry knows about it.

    Attributes:
        module: The loss to call.
        entry: Its registry entry, or ``None`` for an instance of an unregistered class.
        spec: Plain data that rebuilds it (for hyperparameters), or ``None`` if there is none.
    """

    module: nn.Module
    entry: LossEntry | None
    spec: LossSpec | None

    @property
    def expects(self) -> InputKind:
        """What the loss takes as prediction (``"logits"`` when unknown)."""
        return self.entry.expects if self.entry is not None else "logits"

    @property
    def target(self) -> TargetKind:
        """What the loss takes as target (``"class_indices"`` when unknown)."""
        return self.entry.target if self.entry is not None else "class_indices"

    def to_hparam(self, context: Mapping[str, Any] | None = None) -> dict[str, Any] | str:
        """What a checkpoint stores: the spec as plain data, or a marker that names the class.

        Loading passes the stored spec through :func:`resolve_loss` with the model's
        ``context`` again, which fills parameters the spec leaves out. So every parameter the
        context names is written down explicitly (with the loss's own default where an
        instance did not set it): the reloaded loss is this one, not one with the context's
        value. A marker naming an unregistered class makes loading ask for the loss again,
        rather than silently training with a different one.

        Example:
            >>> from autotimm.losses import get_loss
            >>> stored = resolve_loss(get_loss("dice", smooth=0.5)).to_hparam({"ignore_index": 0})
            >>> stored["name"], stored["params"]
            ('dice', {'smooth': 0.5, 'ignore_index': 255})
        """
        if self.spec is None or self.entry is None:
            cls = type(self.module)
            return f"{_UNREGISTERED}{cls.__module__}.{cls.__qualname__}"
        params = dict(self.spec.params)
        implicit = {
            p.name: p.default
            for p in self.entry.parameters
            if context is not None
            and context.get(p.name) is not None
            and p.name not in params
            and not p.required
        }
        params.update(self.entry.dump(implicit))  # the defaults are trusted: no validation
        return self.spec.model_copy(update={"params": params}).model_dump(mode="json")

def resolve_loss(
    loss: LossLike,
    *,
    context: Mapping[str, Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    fallbacks: Mapping[str, Callable[[], Any]] | None = None,
    argument: str = "loss_fn",
) -> ResolvedLoss:
    """Build (or adopt) a loss for a model.

    Args:
        loss: A registry name or alias, a ``LossSpec`` (or its dict form), or an ``nn.Module``.
        context: The model's values (``num_classes``, ``ignore_index``, ...). Each reaches the
            loss only if its constructor has a parameter of that name; ``None`` values never do.
        kwargs: The user's explicit loss arguments; they win over context and spec params.
        fallbacks: Neutral values for parameters a loss *requires* that neither the context nor
            ``kwargs`` supply (e.g. uniform class weights); using one emits a ``UserWarning``.
        argument: The model argument's name, for error messages.

    Raises:
        UnknownLossError: an unknown name (with suggestions).
        LossConfigError: unknown, mistyped, out-of-range or missing loss arguments.
        TypeError: ``loss`` is of an unsupported type, or ``kwargs`` were given with a module.

    Example:
        >>> resolved = resolve_loss("dice", context={"num_classes": 3, "lr": 0.1})
        >>> resolved.spec.name, resolved.spec.params
        ('dice', {'num_classes': 3})
    """
    if isinstance(loss, nn.Module):
        if kwargs:
            raise TypeError(
                f"{argument} is a loss instance, so its arguments are already set; "
                f"loss kwargs {sorted(kwargs)} cannot be applied. Pass a registry name instead."
            )
        entry = get_loss_registry().entry_for_class(type(loss))
        return ResolvedLoss(loss, entry, None if entry is None else LossSpec.of(loss, entry=entry))
    if isinstance(loss, str) and loss.startswith(_UNREGISTERED):
        raise ValueError(
            f"This model was saved with an unregistered loss instance "
            f"({loss.removeprefix(_UNREGISTERED)}) that cannot be stored as plain data. Pass it "
            f"again when loading, e.g. Model.load_from_checkpoint(path, {argument}=YourLoss(...)), "
            "or register its class with register_custom_loss so checkpoints can rebuild it."
        )
    if isinstance(loss, str):
        name, params, class_path = loss, {}, None
    elif isinstance(loss, LossSpec):
        name, params, class_path = loss.name, dict(loss.params), loss.class_path
    elif isinstance(loss, Mapping) and isinstance(loss.get("name"), str):
        name, params = loss["name"], dict(loss.get("params") or {})
        class_path = loss.get("class_path")
    else:
        raise TypeError(
            f"{argument} must be a registry name, a LossSpec, a dict with 'name' and 'params', "
            f"or an nn.Module instance; got {type(loss).__name__}."
        )
    entry = find_entry(name, class_path)  # the one registry lookup
    accepted = {p.name: p for p in entry.parameters}
    merged = {k: v for k, v in (context or {}).items() if k in accepted and v is not None}
    merged.update(params)
    merged.update(kwargs or {})
    for key, make in (fallbacks or {}).items():
        parameter = accepted.get(key)
        if parameter is not None and parameter.required and key not in merged:
            merged[key] = make()
            warnings.warn(
                f"Loss {entry.name!r} requires {key!r} and none was given; using a neutral "
                f"default ({merged[key]!r}). Pass {key}=... to the model or in its loss kwargs.",
                UserWarning,
                stacklevel=3,
            )
    module = entry.build(**merged)  # the one validation; LossConfigError if bad
    return ResolvedLoss(module, entry, LossSpec.of(module, entry=entry))

"""Read a directly constructed loss back into the constructor arguments that rebuild it.

The registry records the arguments of every loss it builds. A loss built directly
(``FocalLoss(alpha=0.3)``, ``nn.L1Loss()``) has no record, so its arguments are read from the
attributes named like its parameters, and only trusted if a loss rebuilt from them has the
same state (attributes, parameters, buffers, sub-modules). Otherwise there is no answer, and
the model stores the honest ``unregistered:`` marker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from autotimm.losses._parameters import ParameterInfo

__all__ = ["arguments_from_attributes", "same_state"]


def arguments_from_attributes(
    loss: nn.Module,
    parameters: Iterable[ParameterInfo],
    build: Callable[[Mapping[str, Any]], nn.Module],
) -> dict[str, Any] | None:
    """Arguments that rebuild ``loss`` (those that differ from the defaults), or ``None``.

    A parameter without a same-named attribute is left at its default, and so is one held as
    a module (e.g. a criterion built from a name): the rebuilt loss shows whether that was right.
    """
    arguments: dict[str, Any] = {}
    for p in parameters:
        try:
            value = getattr(loss, p.name)
        except AttributeError:
            if p.required:
                return None
            continue
        if isinstance(value, nn.Module) or (not p.required and _same_value(value, p.default)):
            continue
        arguments[p.name] = value
    try:
        rebuilt = build(arguments)
    except Exception:  # the attributes are not what the constructor takes (e.g. transformed)
        return None
    return arguments if same_state(rebuilt, loss) else None


def same_state(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules are of one class with equal attributes, tensors and sub-modules."""
    if type(a) is not type(b):
        return False
    tensors_a = {**dict(a.named_parameters(recurse=False)), **dict(a.named_buffers(recurse=False))}
    tensors_b = {**dict(b.named_parameters(recurse=False)), **dict(b.named_buffers(recurse=False))}
    children_a, children_b = dict(a.named_children()), dict(b.named_children())
    return (
        _same_mapping(_public(a), _public(b))
        and _same_mapping(tensors_a, tensors_b)
        and children_a.keys() == children_b.keys()
        and all(same_state(children_a[k], children_b[k]) for k in children_a)
    )


def _public(module: nn.Module) -> dict[str, Any]:
    return {k: v for k, v in vars(module).items() if not k.startswith("_") and k != "training"}


def _same_mapping(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and bool(torch.equal(a.detach().cpu().double(), b.detach().cpu().double()))
        )
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # e.g. containers of tensors: not comparable, so not known to be equal
        return False

"""``LossSpec``: a loss as plain data (name + params), for configs and checkpoints."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, JsonValue, model_validator
from torch import nn

from autotimm.losses.registry import get_loss_registry

__all__ = ["LossSpec", "to_plain_params"]


class LossSpec(BaseModel):
    """A registered loss and its constructor arguments, as plain JSON-compatible data.

    Validation resolves aliases to the canonical name and checks ``params`` against the
    loss's schema, so a spec that exists is a loss that builds. Tensors are stored as lists.

    Example:
        >>> spec = LossSpec(name="ce", params={"label_smoothing": 0.1})
        >>> spec.model_dump(mode="json")
        {'name': 'cross_entropy', 'params': {'label_smoothing': 0.1}}
        >>> LossSpec.model_validate(spec.model_dump(mode="json")) == spec
        True
        >>> type(spec.build()).__name__
        'CrossEntropyLoss'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, JsonValue] = {}

    @model_validator(mode="before")
    @classmethod
    def _normalize(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            return data  # let pydantic report the shape error
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise ValueError(
                f"params must be a mapping of argument names to values; got {params!r}"
            )
        entry = get_loss_registry().get_entry(data["name"])
        plain = to_plain_params(params)
        validated = entry.validate_json(plain)
        dumped = validated.model_dump(mode="json", include=set(plain))
        return {**data, "name": entry.name, "params": {k: dumped.get(k, plain[k]) for k in plain}}

    def build(self) -> nn.Module:
        """Instantiate the loss (validated again, so a spec edited by hand still fails early)."""
        entry = get_loss_registry().get_entry(self.name)
        validated = entry.validate_json(self.params)
        return entry.loss_class(**{key: getattr(validated, key) for key in self.params})

    def __hash__(self) -> int:
        return hash((self.name, json.dumps(self.params, sort_keys=True)))


def to_plain_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Loss arguments as JSON-compatible data (tensors to lists, registered modules to specs).

    Raises:
        ValueError: a value that plain data cannot represent, naming the argument.

    Example:
        >>> to_plain_params({"weight": torch.tensor([1.0, 2.0]), "smooth": 1.0})
        {'weight': [1.0, 2.0], 'smooth': 1.0}
    """
    return {str(key): _to_plain(str(key), value) for key, value in params.items()}


def _to_plain(key: str, value: Any) -> Any:
    """Tensors to lists, tuples to lists, nested specs to dicts; refuse what JSON cannot hold."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, LossSpec):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _to_plain(key, v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(key, v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"params[{key!r}] = {value!r} cannot be stored as JSON")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, nn.Module):
        spec = get_loss_registry().spec_of(value)
        if spec is not None:
            return spec.model_dump(mode="json")
    raise ValueError(
        f"params[{key!r}] holds a {type(value).__name__}, which a LossSpec cannot store as plain "
        "data; pass a registry name, a LossSpec or plain values instead"
    )

"""``LossSpec``: a loss as plain data (name, params and class path), for configs and checkpoints."""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, model_validator
from torch import nn
from typing_extensions import Self

from autotimm.losses._entry import LossEntry
from autotimm.losses._stack import user_stacklevel
from autotimm.losses.errors import LossConfigError, UnknownLossError
from autotimm.losses.registry import get_loss_registry

__all__ = ["LossSpec", "find_entry"]


class LossSpec(BaseModel):
    """A registered loss and its constructor arguments, as plain JSON-compatible data.

    Validation resolves aliases to the canonical name, checks ``params`` against the loss's
    schema (raising :class:`~autotimm.losses.LossConfigError` or
    :class:`~autotimm.losses.UnknownLossError`, as ``get_loss`` does) and records
    ``class_path``, so a spec that exists is a loss that builds. Tensors are stored as lists.

    Example:
        >>> spec = LossSpec(name="ce", params={"label_smoothing": 0.1})
        >>> spec.model_dump(mode="json")["params"]
        {'label_smoothing': 0.1}
        >>> spec.class_path
        'autotimm.losses.classification.CrossEntropyLoss'
        >>> LossSpec.model_validate(spec.model_dump(mode="json")) == spec
        True
        >>> type(spec.build()).__name__
        'CrossEntropyLoss'
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    params: dict[str, JsonValue] = {}
    class_path: str | None = None
    """Where the loss class is defined (``module.QualName``). Filled in from the registry; when a
    spec is loaded in a process that has not registered its loss, the error names the module."""

    def __init__(
        self,
        /,
        name: str,
        params: Mapping[str, Any] | None = None,
        class_path: str | None = None,
        **unknown: Any,
    ) -> None:
        with _registry_errors():
            super().__init__(name=name, params=params or {}, class_path=class_path, **unknown)

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        """Validate a dict (or a bare name) as a spec; registry errors are raised as such."""
        with _registry_errors():
            return super().model_validate(obj, *args, **kwargs)

    @classmethod
    def model_validate_json(
        cls, json_data: str | bytes | bytearray, *args: Any, **kwargs: Any
    ) -> Self:
        """Validate a JSON document as a spec; registry errors are raised as such."""
        with _registry_errors():
            return super().model_validate_json(json_data, *args, **kwargs)

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
        entry = find_entry(data["name"], data.get("class_path"))
        plain = entry.dump(entry.validate(params))
        return {**data, "name": entry.name, "params": plain, "class_path": entry.class_path}

    @classmethod
    def of(cls, loss: nn.Module, *, entry: LossEntry | None = None) -> LossSpec | None:
        """The spec that rebuilds ``loss``, or ``None`` if its class is not registered (or its
        arguments cannot be read back or stored as plain data).

        Works for losses built by the registry (their validated arguments are recorded) and for
        registered classes constructed directly (read from the attributes named like the
        parameters, and trusted only if a rebuilt loss has the same state).

        Example:
            >>> from autotimm.losses import FocalLoss
            >>> LossSpec.of(FocalLoss(alpha=0.3, gamma=2.5)).params
            {'alpha': 0.3, 'gamma': 2.5}
        """
        entry = entry or get_loss_registry().entry_for_class(type(loss))
        arguments = None if entry is None else entry.arguments_of(loss)
        if entry is None or arguments is None:
            return None
        try:
            params = entry.dump(arguments)
        except LossConfigError:  # an argument that is not plain data (e.g. a module instance)
            return None
        return cls.model_construct(name=entry.name, params=params, class_path=entry.class_path)

    def build(self) -> nn.Module:
        """Instantiate the loss (validated again, so a spec edited by hand still fails early)."""
        return find_entry(self.name, self.class_path).build(**self.params)

    def __hash__(self) -> int:
        return hash((self.name, json.dumps(self.params, sort_keys=True), self.class_path))


def find_entry(name: str, class_path: str | None = None) -> LossEntry:
    """The registry entry a stored spec names; ``class_path`` makes a miss say what to import.

    Raises:
        UnknownLossError: ``name`` is not registered; with ``class_path`` the message names the
            module that defines the loss (its import registers it).

    Example:
        >>> find_entry("my_loss", "my_project.losses.MyLoss")
        Traceback (most recent call last):
        ...
        autotimm.losses.errors.UnknownLossError: Unknown loss 'my_loss'. ... It was saved from the class my_project.losses.MyLoss: import my_project.losses (which registers it) before loading.
    """  # noqa: E501
    try:
        entry = get_loss_registry().get_entry(name)
    except UnknownLossError as error:
        if not class_path:
            raise
        module = class_path.rpartition(".")[0]
        raise UnknownLossError(
            f"{error} It was saved from the class {class_path}: import {module} (which "
            "registers it) before loading."
        ) from None
    if class_path and class_path != entry.class_path:
        warnings.warn(
            f"The loss {name!r} was saved from {class_path}, but {entry.name!r} is now "
            f"{entry.class_path}; building that. Import the module that registers the saved "
            "class to use it instead.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return entry


@contextlib.contextmanager
def _registry_errors() -> Iterator[None]:
    """Re-raise the registry's own error from inside pydantic's ``ValidationError``, so that
    ``LossSpec(...)`` fails the way ``get_loss`` does."""
    try:
        yield
    except ValidationError as error:
        for item in error.errors(include_url=False):
            cause = (item.get("ctx") or {}).get("error")
            if isinstance(cause, (LossConfigError, UnknownLossError)):
                raise cause from None
        raise

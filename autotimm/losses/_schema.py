"""Turn a loss constructor's signature into a strict pydantic model (the loss's *schema*).

The registry builds one lazily per loss. Validation is pydantic's strict Python mode, with
``NaN``/``inf`` refused, plus one allowance: a value may also be given in its JSON form (an
enum's value, a list for a tuple, a dict for a dataclass), as configs and checkpoints hold it.
So Python values and plain data take the same single validation.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import json
import typing
import warnings
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Union

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WithJsonSchema,
    WrapValidator,
    create_model,
)
from pydantic_core import PydanticSerializationError

from autotimm.losses._parameters import Signature, _is_union
from autotimm.losses._types import TensorParameter

__all__ = ["ParamSchema", "build_schema", "to_pydantic_type"]


@dataclasses.dataclass(frozen=True)
class ParamSchema:
    """A loss's parameter model, and the two things the registry does with it."""

    model: type[BaseModel]
    """``extra="forbid"`` (unless the constructor takes ``**kwargs``), strict, no NaN/inf."""
    fields: Mapping[str, str]
    """Parameter name to model field name, where they differ: a parameter whose name pydantic
    reserves (``model_config``, ``_private``, ``copy``) is a field under an alias."""

    def validate(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The validated value of each given argument, by parameter name.

        Raises:
            pydantic.ValidationError: every problem at once.
        """
        validated = self.model.model_validate(arguments)
        values, extra = validated.__dict__, validated.__pydantic_extra__
        if not (self.fields or extra):  # the common case, kept fast: get_loss runs it
            return {name: values[name] for name in arguments}
        fields, extra = self.fields, extra or {}
        found = {name: fields.get(name, name) for name in arguments}
        return {name: values[f] if f in values else extra[name] for name, f in found.items()}

    def dump(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Validated ``values`` as plain JSON data: tensors as lists, enums as their values.

        Raises:
            ValueError: a value that JSON cannot hold (a module instance, a callable), naming it.
        """
        plain: dict[str, Any] = {}
        for name, value in values.items():  # one at a time, to name the argument that fails
            field = self.fields.get(name, name)
            try:
                model = self.model.model_construct(**{field: value})
                plain[name] = model.model_dump(mode="json", include={field})[field]
            except (PydanticSerializationError, KeyError) as error:
                raise ValueError(
                    f"{name}={_short(value)} cannot be stored as plain data ({error}); pass a "
                    "registry name, a LossSpec or plain values instead"
                ) from None
        return plain


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def build_schema(loss_class: type, signature: Signature) -> ParamSchema:
    """The strict pydantic model of ``loss_class``'s constructor ``signature``.

    >>> import torch.nn as nn
    >>> from autotimm.losses._parameters import read_signature
    >>> class Scaled(nn.Module):
    ...     def __init__(self, scale: float = 1.0) -> None:
    ...         super().__init__()
    >>> build_schema(Scaled, read_signature(Scaled)).validate({"scale": 2})
    {'scale': 2.0}
    """
    fields: dict[str, Any] = {}
    renamed: dict[str, str] = {}
    for p in signature.parameters:
        field = p.name
        if field.startswith("_") or hasattr(BaseModel, field):
            field = p.name.strip("_") + "_"
            while (
                field in fields
                or hasattr(BaseModel, field)
                or field in (q.name for q in signature.parameters)
            ):
                field += "_"
            renamed[p.name] = field
        default = ... if p.required else p.default
        fields[field] = (
            to_pydantic_type(p.annotation),
            Field(
                default,
                description=p.description,
                alias=p.name if field != p.name else None,
            ),
        )
    config = ConfigDict(
        extra="allow" if signature.takes_extra else "forbid",
        strict=True,
        allow_inf_nan=False,  # a NaN or inf hyper-parameter is never what anybody meant
        protected_namespaces=(),
        title=f"{loss_class.__name__} parameters",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a parameter that shadows a BaseModel attribute
        model: type[BaseModel] = create_model(
            f"{loss_class.__name__}Params",
            __config__=config,
            __doc__=f"Constructor parameters of {loss_class.__module__}.{loss_class.__qualname__}.",
            __module__=loss_class.__module__,
            **fields,
        )
    return ParamSchema(model, renamed)


# --------------------------------------------------------------------------- annotations
_PLAIN_LEAVES: frozenset[Any] = frozenset({int, float, str, bool, bytes, type(None), Any})
_JSON_ARRAYS = (tuple, set, frozenset)


def to_pydantic_type(tp: Any) -> Any:
    """Map a signature annotation to one pydantic can validate *and* describe in JSON schema."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        # a parameter type that defines its own validation (TensorParameter, the terms of
        # weighted_sum) is used as it is
        if any(hasattr(type(m), "__get_pydantic_core_schema__") for m in meta):
            return tp
        return Annotated[(to_pydantic_type(inner), *meta)]
    if origin is Literal:
        return tp
    if _is_union(origin):
        return Union[tuple(to_pydantic_type(a) for a in typing.get_args(tp))]  # noqa: UP007
    if origin is collections.abc.Callable or tp is Callable or tp is typing.Callable:
        return Annotated[tp, WithJsonSchema({"description": "a callable (not JSON)"})]
    if origin is not None:
        args = typing.get_args(tp)
        new_args = tuple(a if a is Ellipsis else to_pydantic_type(a) for a in args)
        mapped = tp if new_args == args else origin[new_args]
        return _json_form_too(mapped) if origin in _JSON_ARRAYS else mapped
    if tp in _PLAIN_LEAVES or isinstance(tp, typing.TypeVar):
        return Any if isinstance(tp, typing.TypeVar) else tp
    if isinstance(tp, type):
        if issubclass(tp, torch.Tensor):
            return Annotated[torch.Tensor, TensorParameter()]
        if issubclass(tp, (BaseModel, enum.Enum)) or dataclasses.is_dataclass(tp):
            return _json_form_too(tp)
        description = f"a {tp.__module__}.{tp.__qualname__} instance (not JSON)"
        instance_of: Any = InstanceOf[tp]  # type: ignore[misc]  # a class known only at run time
        return Annotated[instance_of, WithJsonSchema({"description": description})]
    return tp


def _json_form_too(tp: Any) -> Any:
    """``tp``, also accepting its JSON form, validated strictly in pydantic's JSON mode."""
    try:
        adapter: TypeAdapter[Any] = TypeAdapter(tp, config=ConfigDict(strict=True))
    except Exception:  # a model or dataclass with a config of its own
        adapter = TypeAdapter(tp)

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            if not isinstance(value, (str, int, float, list, dict)) or isinstance(value, bool):
                raise
            try:
                return adapter.validate_json(json.dumps(value))
            except (ValidationError, TypeError, ValueError):
                pass
            raise

    return Annotated[tp, WrapValidator(validate)]

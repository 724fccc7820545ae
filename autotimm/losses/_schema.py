"""Turn a loss constructor's signature into a strict pydantic model, and its errors into prose.

The registry calls :func:`build_param_model` lazily, once per loss. Everything here is about
reading Python signatures and docstrings; nothing here knows about particular losses.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import enum
import inspect
import re
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union

import annotated_types
import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticSerializationError, core_schema

__all__ = [
    "ArgumentProblem",
    "LossConfigError",
    "ParameterInfo",
    "build_param_model",
    "constructor_of",
    "describe_parameters",
    "format_annotation",
    "format_constraints",
    "parse_param_docs",
    "problems_from_validation_error",
]


# --------------------------------------------------------------------------- custom field types
def _to_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # a scalar weight
        return torch.tensor(float(value))
    if isinstance(value, (list, tuple)) and not _contains_str(value):
        try:
            return torch.as_tensor(value, dtype=torch.get_default_dtype())
        except (TypeError, ValueError, RuntimeError):
            pass
    raise ValueError("expected a tensor, a number or a (nested) list of numbers")


def _contains_str(value: Any) -> bool:
    if isinstance(value, (str, bytes)):
        return True
    if isinstance(value, (list, tuple)):
        return any(_contains_str(v) for v in value)
    return False


class _TensorField:
    """A ``torch.Tensor`` parameter: accepts tensors and number lists, dumps to lists in JSON."""

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _to_tensor,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda t: t.tolist(), when_used="json"
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: Any) -> JsonSchemaValue:
        return {
            "title": "Tensor",
            "anyOf": [
                {"type": "number"},
                {"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "array"}]}},
            ],
            "description": "a tensor, a number, or a (nested) list of numbers",
        }


@dataclasses.dataclass(frozen=True)
class _InstanceOf:
    """An arbitrary class pydantic has no schema for: checked with ``isinstance``."""

    cls: type

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def not_plain_data(value: Any) -> Any:
            raise PydanticSerializationError(
                f"a {type(value).__name__} instance cannot be stored as plain data; "
                "pass a registry name or a LossSpec instead"
            )

        return core_schema.is_instance_schema(
            self.cls,
            serialization=core_schema.plain_serializer_function_ser_schema(
                not_plain_data, when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> JsonSchemaValue:
        return {"description": f"a {_qualified(self.cls)} instance (not representable in JSON)"}


@dataclasses.dataclass(frozen=True)
class _CallableField:
    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.callable_schema()

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> JsonSchemaValue:
        return {"description": "a callable (not representable in JSON)"}


_PLAIN_LEAVES: frozenset[Any] = frozenset({int, float, str, bool, bytes, type(None), Any})


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def to_pydantic_type(tp: Any) -> Any:
    """Map a signature annotation to one pydantic can validate *and* describe in JSON schema."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        return typing.Annotated[(to_pydantic_type(inner), *meta)]
    if origin is Literal:
        return tp
    if _is_union(origin):
        return Union[tuple(to_pydantic_type(a) for a in typing.get_args(tp))]  # noqa: UP007
    if origin is collections.abc.Callable or tp is Callable or tp is typing.Callable:
        return typing.Annotated[Any, _CallableField()]
    if origin is not None:
        args = typing.get_args(tp)
        new_args = tuple(a if a is Ellipsis else to_pydantic_type(a) for a in args)
        if new_args == args:
            return tp
        return origin[new_args]
    if tp in _PLAIN_LEAVES or isinstance(tp, typing.TypeVar):
        return Any if isinstance(tp, typing.TypeVar) else tp
    if isinstance(tp, type):
        if issubclass(tp, torch.Tensor):
            return typing.Annotated[torch.Tensor, _TensorField]
        if issubclass(tp, (BaseModel, enum.Enum)) or dataclasses.is_dataclass(tp):
            return tp
        return typing.Annotated[tp, _InstanceOf(tp)]
    return tp


# --------------------------------------------------------------------------- docstrings
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):?$")
_GOOGLE_ITEM = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ITEM = re.compile(r"^(\w+)\s*(:\s*.*)?$")


def parse_param_docs(doc: str | None) -> dict[str, str]:
    """Per-parameter descriptions from a Google- or NumPy-style docstring section.

    >>> parse_param_docs('''Dice loss.
    ...
    ... Args:
    ...     smooth: Added to numerator and denominator.
    ... ''')
    {'smooth': 'Added to numerator and denominator.'}
    """
    if not doc:
        return {}
    lines = inspect.cleandoc(doc).splitlines()
    found: dict[str, str] = {}
    i = 0
    while i < len(lines):
        header = lines[i].strip()
        if not _SECTION.match(header):
            i += 1
            continue
        numpy_style = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        i += 2 if numpy_style else 1
        base_indent: int | None = None
        current: str | None = None
        while i < len(lines):
            line = lines[i]
            stripped = line.strip()
            indent = len(line) - len(line.lstrip())
            if not stripped:
                i += 1
                continue
            if base_indent is None:
                base_indent = indent
            if indent < base_indent or (numpy_style and _SECTION.match(stripped)):
                break
            if indent == base_indent:
                match = (_NUMPY_ITEM if numpy_style else _GOOGLE_ITEM).match(stripped)
                if match is None:
                    break
                current = str(match.group(1)).lstrip("*")
                first = "" if numpy_style else str(match.group(3))
                found[current] = first.strip()
            elif current is not None:
                found[current] = f"{found[current]} {stripped}".strip()
            i += 1
    return found


# --------------------------------------------------------------------------- the model
def constructor_of(loss_class: type) -> Callable[..., Any]:
    """The ``__init__`` that defines ``loss_class``'s parameters (unwrapping the registry's)."""
    init = next(vars(c)["__init__"] for c in loss_class.__mro__ if "__init__" in vars(c))
    return typing.cast(Callable[..., Any], getattr(init, "__wrapped__", init))


def _constructor_parameters(
    loss_class: type,
) -> tuple[list[inspect.Parameter], dict[str, Any], dict[str, str]]:
    """The signature's parameters, resolved type hints and docstring descriptions."""
    signature = inspect.signature(loss_class)
    init = constructor_of(loss_class)
    try:
        hints = typing.get_type_hints(init, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        hints = {}
    docs = parse_param_docs(loss_class.__doc__)
    if "__init__" in vars(loss_class):
        docs.update(parse_param_docs(init.__doc__))
    return list(signature.parameters.values()), hints, docs


def build_param_model(loss_class: type) -> type[BaseModel]:
    """A strict pydantic model of ``loss_class``'s constructor parameters.

    Types, defaults and ``Annotated`` constraints come from the signature, descriptions from
    the class (or ``__init__``) docstring. ``**kwargs`` in the signature allows extra keys.

    >>> import torch.nn as nn
    >>> class Scaled(nn.Module):
    ...     def __init__(self, scale: float = 1.0) -> None:
    ...         super().__init__()
    >>> build_param_model(Scaled).model_validate({"scale": 2}).scale
    2.0
    """
    parameters, hints, docs = _constructor_parameters(loss_class)
    extra: Literal["allow", "forbid"] = "forbid"
    fields: dict[str, Any] = {}
    for param in parameters:
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            extra = "allow"
            continue
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.POSITIONAL_ONLY):
            continue
        annotation = hints.get(param.name, param.annotation)
        if annotation is inspect.Parameter.empty or isinstance(annotation, str):
            annotation = Any
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param.name] = (
            to_pydantic_type(annotation),
            Field(default, description=docs.get(param.name)),
        )
    config = ConfigDict(
        extra=extra,
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
            __doc__=f"Constructor parameters of {_qualified(loss_class)}.",
            __module__=loss_class.__module__,
            **fields,
        )
    return model


# --------------------------------------------------------------------------- rendering
def _format_constraint(meta: Any) -> list[str]:
    if isinstance(meta, FieldInfo):
        return [c for m in meta.metadata for c in _format_constraint(m)]
    symbols = [
        (annotated_types.Gt, "gt", ">"),
        (annotated_types.Ge, "ge", ">="),
        (annotated_types.Lt, "lt", "<"),
        (annotated_types.Le, "le", "<="),
        (annotated_types.MinLen, "min_length", "len >="),
        (annotated_types.MaxLen, "max_length", "len <="),
    ]
    for kind, attr, symbol in symbols:
        if isinstance(meta, kind):
            return [f"{symbol} {getattr(meta, attr)}"]
    if isinstance(meta, annotated_types.Interval):
        return [c for part in meta for c in _format_constraint(part)]
    return []


def format_annotation(tp: Any, *, constraints: bool = True) -> str:
    """A short human rendering of an annotation: ``float >= 0 | None``, ``'mean' | 'sum'``."""
    if tp is Any or tp is inspect.Parameter.empty:
        return "Any"
    if tp is type(None) or tp is None:
        return "None"
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        shown = [c for m in meta for c in _format_constraint(m)] if constraints else []
        inner_text = format_annotation(inner, constraints=constraints)
        if len(shown) > 1:
            return f"{inner_text} ({', '.join(shown)})"
        return " ".join([inner_text, *shown])
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(origin):
        return " | ".join(
            format_annotation(a, constraints=constraints) for a in typing.get_args(tp)
        )
    if origin is not None:
        args = ", ".join(
            "..." if a is Ellipsis else format_annotation(a, constraints=constraints)
            for a in typing.get_args(tp)
        )
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    if isinstance(tp, type):
        return "Tensor" if issubclass(tp, torch.Tensor) else tp.__name__
    return str(tp).replace("typing.", "")


def format_constraints(tp: Any) -> str:
    """The bounds stated anywhere in an annotation, e.g. ``>= 0, < 1`` (empty if none)."""
    found: list[str] = []
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        found += [c for m in meta for c in _format_constraint(m)]
        found += [c for c in [format_constraints(inner)] if c]
    elif origin is not None and origin is not Literal:
        found += [c for a in typing.get_args(tp) for c in [format_constraints(a)] if c]
    return ", ".join(dict.fromkeys(found))


@dataclasses.dataclass(frozen=True)
class ParameterInfo:
    """One constructor parameter as shown by ``describe``, the CLI and the docs."""

    name: str
    type: str
    """The annotation with its bounds, e.g. ``float >= 0 | None``."""
    required: bool
    default: Any
    description: str | None
    base_type: str = ""
    """The annotation without bounds, e.g. ``float | None``."""
    constraint: str = ""
    """The bounds alone, e.g. ``>= 0``."""


def describe_parameters(loss_class: type) -> tuple[ParameterInfo, ...]:
    """The keyword parameters of ``loss_class``'s constructor, in signature order."""
    parameters, hints, docs = _constructor_parameters(loss_class)
    infos = []
    for param in parameters:
        if param.kind in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
            inspect.Parameter.POSITIONAL_ONLY,
        ):
            continue
        required = param.default is inspect.Parameter.empty
        annotation = hints.get(param.name, param.annotation)
        infos.append(
            ParameterInfo(
                name=param.name,
                type=format_annotation(annotation),
                required=required,
                default=None if required else param.default,
                description=docs.get(param.name),
                base_type=format_annotation(annotation, constraints=False),
                constraint=format_constraints(annotation),
            )
        )
    return tuple(infos)


def signature_summary(parameters: Iterable[ParameterInfo]) -> str:
    parts = []
    for p in parameters:
        parts.append(f"{p.name}: {p.type}" + ("" if p.required else f" = {p.default!r}"))
    return ", ".join(parts) or "(no arguments)"


# --------------------------------------------------------------------------- errors
@dataclasses.dataclass(frozen=True)
class ArgumentProblem:
    """One thing wrong with the arguments given for a loss."""

    argument: str
    message: str
    expected: str | None = None
    given: Any = None
    suggestion: str | None = None

    def __str__(self) -> str:
        text = f"{self.argument}: {self.message}"
        if self.suggestion:
            text += f"; did you mean {self.suggestion!r}?"
        return text


class LossConfigError(ValueError):
    """Arguments for a registered loss failed validation; lists every problem at once.

    Attributes:
        loss_name: The registry name of the loss.
        problems: One :class:`ArgumentProblem` per bad, unknown or missing argument.
    """

    def __init__(
        self,
        loss_name: str,
        problems: Sequence[ArgumentProblem],
        *,
        where: str = "",
        accepted: str = "",
    ) -> None:
        self.loss_name = loss_name
        self.problems = tuple(problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Invalid arguments for loss {loss_name!r}{where} ({count} {noun}):"]
        lines += [f"  - {p}" for p in self.problems]
        if accepted:
            lines.append(f"Accepted arguments: {accepted}")
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[Any, ...]:  # keep the error picklable (DDP, multiprocessing)
        return (_rebuild_config_error, (self.loss_name, self.problems, str(self)))


def _rebuild_config_error(
    loss_name: str, problems: tuple[ArgumentProblem, ...], message: str
) -> LossConfigError:
    error = LossConfigError.__new__(LossConfigError)
    ValueError.__init__(error, message)
    error.loss_name = loss_name
    error.problems = problems
    return error


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


_CONSTRAINT_ERRORS = frozenset(
    {
        "greater_than",
        "greater_than_equal",
        "less_than",
        "less_than_equal",
        "too_short",
        "too_long",
        "literal_error",
        "multiple_of",
        "finite_number",
    }
)


def problems_from_validation_error(
    error: ValidationError,
    *,
    parameters: Mapping[str, ParameterInfo],
    kwargs: Mapping[str, Any],
) -> list[ArgumentProblem]:
    """Group pydantic's per-branch errors into one problem per argument, in a stable order."""
    by_argument: dict[str, list[Any]] = {}
    for item in error.errors(include_url=False):
        loc = item.get("loc") or ("<arguments>",)
        by_argument.setdefault(str(loc[0]), []).append(item)
    problems = []
    for argument, items in by_argument.items():
        kinds = {item["type"] for item in items}
        info = parameters.get(argument)
        if "extra_forbidden" in kinds:
            close = difflib.get_close_matches(argument, list(parameters), n=1, cutoff=0.6)
            problems.append(
                ArgumentProblem(
                    argument,
                    "unknown argument",
                    given=kwargs.get(argument),
                    suggestion=close[0] if close else None,
                )
            )
        elif "missing" in kinds:
            expected = info.type if info else None
            message = "missing required argument" + (f" (expected {expected})" if expected else "")
            problems.append(ArgumentProblem(argument, message, expected=expected))
        else:
            expected = info.type if info else "a valid value"
            given = kwargs.get(argument)
            detail = next(
                (item["msg"] for item in items if item["type"] in _CONSTRAINT_ERRORS), None
            )
            if detail is None:  # a validator's own message, e.g. from a Tensor parameter
                detail = next(
                    (str(i["ctx"]["error"]) for i in items if i["type"] == "value_error"), None
                )
            message = f"expected {expected}, got {_given(given)}"
            if detail:
                message += f" ({detail[0].lower()}{detail[1:]})"
            problems.append(ArgumentProblem(argument, message, expected=expected, given=given))
    return problems

"""Read a loss constructor's parameters (resolved types, defaults, docs) and render them as text.

:func:`read_signature` is what the registry runs at registration: a signature it could not
validate (a positional-only parameter, an annotation that does not resolve at run time) is
refused there, naming the parameter, instead of silently losing validation later.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any, Literal, Union

import annotated_types
import torch
from pydantic.fields import FieldInfo

from autotimm.losses._types import TensorParameter
from autotimm.losses.errors import LossRegistrationError

__all__ = [
    "ParameterInfo",
    "Signature",
    "constructor_of",
    "format_annotation",
    "format_constraints",
    "parse_param_docs",
    "plain_text",
    "read_signature",
    "signature_summary",
]


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
    annotation: Any = Any
    """The resolved annotation itself (what the registry validates against)."""


@dataclasses.dataclass(frozen=True)
class Signature:
    """What a loss constructor takes by keyword."""

    parameters: tuple[ParameterInfo, ...]
    takes_extra: bool
    """Whether it has ``**kwargs`` (then unknown arguments are passed through)."""


def constructor_of(loss_class: type) -> Callable[..., Any]:
    """The ``__init__`` that defines ``loss_class``'s parameters (its own or inherited)."""
    init = next(vars(c)["__init__"] for c in loss_class.__mro__ if "__init__" in vars(c))
    return typing.cast(Callable[..., Any], init)


def read_signature(loss_class: type) -> Signature:
    """The keyword parameters of ``loss_class``'s constructor, in signature order.

    Raises:
        LossRegistrationError: a positional-only parameter (the registry passes arguments by
            keyword), or an annotation that cannot be resolved at run time (e.g. a name imported
            only under ``TYPE_CHECKING``).

    Example:
        >>> import torch.nn as nn
        >>> [f"{p.name}: {p.type}" for p in read_signature(nn.SmoothL1Loss).parameters]
        ['size_average: Any', 'reduce: Any', 'reduction: str', 'beta: float']
    """
    init = constructor_of(loss_class)
    owner = next(c for c in loss_class.__mro__ if vars(c).get("__init__") is init)
    docs = {**parse_param_docs(owner.__doc__), **parse_param_docs(init.__doc__)}
    if owner is not loss_class:  # a subclass documents the inherited parameters in its own way
        docs.update(parse_param_docs(loss_class.__doc__))
    infos = []
    takes_extra = False
    for param in inspect.signature(loss_class).parameters.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            takes_extra = True
            continue
        if param.kind is inspect.Parameter.VAR_POSITIONAL:
            continue  # the registry never passes positional arguments
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise LossRegistrationError(
                f"Cannot register {_qualified(loss_class)}: its constructor parameter "
                f"{param.name!r} is positional-only, and the registry passes every argument by "
                "keyword. Make it a regular or keyword-only parameter."
            )
        annotation = _resolve(loss_class, init, param)
        required = param.default is inspect.Parameter.empty
        infos.append(
            ParameterInfo(
                name=param.name,
                type=format_annotation(annotation),
                required=required,
                default=None if required else param.default,
                description=docs.get(param.name),
                base_type=format_annotation(annotation, constraints=False),
                constraint=format_constraints(annotation),
                annotation=annotation,
            )
        )
    return Signature(tuple(infos), takes_extra)


def _resolve(loss_class: type, init: Callable[..., Any], param: inspect.Parameter) -> Any:
    """One parameter's annotation, evaluated on its own so one bad name cannot hide the rest."""
    if param.annotation is inspect.Parameter.empty:
        return Any
    holder = types.SimpleNamespace(__annotations__={param.name: param.annotation})
    try:
        hints = typing.get_type_hints(
            holder, globalns=getattr(init, "__globals__", {}), include_extras=True
        )
    except Exception as error:
        raise LossRegistrationError(
            f"Cannot register {_qualified(loss_class)}: the annotation of its constructor "
            f"parameter {param.name!r} ({param.annotation!r}) does not resolve at run time "
            f"({type(error).__name__}: {error}). The registry validates arguments against it: "
            "import the names it uses at module level (not only under TYPE_CHECKING)."
        ) from None
    return hints[param.name]


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


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
        if not _SECTION.match(lines[i].strip()):
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
                found[current] = "" if numpy_style else str(match.group(3)).strip()
            elif current is not None:
                found[current] = f"{found[current]} {stripped}".strip()
            i += 1
    return found


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")


def plain_text(text: str, width: int | None = None) -> str:
    """Docstring reStructuredText as plain text: roles and inline literals lose their markup.

    With ``width``, the text is also wrapped to lines of at most ``width`` characters.

    Example:
        >>> plain_text('``"mean"`` as :class:`torch.nn.CrossEntropyLoss`; see :func:`~a.b.f`')
        '"mean" as torch.nn.CrossEntropyLoss; see f'
    """
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    text = _LITERAL.sub(r"\1", text)
    return text if width is None else "\n".join(textwrap.wrap(text, width) or [""])


# --------------------------------------------------------------------------- rendering
def _is_union(origin: Any) -> bool:
    return origin is Union or origin is types.UnionType


def _format_constraint(meta: Any) -> list[str]:
    if isinstance(meta, FieldInfo):
        return [c for m in meta.metadata for c in _format_constraint(m)]
    if isinstance(meta, TensorParameter):
        return [] if meta.minimum is None else [f">= {meta.minimum:g}"]
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
        # a parameter type may say how it reads (``type_text``), e.g. the terms of weighted_sum
        named = [m.type_text for m in meta if isinstance(getattr(m, "type_text", None), str)]
        inner_text = named[0] if named else format_annotation(inner, constraints=constraints)
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


def signature_summary(parameters: Iterable[ParameterInfo]) -> str:
    """``num_classes: int, smooth: float >= 0 = 1.0``: the accepted arguments in one line."""
    parts = []
    for p in parameters:
        parts.append(f"{p.name}: {p.type}" + ("" if p.required else f" = {p.default!r}"))
    return ", ".join(parts) or "(no arguments)"

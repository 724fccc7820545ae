"""How a config names a loss: the one type behind every ``loss_fn``-like model argument.

In a config a loss is a registry name (``loss_fn: dice``), a spec
(``loss_fn: {name: dice, params: {smooth: 0.5}}``) or a list of terms, the weighted sum of them
(``loss_fn: [cross_entropy, {name: dice, weight: 3.0}]``, the ``terms`` of
:class:`~autotimm.losses.WeightedSumLoss`). :class:`LossArgument` is registered with
jsonargparse, and the config parser gives it to every model parameter annotated with
:data:`autotimm.losses.resolve.LossLike`, so that a loss value is plain data from the YAML file to
the saved config. At parse time only its *shape* is checked here; whether the name exists and the
params are valid for the model is checked for the whole config at once by
:mod:`autotimm.config.check`, which resolves every loss with the model's context through
:func:`autotimm.losses.resolve.resolve_loss`.

Everything that knows the shape of a loss value lives in this module: :func:`normalize` (parse),
:func:`loss_items` (what the checker resolves, with the place of each) and :func:`json_schema`
(what editors complete). The shape of one term of a list is the loss package's own
(:func:`~autotimm.losses.terms.read_term`,
:func:`~autotimm.losses.terms.term_json_schema`).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Union

__all__ = [
    "LossArgument",
    "LossValue",
    "is_loss_annotation",
    "json_schema",
    "loss_annotation",
    "loss_items",
    "normalize",
    "register_with_jsonargparse",
]

LossValue = Union[str, dict[str, Any], list[Union[str, dict[str, Any]]]]  # noqa: UP007 - runtime alias
"""A loss as plain data: a registry name, ``{"name": ..., "params": {...}}``, or a list of
terms (names or ``{"name": ..., "params": {...}, "weight": ..., "label": ...}``)."""

_SPEC_KEYS = ("name", "params", "class_path")
"""A spec's keys; ``class_path`` (``module.QualName`` of the loss class) is what a checkpoint's
stored spec records so that a missing import can be named; configs rarely write it."""


class LossArgument:
    """The jsonargparse type of a loss argument (values are plain :data:`LossValue` data).

    Never instantiated: the registered deserializer turns a YAML or command-line value into a
    :data:`LossValue`, and the serializer writes it back unchanged.

    Example:
        >>> normalize("dice"), normalize({"name": "dice", "params": {"smooth": 0.5}})
        ('dice', {'name': 'dice', 'params': {'smooth': 0.5}})
    """


def normalize(value: Any) -> LossValue:
    """The plain form of a loss value, or ``ValueError`` saying what shape is expected.

    A string that starts with ``{`` or ``[`` is read as YAML
    (``--model.init_args.loss_fn '{name: dice}'``, ``--model.init_args.loss_fn '[ce, dice]'``).

    Example:
        >>> normalize("{name: focal, params: {gamma: 3}}")
        {'name': 'focal', 'params': {'gamma': 3}}
        >>> normalize("[ce, {name: dice, weight: 3}]")
        ['ce', {'name': 'dice', 'params': {}, 'weight': 3.0}]
    """
    if isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        import yaml

        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ValueError(f"cannot read {value!r} as a loss spec: {error}") from None
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected a loss name, got an empty string")
        return value
    if isinstance(value, Mapping):
        return _normalize_spec(value)
    if isinstance(value, (list, tuple)):
        return _normalize_terms(value)
    raise ValueError(
        f"expected a loss name or a spec {{name: ..., params: {{...}}}} (or a list of them, "
        f"the terms of a weighted sum), got {value!r} "
        f"({type(value).__name__})"
    )


def _normalize_spec(value: Mapping[str, Any]) -> dict[str, Any]:
    keys = [str(key) for key in value]
    if "init_args" in keys or ("class_path" in keys and "name" not in keys):
        raise ValueError(
            "a loss is given by its registry name, not by class_path/init_args: write "
            "{name: <registry name>, params: {...}} (`autotimm losses list` shows the names)"
        )
    unknown = [key for key in keys if key not in _SPEC_KEYS]
    if unknown:
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)
            for key in unknown
            for close in [difflib.get_close_matches(key, _SPEC_KEYS, n=1, cutoff=0.5)]
        ]
        raise ValueError(
            "a loss spec has the keys 'name', 'params' and (optionally) 'class_path'; unknown "
            f"key {', '.join(hints)}"
        )
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a loss spec needs 'name': a registry name; got {name!r}")
    params = value.get("params")
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ValueError(
            f"'params' of a loss spec is a mapping of argument names to values; got {params!r}"
        )
    spec: dict[str, Any] = {"name": name, "params": {str(k): v for k, v in params.items()}}
    class_path = value.get("class_path")
    if class_path is not None:
        if not isinstance(class_path, str):
            raise ValueError(
                f"'class_path' of a loss spec is 'module.QualName'; got {class_path!r}"
            )
        spec["class_path"] = class_path
    return spec


def _normalize_terms(value: list[Any] | tuple[Any, ...]) -> list[str | dict[str, Any]]:
    """A list of terms, each checked for its shape (keys, name, params, weight, label)."""
    if not value:
        raise ValueError("a list of losses needs at least one term")
    terms, problems = read_terms(value)
    if problems:
        raise ValueError(
            "a list of losses holds terms: loss names or {name, params, weight, label}; "
            + "; ".join(f"[{index}]{message}" for index, message in problems)
        )
    return [term for term in terms if term is not None]


def read_terms(
    value: list[Any] | tuple[Any, ...],
) -> tuple[list[str | dict[str, Any] | None], list[tuple[int, str]]]:
    """Each term of a list of losses normalized, and every shape problem as
    ``(index, message)``, the message starting after the term's ``[index]``.

    A term with a shape problem is still given as ``{name, params}`` when it has a name (and
    ``None`` when it has none), so that the checker also looks up its name and validates its
    params: one pass names every problem of every term.

    Example:
        >>> read_terms(["ce", {"name": "dice", "wieght": 2}, 3])[0]
        ['ce', {'name': 'dice', 'params': {}}, None]
        >>> read_terms(["ce", {"name": "dice", "wieght": 2}])[1]
        [(1, " (dice): wieght: unknown key (a term has name, params, weight, label, class_path); did you mean 'weight'?")]
    """  # noqa: E501
    from autotimm.losses.terms import read_term

    terms: list[str | dict[str, Any] | None] = []
    problems: list[tuple[int, str]] = []
    labels: dict[str, int] = {}
    for index, item in enumerate(value):
        terms.append(None)
        if isinstance(item, Mapping) and ("init_args" in item or "name" not in item):
            try:
                _normalize_spec({k: v for k, v in item.items() if k not in ("weight", "label")})
            except ValueError as error:
                problems.append((index, f": {error}"))
                continue
        fields, found = read_term(item, "")
        messages = [str(problem) for problem in found]
        name, label = (fields["name"], fields["label"]) if fields is not None else (None, None)
        if not messages and label is not None:
            if label in labels:
                messages.append(
                    f" ({name}): label: {label!r} is the label of [{labels[label]}] "
                    "too; labels name the logged terms, so they must differ"
                )
            else:
                labels[label] = index
        problems += [(index, message) for message in messages]
        if fields is None or name is None:
            continue
        if messages:  # still a loss to look up and validate, without its weight and label
            terms[index] = {"name": name, "params": fields["params"]}
            continue
        if isinstance(item, str):
            terms[index] = item
            continue
        term: dict[str, Any] = {"name": fields["name"], "params": fields["params"]}
        term.update({key: item[key] for key in ("weight", "label", "class_path") if key in item})
        if "weight" in term:
            term["weight"] = fields["weight"]
        terms[index] = term
    return terms, problems


def loss_items(value: LossValue) -> Iterator[tuple[str, LossValue]]:
    """Each loss in a (normalized) loss value with the suffix of its place in the config.

    One loss yields itself (suffix ``""``); a list of terms yields each term's loss
    (``{name, params}``, without its weight and label) at ``[0]``, ``[1]``, ...: the model
    resolves each term exactly as it would resolve that loss alone.

    Example:
        >>> list(loss_items("dice"))
        [('', 'dice')]
        >>> list(loss_items(["ce", {"name": "dice", "params": {}, "weight": 3.0}]))
        [('[0]', 'ce'), ('[1]', {'name': 'dice', 'params': {}})]
    """
    if not isinstance(value, list):
        yield "", value
        return
    for index, term in enumerate(value):
        if term is None:  # a term without a loss name (see read_terms): nothing to resolve
            continue
        if isinstance(term, str):
            yield f"[{index}]", term
        else:
            yield f"[{index}]", {k: v for k, v in term.items() if k in _SPEC_KEYS}


_NULL = {"type": "null"}


def json_schema(
    loss_names: list[str], spec_schemas: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """The JSON Schema of a loss value: a name, a spec whose ``params`` follow that loss, or a
    list of terms (names, or specs with a ``weight`` and a ``label``).

    ``loss_names`` are every accepted name and alias; ``spec_schemas`` maps each of them to the
    schema of its ``params`` (a ``$ref`` is fine). Each loss's params are attached with
    ``if``/``then`` on ``name``, so validators report a bad parameter at its own path, in a
    spec and in every term of a list.

    Example:
        >>> schema = json_schema(["dice"], {"dice": {"type": "object"}})
        >>> schema["anyOf"][0]
        {'type': 'string', 'enum': ['dice']}
        >>> sorted(schema["anyOf"][2]["items"]["anyOf"][1]["properties"])
        ['class_path', 'label', 'name', 'params', 'weight']
    """
    from autotimm.losses.terms import term_json_schema

    name = {"type": "string", "enum": list(loss_names), "description": "registry name"}
    params_by_name = [
        {
            "if": {"properties": {"name": {"const": loss}}, "required": ["name"]},
            # `params:` left empty in YAML is null, which the models read as no params
            "then": {"properties": {"params": {"anyOf": [dict(spec_schemas[loss]), _NULL]}}},
        }
        for loss in loss_names
    ]
    spec: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": name,
            "params": {
                "type": ["object", "null"],
                "description": "the loss's constructor arguments",
            },
            "class_path": {
                "type": "string",
                "description": "module.QualName of the loss class (written in checkpoints)",
            },
        },
        "required": ["name"],
        "additionalProperties": False,
        "allOf": params_by_name,
    }
    term = term_json_schema()
    term["properties"]["name"] = name
    term["allOf"] = params_by_name
    terms = {
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [{"type": "string", "enum": list(loss_names)}, term]},
        "description": "a weighted sum: each term a loss name or {name, params, weight, label}",
    }
    return {
        "anyOf": [{"type": "string", "enum": list(loss_names)}, spec, terms],
        "description": "a registered loss: its name, {name, params}, or a list of weighted terms",
    }


# --------------------------------------------------------------------------- model signatures
def is_loss_annotation(annotation: Any) -> bool:
    """Whether a model parameter's annotation is the loss type (optionally ``| None``).

    Example:
        >>> from autotimm.losses.resolve import LossLike
        >>> [is_loss_annotation(hint) for hint in (LossLike, LossLike | None, str)]
        [True, True, False]
    """
    return loss_annotation(annotation) is not None


def loss_annotation(annotation: Any) -> Any | None:
    """``LossArgument`` (or ``LossArgument | None``) for a loss-typed annotation, else ``None``.

    A parameter is a loss argument when its annotation holds every member of
    :data:`~autotimm.losses.resolve.LossLike` (and possibly ``None``), however it was spelled.
    """
    from autotimm.losses.resolve import LossLike

    loss_members = set(typing.get_args(LossLike))
    members = set(typing.get_args(annotation)) if typing.get_origin(annotation) else {annotation}
    if not loss_members or not loss_members <= members:
        return None
    rest = members - loss_members
    if not rest:
        return LossArgument
    if rest == {type(None)}:
        return typing.Optional[LossArgument]  # noqa: UP045 - a runtime type for jsonargparse
    return None


def register_with_jsonargparse() -> None:
    """Register :class:`LossArgument` with jsonargparse (idempotent)."""
    from jsonargparse.typing import register_type

    register_type(
        LossArgument,
        serializer=_serialize,
        deserializer=normalize,
        deserializer_exceptions=(ValueError,),
        type_check=_never,
    )


def _serialize(value: Any) -> Any:
    return value


def _never(value: Any, class_type: type) -> bool:
    return False  # values are plain data: always run them through ``normalize``

"""The terms of a weighted sum as plain data: reading, validating, storing and describing them.

A term is a registered loss with its params, a weight and an optional label:
``{name, params = {}, weight = 1.0, label = None}`` (:class:`LossTerm`), or a bare loss name.
:func:`parse_terms` validates a list of them all at once (one
:class:`~autotimm.losses.LossConfigError` naming each term's problems) into
:class:`WeightedTerm` s; :func:`read_term` checks one term's shape only (configs use it as
they read a list of losses); :func:`term_json_schema` describes one term for editors. The
``terms`` parameter of :class:`~autotimm.losses.WeightedSumLoss` is :data:`Terms`.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Union

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
from torch import Tensor
from typing_extensions import Required, TypedDict

from autotimm.losses.errors import ArgumentProblem, LossConfigError, UnknownLossError
from autotimm.losses.spec import LossSpec, find_entry

__all__ = [
    "LABEL_PATTERN",
    "TERM_KEYS",
    "LossTerm",
    "Terms",
    "WeightedTerm",
    "parse_terms",
    "read_term",
    "term_json_schema",
    "within",
]

NAME = "weighted_sum"
"""The loss whose terms these are (named in its errors)."""
TERM_KEYS = ("name", "params", "weight", "label", "class_path")
"""The keys of a term; only ``name`` is required."""

LABEL_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
"""What a label may be: it names a logged value (``{stage}/loss_<label>``)."""
_LABEL = re.compile(LABEL_PATTERN)


class LossTerm(TypedDict, total=False):
    """One term of a weighted sum as plain data; only ``name`` is required.

    Attributes:
        name: A registry name or alias.
        params: That loss's arguments (default ``{}``), as for ``get_loss``.
        weight: Its weight, finite and >= 0 (default ``1.0``); a weight of 0 logs the term
            without training on it.
        label: Its key in ``last_components`` and the logs (default: the registry name).
        class_path: ``module.QualName`` of the loss class (checkpoints write it, so that a
            missing import can be named).
    """

    name: Required[str]
    params: Mapping[str, Any]
    weight: float
    label: str | None
    class_path: str


@dataclasses.dataclass(frozen=True)
class WeightedTerm:
    """One validated term: the canonical registry name, plain-data params, weight and label.

    Example:
        >>> (term,) = parse_terms([{"name": "ce", "weight": 0.5}])
        >>> term.name, term.weight, term.dump()["params"]
        ('cross_entropy', 0.5, {})
    """

    name: str
    params: dict[str, Any]
    weight: float = 1.0
    label: str | None = None
    class_path: str | None = None

    def spec(self) -> dict[str, Any]:
        """The loss of this term as a spec dict (``name``, ``params``, ``class_path``)."""
        return {"name": self.name, "params": dict(self.params), "class_path": self.class_path}

    def dump(self) -> dict[str, Any]:
        """The term as plain JSON data (every key written out)."""
        return {
            "name": self.name,
            "params": dict(self.params),
            "weight": self.weight,
            "label": self.label,
            "class_path": self.class_path,
        }


# --------------------------------------------------------------------------- reading terms
def read_term(item: Any, where: str) -> tuple[dict[str, Any] | None, list[ArgumentProblem]]:
    """The fields of one term given as plain data (a name or a mapping), and every problem of
    its *shape*; ``where`` names it in the problems (``"terms[1]"``).

    The name is not looked up and the params are not validated here (see
    :func:`parse_terms`); configs use this to check a list of losses as they read it.

    Example:
        >>> fields, problems = read_term({"name": "dice", "wieght": 2}, "terms[1]")
        >>> [str(p) for p in problems]
        ["terms[1] (dice): wieght: unknown key (a term has name, params, weight, label, class_path); did you mean 'weight'?"]
    """  # noqa: E501
    if isinstance(item, str):
        item = {"name": item}
    elif isinstance(item, LossSpec):
        item = item.model_dump()
    if not isinstance(item, Mapping):
        message = (
            f"expected a loss name or a term {{name, params, weight, label}}, got {_given(item)}"
        )
        return None, [ArgumentProblem(where, message, given=item)]
    name = item.get("name")
    named = isinstance(name, str) and bool(name.strip())
    label_where = f"{where} ({name})" if named else where
    problems: list[ArgumentProblem] = []

    def problem(message: str, given: Any = None, suggestion: str | None = None) -> None:
        problems.append(ArgumentProblem(label_where, message, given=given, suggestion=suggestion))

    for key in item:
        if key not in TERM_KEYS:
            close = difflib.get_close_matches(str(key), TERM_KEYS, n=1, cutoff=0.5)
            problem(
                f"{key}: unknown key (a term has {', '.join(TERM_KEYS)})",
                suggestion=close[0] if close else None,
            )
    if not named:
        problem(
            f"name: expected the registry name of a loss, got {_given(name)}"
            if "name" in item
            else "name: missing; a term needs the registry name of a loss",
            given=name,
        )
    params = item.get("params")
    if params is None:
        params = {}
    elif not isinstance(params, Mapping):
        problem(
            f"params: expected a mapping of that loss's arguments, got {_given(params)}", params
        )
        params = {}
    weight = item.get("weight", 1.0)
    number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
    if not number or not math.isfinite(weight) or weight < 0:
        problem(f"weight: expected a finite number >= 0, got {_given(weight)}", weight)
        weight = 1.0
    label = item.get("label")
    if label is not None and not (isinstance(label, str) and _LABEL.match(label)):
        problem(
            "label: expected a name of letters, digits, '_', '.' and '-' (it is logged as "
            f"loss_<label>), got {_given(label)}",
            label,
        )
        label = None
    class_path = item.get("class_path")
    if class_path is not None and not isinstance(class_path, str):
        problem(f"class_path: expected 'module.QualName', got {_given(class_path)}", class_path)
        class_path = None
    fields = {
        "name": name if named else None,
        "params": {str(k): v for k, v in params.items()},
        "weight": float(weight),
        "label": label,
        "class_path": class_path,
    }
    return fields, problems


def parse_terms(value: Any) -> tuple[WeightedTerm, ...]:
    """Validate the ``terms`` of a weighted sum: each term's shape, its loss name (looked up
    in the registry) and its params (against that loss's schema), all at once.

    A required parameter a term leaves out is not a problem here: a caller may supply it
    (``num_classes``, class weights); it is one when the term is built without it.

    Raises:
        LossConfigError: listing every problem of every term, each naming its term.

    Example:
        >>> parse_terms(["ce", {"name": "dice", "params": {"smoth": 0.5}, "weight": -1}])
        Traceback (most recent call last):
        ...
        autotimm.losses.errors.LossConfigError: Invalid arguments for loss 'weighted_sum' (2 problems):
          - terms[1] (dice): weight: expected a finite number >= 0, got -1 (int)
          - terms[1] (dice): smoth: unknown argument; did you mean 'smooth'?
    """  # noqa: E501
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _config_error(
            [
                ArgumentProblem(
                    "terms",
                    "expected a list of terms ({name, params, weight, label} or loss names), "
                    f"got {_given(value)}",
                    given=value,
                )
            ]
        )
    if not value:
        raise _config_error(
            [ArgumentProblem("terms", "expected at least one term, got an empty list")]
        )
    terms: list[WeightedTerm] = []
    problems: list[ArgumentProblem] = []
    for index, item in enumerate(value):
        if isinstance(item, WeightedTerm):  # validated already (a spec being rebuilt)
            terms.append(item)
            continue
        where = f"terms[{index}]"
        fields, found = read_term(item, where)
        problems += found
        if fields is None or fields["name"] is None:
            continue
        where = f"{where} ({fields['name']})"
        try:
            entry = find_entry(fields["name"], fields["class_path"])
        except UnknownLossError as error:
            problems.append(ArgumentProblem(where, f"name: {error}", given=fields["name"]))
            continue
        params, unstorable = _plain_params(fields["params"])
        problems += [ArgumentProblem(where, message) for message in unstorable]
        try:
            entry.validate(params)
        except LossConfigError as error:
            required = {p.name for p in entry.parameters if p.required}
            problems += [
                within(where, p)
                for p in error.problems
                if not (p.argument in required and p.argument not in params)
            ]
        if not found and not unstorable:
            terms.append(
                WeightedTerm(
                    entry.name, params, fields["weight"], fields["label"], entry.class_path
                )
            )
    seen: dict[str, int] = {}
    for index, term in enumerate(terms):
        if term.label is None:
            continue
        if term.label in seen:
            problems.append(
                ArgumentProblem(
                    f"terms[{index}] ({term.name})",
                    f"label: {term.label!r} is the label of terms[{seen[term.label]}] too; "
                    "labels name the logged terms, so they must differ",
                )
            )
        seen.setdefault(term.label, index)
    if problems:
        raise _config_error(problems)
    return tuple(terms)


def _plain_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``params`` as plain JSON data (tensors as lists), and what cannot be stored so."""
    plain: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in params.items():
        try:
            plain[key] = _plain(value)
        except TypeError:
            problems.append(
                f"{key}: {_given(value)} cannot be stored as plain data; give a registry name "
                "or plain values"
            )
    return plain, problems


def _plain(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(type(value).__name__)


def within(where: str, problem: ArgumentProblem) -> ArgumentProblem:
    """A problem of a term's loss, as a problem of that term (``where``: ``terms[1] (dice)``).

    Example:
        >>> str(within("terms[1] (dice)", ArgumentProblem("smoth", "unknown argument",
        ...                                                suggestion="smooth")))
        "terms[1] (dice): smoth: unknown argument; did you mean 'smooth'?"
    """
    return ArgumentProblem(
        where,
        f"{problem.argument}: {problem.message}",
        expected=problem.expected,
        given=problem.given,
        suggestion=problem.suggestion,
    )


def _config_error(problems: Sequence[ArgumentProblem]) -> LossConfigError:
    return LossConfigError(NAME, problems)


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


# --------------------------------------------------------------------------- schema
def term_json_schema() -> dict[str, Any]:
    """The JSON Schema of one term given as an object (configs add each loss's params).

    Example:
        >>> schema = term_json_schema()
        >>> schema["required"], schema["properties"]["weight"]["minimum"]
        (['name'], 0)
    """
    return {
        "type": "object",
        "description": "a term: a registered loss, its params, its weight and its label",
        "properties": {
            "name": {"type": "string", "description": "registry name of the loss"},
            "params": {
                "type": ["object", "null"],
                "default": {},
                "description": "the loss's constructor arguments (null: none)",
            },
            "weight": {
                "type": "number",
                "minimum": 0,
                "default": 1.0,
                "description": "weight of the term (finite, >= 0; 0 logs it without training)",
            },
            "label": {
                "anyOf": [{"type": "string", "pattern": LABEL_PATTERN}, {"type": "null"}],
                "default": None,
                "description": "logged as {stage}/loss_<label>; default: the loss's name",
            },
            "class_path": {
                "type": "string",
                "description": "module.QualName of the loss class (written in checkpoints)",
            },
        },
        "required": ["name"],
        "additionalProperties": False,
    }


@dataclasses.dataclass(frozen=True)
class _TermsParameter:
    """How the registry validates, stores and describes ``terms`` (see :func:`parse_terms`)."""

    type_text: ClassVar[str] = (
        "list[str | {name: str, params: dict = {}, weight: float >= 0 = 1.0, "
        "label: str | None = None}]"
    )

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            parse_terms,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda terms: [term.dump() for term in terms], when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "array",
            "minItems": 1,
            "items": {
                "anyOf": [
                    {"type": "string", "description": "a registry name (weight 1)"},
                    term_json_schema(),
                ]
            },
            "description": "the terms: loss names or {name, params, weight, label}",
        }


Terms = Annotated[Sequence[Union[LossTerm, str]], _TermsParameter()]  # noqa: UP007
"""The ``terms`` parameter: a list of loss names or :class:`LossTerm` mappings."""

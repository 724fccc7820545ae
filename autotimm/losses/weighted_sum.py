"""``weighted_sum``: any weighted mix of registered losses, each reached as it would be alone.

``WeightedSumLoss(terms=[...])`` is ``sum_i weight_i * loss_i(prediction, target)``. Its one
parameter, ``terms``, is plain data: a list of ``{name, params = {}, weight = 1.0, label =
None}`` (or bare loss names), so it is written in configs and stored in checkpoints as it is.
A list of losses given to a model (``loss_fn=["cross_entropy", {"name": "dice", "weight":
3.0}]``) is this loss (:data:`~autotimm.losses.resolve.LIST_LOSS`).

- **Built for a caller** (a model, through :func:`~autotimm.losses.resolve.resolve_loss`, which
  calls :meth:`WeightedSumLoss.for_caller`): every term is resolved through ``resolve_loss``
  with the caller's feed, context (``num_classes``, ``ignore_index``, ...) and class weights,
  exactly as that loss would be resolved alone. A term that does not fit what the caller feeds
  is refused then, naming the losses that fit; each is called with the caller's raw
  prediction and target adapted to what it takes (:func:`~autotimm.losses.adapt.adapt_to_loss`:
  a term that takes probabilities gets probabilities).
- **Built alone** (``get_loss("weighted_sum", terms=...)``): each term is built by name with its
  params and called with the inputs as given, as if called by hand; terms that take different
  kinds of input (boxes and class scores) are refused.

The terms are validated all at once: one :class:`~autotimm.losses.LossConfigError` lists every
problem of every term, naming it (``terms[1] (dice): smoth: unknown argument; did you mean
'smooth'?``). After each call ``last_components`` holds each term's value (before weighting),
keyed by its label or, without one, its registry name (``dice``, ``dice_1``, ... when a name
repeats), which models log as ``{stage}/loss_<key>``.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Union

import torch
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema
from torch import Tensor, nn
from typing_extensions import Required, TypedDict

from autotimm.losses._types import TASKS
from autotimm.losses.adapt import LossFeed, LossTakes, adapt_to_loss
from autotimm.losses.errors import (
    ArgumentProblem,
    LossConfigError,
    LossMismatchError,
    UnknownLossError,
)
from autotimm.losses.registry import register_loss
from autotimm.losses.resolve import LossCaller, ResolvedLoss, resolve_loss
from autotimm.losses.spec import LossSpec, find_entry

__all__ = [
    "LossTerm",
    "WeightedSumLoss",
    "WeightedTerm",
    "parse_terms",
    "read_term",
    "term_json_schema",
]

NAME = "weighted_sum"
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
                _within(where, p)
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


def _within(where: str, problem: ArgumentProblem) -> ArgumentProblem:
    """A problem of a term's loss, as a problem of that term."""
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
                "type": "object",
                "default": {},
                "description": "the loss's constructor arguments",
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


# --------------------------------------------------------------------------- the loss
@register_loss(NAME, task=TASKS)
class WeightedSumLoss(nn.Module):
    """A weighted sum of registered losses: ``sum_i weight_i * loss_i(prediction, target)``.

    Every term is a registered loss, built by name with its params (as ``get_loss`` builds
    it) and called with the same prediction and target. In a model (``loss_fn=[...]``, or
    this loss by name) each term is resolved exactly as that loss would be alone: the model's
    ``num_classes``, ``ignore_index`` and class weights reach it, it must fit what the model
    feeds, and it gets the prediction and target adapted to what it takes.

    ``reduction``: each term reduces as its own ``reduction`` says (in a model that needs
    summed terms, as the ``fcos`` criterion does, every term is built with ``"sum"``). With
    ``reduction="none"`` in a term's params, that term's unreduced value is added with
    broadcasting (a scalar term is added to every element); values whose shapes do not
    broadcast are a ``ValueError`` naming the terms. A term of weight 0 is computed and logged,
    but not added.

    After each call ``last_components`` maps each term's key (its label, else its registry
    name, made unique with ``_1``, ``_2``, ... when a name repeats) to its detached value.

    Args:
        terms: The losses to add, in order: each a registry name, or a mapping with ``name``
            (required), ``params`` (that loss's arguments, default ``{}``), ``weight``
            (finite, >= 0, default 1.0) and ``label`` (its key in the logs; letters, digits,
            ``_``, ``.``, ``-``; labels must differ).

    Example:
        >>> from autotimm.losses import get_loss
        >>> loss = get_loss("weighted_sum", terms=[
        ...     {"name": "cross_entropy"},
        ...     {"name": "dice", "weight": 3.0, "params": {"smooth": 0.5}},
        ... ])
        >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> by_hand = (get_loss("cross_entropy")(logits, target)
        ...            + 3.0 * get_loss("dice", smooth=0.5)(logits, target))
        >>> torch.equal(loss(logits, target), by_hand)
        True
        >>> sorted(loss.last_components)
        ['cross_entropy', 'dice']
    """

    terms: tuple[WeightedTerm, ...]
    component_keys: tuple[str, ...]

    def __init__(self, *, terms: Terms) -> None:
        super().__init__()
        self._build(parse_terms(terms), None)

    @classmethod
    def for_caller(cls, caller: LossCaller, /, *, terms: Terms) -> WeightedSumLoss:
        """The weighted sum of ``terms`` for ``caller``: each term resolved through
        :func:`~autotimm.losses.resolve.resolve_loss` with the caller's feed, context and
        class weights, and adapted to what it takes in every call.

        Raises:
            LossConfigError: every problem of every term (including a required parameter that
                neither the term nor the caller supplies).
            LossMismatchError: terms that do not fit what the caller feeds (each named, with
                the losses that fit).

        Example:
            >>> from autotimm.losses.adapt import LossFeed
            >>> feed = LossFeed(task="classification", target="class_indices",
            ...                 prediction=("N", "C"), num_classes=3)
            >>> loss = WeightedSumLoss.for_caller(LossCaller(feed, {"num_classes": 3}),
            ...                                   terms=["cross_entropy", "bce"])
            >>> [type(m).__name__ for m in loss.losses]  # bce is fed sigmoids and one-hot rows
            ['CrossEntropyLoss', 'BCELoss']
        """
        loss = cls.__new__(cls)
        nn.Module.__init__(loss)
        loss._build(parse_terms(terms), caller)
        return loss

    def _build(self, terms: tuple[WeightedTerm, ...], caller: LossCaller | None) -> None:
        feed = caller.feed if caller is not None else None
        resolved: list[ResolvedLoss] = []
        problems: list[ArgumentProblem] = []
        mismatches: list[LossMismatchError] = []
        for index, term in enumerate(terms):
            try:
                resolved.append(
                    resolve_loss(
                        term.spec(),
                        feed=feed,
                        context=caller.context if caller is not None else None,
                        class_weights=caller.class_weights if caller is not None else None,
                        argument=(
                            f"{caller.argument}[{index}]"
                            if caller is not None
                            else f"terms[{index}]"
                        ),
                        owner=caller.owner if caller is not None else NAME,
                    )
                )
            except LossMismatchError as error:
                mismatches.append(error)
            except LossConfigError as error:
                problems += [_within(f"terms[{index}] ({term.name})", p) for p in error.problems]
        if problems:
            raise LossConfigError(
                NAME, problems, where=f" ({type(self).__module__}.{type(self).__qualname__})"
            )
        if mismatches:
            raise _mismatch_error(mismatches, caller)
        if feed is None:
            _check_agreement(terms, resolved)
        self.terms = terms
        self.component_keys = _component_keys(terms)
        self.losses = nn.ModuleList(r.module for r in resolved)
        self._takes: tuple[LossTakes | None, ...] = tuple(r.takes for r in resolved)
        self._feed: LossFeed | None = feed
        self._weights = tuple(term.weight for term in terms)
        self._last_components: dict[str, Tensor] = {}

    @property
    def last_components(self) -> dict[str, Tensor]:
        """Each term's detached value after the last call, by its key (before weighting)."""
        return self._last_components

    def forward(self, *inputs: Tensor) -> Tensor:
        """The weighted sum of the terms, each called with ``inputs`` (a prediction and a
        target, adapted to what the term takes when the caller's feed is known)."""
        adapt = self._feed is not None and len(inputs) == 2
        adapted: dict[LossTakes | None, tuple[Tensor, ...]] = {}
        values: list[Tensor] = []
        for module, takes in zip(self.losses, self._takes):
            if adapt:
                if takes not in adapted:  # once per kind of input, e.g. one softmax
                    adapted[takes] = adapt_to_loss(self._feed, takes, inputs[0], inputs[1])  # type: ignore[arg-type]
                values.append(module(*adapted[takes]))
            else:
                values.append(module(*inputs))
        self._last_components = {
            key: value.detach() for key, value in zip(self.component_keys, values)
        }
        if not torch.compiler.is_compiling():
            self._check_shapes(values)
        total: Tensor | None = None
        for value, weight in zip(values, self._weights):
            if weight == 0:  # logged, not trained (and 0 * inf would be nan)
                continue
            term = value if weight == 1.0 else value * weight
            total = term if total is None else total + term
        if total is None:  # every weight is 0: a zero that keeps the graph
            first = values[0]
            return torch.where(torch.isfinite(first), first, 0.0) * 0.0
        return total

    def _check_shapes(self, values: Sequence[Tensor]) -> None:
        shapes = [tuple(value.shape) for value in values]
        if all(len(shape) == 0 for shape in shapes):
            return
        try:
            torch.broadcast_shapes(*shapes)
        except RuntimeError:
            found = ", ".join(
                f"{key} {list(shape)}" for key, shape in zip(self.component_keys, shapes)
            )
            raise ValueError(
                f"{NAME}: the terms' values cannot be added, their shapes do not broadcast "
                f"({found}); give the terms with reduction='none' reductions whose values "
                "broadcast, or reduce them"
            ) from None

    def extra_repr(self) -> str:
        return ", ".join(
            f"{key}={weight:g}" for key, weight in zip(self.component_keys, self._weights)
        )


def _component_keys(terms: Sequence[WeightedTerm]) -> tuple[str, ...]:
    """Each term's key: its label, else its name with ``_1``, ``_2``, ... when taken."""
    used = {term.label for term in terms if term.label is not None}
    keys = []
    for term in terms:
        if term.label is not None:
            keys.append(term.label)
            continue
        key, count = term.name, 0
        while key in used:
            count += 1
            key = f"{term.name}_{count}"
        used.add(key)
        keys.append(key)
    return tuple(keys)


def _mismatch_error(
    errors: Sequence[LossMismatchError], caller: LossCaller | None
) -> LossMismatchError:
    if len(errors) == 1:
        return errors[0]
    owner = caller.owner if caller is not None else NAME
    argument = caller.argument if caller is not None else "terms"
    message = (
        f"{owner} cannot use {len(errors)} of the terms of {argument}; each term is called "
        "with what it is fed:\n" + "\n".join(f"  - {error}" for error in errors)
    )
    return LossMismatchError(message, argument=argument, loss=NAME, fitting=errors[0].fitting)


def _check_agreement(terms: Sequence[WeightedTerm], resolved: Sequence[ResolvedLoss]) -> None:
    """Built alone, every term is called with the same inputs: they must take one kind."""
    kinds: dict[str, list[str]] = {}
    for index, (term, loss) in enumerate(zip(terms, resolved)):
        if loss.takes is None:
            continue
        target = loss.takes.target
        kind = target if target in ("boxes", "structured") else "class scores"
        kinds.setdefault(kind, []).append(
            f"terms[{index}] ({term.name}) takes {loss.takes.describe()}"
        )
    if len(kinds) > 1:
        found = "; ".join(text for texts in kinds.values() for text in texts)
        raise LossMismatchError(
            f"{NAME}: every term is called with the same prediction and target, but these "
            f"terms take different inputs: {found}. Combine losses that take the same inputs "
            "(e.g. segmentation losses with segmentation losses, box losses with box losses).",
            argument="terms",
            loss=NAME,
            fitting=(),
        )

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
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from autotimm.losses._entry import RECORDED_ARGUMENTS
from autotimm.losses._types import TASKS, Reduction
from autotimm.losses.adapt import LossFeed, LossTakes, adapt_to_loss
from autotimm.losses.errors import ArgumentProblem, LossConfigError, LossMismatchError
from autotimm.losses.registry import register_loss
from autotimm.losses.resolve import LossCaller, ResolvedLoss, resolve_loss
from autotimm.losses.terms import NAME, Terms, WeightedTerm, parse_terms, within

__all__ = ["WeightedSumLoss"]


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
    ``reduction="none"`` in a term's params (outside a model: a model trains on one number
    and refuses it), that term's unreduced value is added with broadcasting (a scalar term is
    added to every element); values whose shapes do not broadcast are a ``ValueError`` naming
    the terms. Setting ``reduction`` on the loss sets every term's, and its spec keeps it. A
    term of weight 0 is computed and logged, but not added.

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
        # built alone, the terms are named as the loss's own argument: terms[i]
        caller = caller or LossCaller(argument="terms", owner=NAME)
        feed = caller.feed
        resolved: list[ResolvedLoss] = []
        problems: list[ArgumentProblem] = []
        mismatches: list[LossMismatchError] = []
        for index, term in enumerate(terms):
            try:
                resolved.append(
                    resolve_loss(
                        term.spec(),
                        feed=feed,
                        context=caller.context,
                        class_weights=caller.class_weights,
                        argument=f"{caller.argument}[{index}]",
                        owner=caller.owner,
                        warn_task=caller.warn_task,
                    )
                )
            except LossMismatchError as error:
                mismatches.append(error)
            except LossConfigError as error:
                problems += [within(f"terms[{index}] ({term.name})", p) for p in error.problems]
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
        # what forward runs, as a plain tuple (a ModuleList is slower to reach and iterate)
        self._runs: tuple[tuple[nn.Module, LossTakes | None], ...] = tuple(
            (r.module, r.takes) for r in resolved
        )
        self._feed: LossFeed | None = feed
        self._weights = tuple(term.weight for term in terms)
        self._last_components: dict[str, Tensor] = {}
        self._component_buffer: Tensor | None = None

    @property
    def reduction(self) -> Reduction | None:
        """The reduction the terms share (``None`` when they differ). Setting it sets the
        ``reduction`` of every term that has one, as setting a built-in loss's does."""
        found = {getattr(module, "reduction", None) for module in self.losses}
        return found.pop() if len(found) == 1 else None

    @reduction.setter
    def reduction(self, value: Reduction) -> None:
        terms = []
        for term, module in zip(self.terms, self.losses):
            if hasattr(module, "reduction"):
                setattr(module, "reduction", value)  # noqa: B010 - a plain attribute of any loss
                term = dataclasses.replace(term, params={**term.params, "reduction": value})
            terms.append(term)
        self.terms = tuple(terms)
        # its spec (a checkpoint, a model given this instance) rebuilds the terms as set now
        recorded = self.__dict__.get(RECORDED_ARGUMENTS)
        if isinstance(recorded, dict):
            recorded["terms"] = self.terms

    @property
    def last_components(self) -> dict[str, Tensor]:
        """Each term's detached value after the last call, by its key (before weighting).

        Scalar values are views of one buffer that the next call overwrites (so logging them
        allocates nothing per step): log or copy them before calling the loss again.
        """
        return self._last_components

    def forward(self, *inputs: Tensor) -> Tensor:
        """The weighted sum of the terms, each called with ``inputs`` (a prediction and a
        target, adapted to what the term takes when the caller's feed is known)."""
        feed = self._feed
        adapted: dict[LossTakes | None, tuple[Tensor, ...]] = {}
        values: list[Tensor] = []
        for module, takes in self._runs:
            if feed is not None and len(inputs) == 2:
                if takes not in adapted:  # once per kind of input, e.g. one softmax
                    adapted[takes] = adapt_to_loss(feed, takes, inputs[0], inputs[1])
                values.append(module(*adapted[takes]))
            else:
                values.append(module(*inputs))
        self._record(values)
        total: Tensor | None = None
        for value, weight in zip(values, self._weights):
            if weight == 0:  # logged, not trained (and 0 * inf would be nan)
                continue
            term = value if weight == 1.0 else value * weight
            total = term if total is None else total + term
        if total is None:  # every weight is 0: a zero with a zero gradient, whatever the terms
            prediction = inputs[0]
            kept = torch.where(torch.isfinite(prediction), prediction, 0.0)
            return (kept.sum() * 0.0).to(values[0].dtype)
        return total

    def _record(self, values: list[Tensor]) -> None:
        """Keep the terms' values for logging. Scalars (the usual case) are copied into one
        reused buffer, so the values themselves are freed as a sum by hand frees them;
        unreduced values are kept as they are, once their shapes are known to broadcast."""
        first = values[0]
        scalars = all(
            value.ndim == 0 and value.dtype == first.dtype and value.device == first.device
            for value in values
        )
        if not scalars or torch.compiler.is_compiling():
            if not torch.compiler.is_compiling():
                self._check_shapes(values)
            detached = [value.detach() for value in values]
            self._last_components = dict(zip(self.component_keys, detached))
            return
        buffer = self._component_buffer
        if buffer is None or buffer.dtype != first.dtype or buffer.device != first.device:
            buffer = self._component_buffer = first.new_empty(len(values))
        with torch.no_grad():
            torch.stack(values, out=buffer)
        self._last_components = dict(zip(self.component_keys, buffer.unbind()))

    def _check_shapes(self, values: Sequence[Tensor]) -> None:
        shapes = [tuple(value.shape) for value in values]
        try:
            torch.broadcast_shapes(*shapes)  # type: ignore[no-untyped-call]
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


def _mismatch_error(errors: Sequence[LossMismatchError], caller: LossCaller) -> LossMismatchError:
    if len(errors) == 1:
        return errors[0]
    message = (
        f"{caller.owner} cannot use {len(errors)} of the terms of {caller.argument}; each term "
        "is called with what it is fed:\n" + "\n".join(f"  - {error}" for error in errors)
    )
    return LossMismatchError(
        message, argument=caller.argument, loss=NAME, fitting=errors[0].fitting
    )


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

"""The one path by which every model (and composite loss) turns a loss argument into a loss.

A model describes each of its loss arguments as a :class:`LossSlot`: what it feeds the loss
(a :class:`~autotimm.losses.adapt.LossFeed`), the values it offers the loss (``num_classes``,
``ignore_index``, ...; each reaches the loss only when its constructor has a parameter of that
name), its per-class weights (they reach the parameter the loss's registration names, whatever
it is called) and its default. :func:`resolve_loss` then builds (or adopts) the loss, with the
user's explicit arguments winning, and refuses at once, before any backbone is built or data
read, a loss that cannot take what the model feeds (:class:`~autotimm.losses.LossMismatchError`)
or bad arguments (:class:`~autotimm.losses.LossConfigError`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Union

from torch import Tensor, nn

from autotimm.losses._entry import LossEntry
from autotimm.losses._stack import user_stacklevel
from autotimm.losses._types import InputKind, TargetKind
from autotimm.losses.adapt import (
    LossFeed,
    LossTakes,
    class_weights_argument,
    fit_problem,
    fitting_losses,
    takes_of,
)
from autotimm.losses.errors import LossMismatchError, LossTaskWarning
from autotimm.losses.registry import get_loss_registry
from autotimm.losses.spec import LossSpec, find_entry

__all__ = [
    "LIST_LOSS",
    "LossCaller",
    "LossLike",
    "LossSlot",
    "ResolvedLoss",
    "resolve_loss",
    "task_warning",
]

LossLike = Union[  # noqa: UP007 - a runtime alias
    str, LossSpec, Mapping[str, Any], nn.Module, Sequence[Union[str, Mapping[str, Any]]]  # noqa: UP007
]
"""What a model's ``loss_fn`` accepts: a name, a spec (or its dict), a module, or a list of
terms (names or ``{name, params, weight, label}``), which is the weighted sum of them."""

LIST_LOSS = "weighted_sum"
"""The registered loss a list of losses stands for: ``[a, b]`` is ``{"name": "weighted_sum",
"params": {"terms": [a, b]}}``."""

_UNREGISTERED = "unregistered:"
_SPEC_KEYS = ("name", "params", "class_path")


@dataclasses.dataclass(frozen=True)
class LossCaller:
    """Who resolves a loss, and what it feeds and offers: what a loss that is built for its
    caller (:attr:`LossEntry.builds_for_caller <autotimm.losses.LossEntry.builds_for_caller>`,
    e.g. ``weighted_sum``) receives, to resolve its parts exactly as the caller would resolve
    each of them alone.

    Attributes:
        feed: What the caller feeds the loss (``None``: not described; parts are called as fed).
        context: The caller's values offered to the loss (``num_classes``, ...), unfiltered.
        class_weights: The caller's per-class weights.
        argument: The caller's argument name, for messages (``"loss_fn"``).
        owner: The caller's name, for messages (``"SemanticSegmentor"``).
        warn_task: Whether a part registered only for other tasks gets a
            :class:`LossTaskWarning` (off for the parts of a composite's parts: the composite's
            own caller has warned already).

    Example:
        >>> LossCaller(None, {"num_classes": 3}).argument
        'loss_fn'
    """

    feed: LossFeed | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    class_weights: tuple[float, ...] | None = None
    argument: str = "loss_fn"
    owner: str = "the model"
    warn_task: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class LossSlot:
    """One loss argument of a model: what the model feeds it and what it offers it.

    Models describe their loss arguments with these (``Model.loss_slots(init_args)``), and
    both the model and the config checker resolve through them, so the knowledge of what a
    model feeds lives in the model alone.

    Attributes:
        argument: The model's argument (``"loss_fn"``, ``"cls_loss_fn"``, ...).
        feed: What the model calls the loss with (``None``: unknown; nothing is checked).
        owner: Who calls the loss, for messages (``"SemanticSegmentor"``).
        context: Model values offered to the loss, by parameter name.
        class_weights: The model's per-class weights, for the loss's per-class weight
            parameter (as its registration names it).
        default: What the model uses when the argument is ``None``.
        kwargs_argument: The model argument with explicit loss arguments (``"loss_kwargs"``).

    Example:
        >>> slot = LossSlot("loss_fn", LossFeed(task="classification", target="class_indices",
        ...                 prediction=("N", "C"), num_classes=3), class_weights=(1.0, 2.0, 1.0),
        ...                 default="cross_entropy")
        >>> slot.resolve(None).module.weight.tolist()
        [1.0, 2.0, 1.0]
    """

    argument: str
    feed: LossFeed | None
    owner: str = "the model"
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    class_weights: tuple[float, ...] | None = None
    default: LossLike | None = None
    kwargs_argument: str | None = None

    def resolve(
        self, loss: LossLike | None, kwargs: Mapping[str, Any] | None = None
    ) -> ResolvedLoss:
        """:func:`resolve_loss` of ``loss`` (``None``: the default) for this argument."""
        if loss is None:
            if self.default is None:
                raise ValueError(f"{self.owner}: {self.argument} has no default; pass a loss")
            loss = self.default
        return resolve_loss(
            loss,
            feed=self.feed,
            context=self.context,
            class_weights=self.class_weights,
            kwargs=kwargs,
            argument=self.argument,
            owner=self.owner,
        )


class TakenKinds:
    """``expects`` and ``target`` of a loss from its ``takes`` and ``feed`` (shared by
    :class:`ResolvedLoss` and :class:`~autotimm.losses.model_loss.ModelLoss`)."""

    takes: LossTakes | None
    feed: LossFeed | None

    @property
    def expects(self) -> InputKind:
        """What the loss takes as prediction (``"logits"`` when undeclared)."""
        return self.takes.expects if self.takes is not None else "logits"

    @property
    def target(self) -> TargetKind:
        """What the loss takes as target (when undeclared: what it is fed)."""
        if self.takes is not None:
            return self.takes.target
        return self.feed.target if self.feed is not None else "class_indices"


@dataclasses.dataclass(frozen=True)
class ResolvedLoss(TakenKinds):
    """A loss module together with what the registry knows about it and how it is fed.

    Attributes:
        module: The loss to call.
        entry: Its registry entry, or ``None`` for an instance of an unregistered class.
        spec: Plain data that rebuilds it (for hyperparameters), or ``None`` if there is none.
        takes: What it takes (``None``: undeclared, called with the feed as fed).
        feed: What its caller feeds it (``None``: not described).
        context: The caller's values that reached (or would reach) its parameters.
    """

    module: nn.Module
    entry: LossEntry | None
    spec: LossSpec | None
    takes: LossTakes | None = None
    feed: LossFeed | None = None
    context: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_hparam(self) -> dict[str, Any] | str:
        """What a checkpoint stores: the spec as plain data, or a marker that names the class.

        Loading passes the stored spec through :func:`resolve_loss` with the model's
        context again, which fills parameters the spec leaves out. So every parameter the
        context names is written down explicitly (with the loss's own default where an
        instance did not set it): the reloaded loss is this one, not one with the context's
        value. A marker naming an unregistered class makes loading ask for the loss again,
        rather than silently training with a different one.

        Example:
            >>> from autotimm.losses import get_loss
            >>> resolved = resolve_loss(get_loss("dice", smooth=0.5), context={"ignore_index": 0})
            >>> stored = resolved.to_hparam()
            >>> stored["name"], stored["params"]
            ('dice', {'smooth': 0.5, 'ignore_index': 255})
        """
        if self.spec is None or self.entry is None:
            cls = type(self.module)
            return f"{_UNREGISTERED}{cls.__module__}.{cls.__qualname__}"
        params = dict(self.spec.params)
        implicit = {
            p.name: p.default
            for p in self.entry.parameters
            if self.context.get(p.name) is not None and p.name not in params and not p.required
        }
        params.update(self.entry.dump(implicit))  # the defaults are trusted: no validation
        return self.spec.model_copy(update={"params": params}).model_dump(mode="json")


def resolve_loss(
    loss: LossLike,
    *,
    feed: LossFeed | None = None,
    context: Mapping[str, Any] | None = None,
    class_weights: Sequence[float] | Tensor | None = None,
    kwargs: Mapping[str, Any] | None = None,
    argument: str = "loss_fn",
    owner: str | None = None,
    warn_task: bool = True,
) -> ResolvedLoss:
    """Build (or adopt) a loss for a caller, and check that it fits what the caller feeds.

    Args:
        loss: A registry name or alias, a ``LossSpec`` (or its dict form, with the keys
            ``name``, ``params`` and ``class_path`` only), an ``nn.Module``, or a list of
            losses: the ``weighted_sum`` of those terms (``[a, b]`` is ``{"name":
            "weighted_sum", "params": {"terms": [a, b]}}``). A loss that is built for its
            caller (:attr:`LossEntry.builds_for_caller
            <autotimm.losses.LossEntry.builds_for_caller>`) receives a :class:`LossCaller`
            with everything below, and resolves its parts through this function, each exactly
            as it would be resolved alone; given as an instance, it is built again from its
            spec.
        feed: What the caller feeds the loss. With it, a loss that cannot take it is refused,
            a loss registered only for other tasks gets a :class:`LossTaskWarning`, and the
            feed's ``reduction`` (if any) is applied: as a context value for a name or spec,
            and by rebuilding a registered instance left at another default reduction.
        context: The caller's values (``num_classes``, ``ignore_index``, ...). Each reaches
            the loss only if its constructor has a parameter of that name; ``None`` never does.
        class_weights: Per-class weights for the parameter the loss's registration names
            (``weight`` for ``cross_entropy``, ``alpha`` for ``focal_pixelwise``, ...); a loss
            without one gets a ``UserWarning``. If that parameter is required and no weights
            are given, uniform weights are used, with a ``UserWarning``.
        kwargs: The user's explicit loss arguments; they win over context and spec params.
        argument: The caller's argument name, for messages.
        owner: The caller's name, for messages (``"SemanticSegmentor"``).
        warn_task: Warn about a loss registered only for other tasks (a composite loss
            resolving its components turns it off: its own caller has warned already).

    Raises:
        UnknownLossError: an unknown name (with suggestions).
        LossConfigError: unknown, mistyped, out-of-range or missing loss arguments.
        LossMismatchError: the loss cannot take what ``feed`` feeds (with the losses that can).
        ValueError: a spec dict with a key other than ``name``, ``params`` and ``class_path``.
        TypeError: ``loss`` is of an unsupported type, or ``kwargs`` were given with a module.
        ValueError: ``kwargs`` were given with a list of losses.

    Example:
        >>> resolved = resolve_loss("dice", context={"num_classes": 3, "lr": 0.1})
        >>> resolved.spec.name, resolved.spec.params
        ('dice', {'num_classes': 3})
    """
    owner = owner or "the model"
    weights = None if class_weights is None else [float(w) for w in _flat(class_weights)]
    caller = LossCaller(
        feed,
        dict(context or {}),
        None if weights is None else tuple(weights),
        argument,
        owner,
        warn_task,
    )
    entry: LossEntry | None = None
    if isinstance(loss, nn.Module):
        if kwargs:
            raise TypeError(
                f"{argument} is a loss instance, so its arguments are already set; "
                f"loss kwargs {sorted(kwargs)} cannot be applied. Pass a registry name instead."
            )
        entry = get_loss_registry().entry_for_class(type(loss))
        if entry is not None and entry.builds_for_caller:
            # a loss built for its caller (its parts are plain data) is built again for this
            # one, from its spec, as that spec would be
            instance_spec = LossSpec.of(loss, entry=entry)
            if instance_spec is not None:
                loss = instance_spec
    if isinstance(loss, (list, tuple)) and kwargs:
        raise ValueError(
            f"{argument} is a list of losses (the terms of a {LIST_LOSS}); loss kwargs "
            f"{sorted(kwargs)} cannot be applied to it: give each term its own params"
        )
    built_for_caller = False
    if isinstance(loss, nn.Module):
        module, entry, spec = _adopt(loss, entry, feed)
        routed = {} if entry is None else _context_for(entry, context, weights, feed, fill=False)
        if weights is not None:
            warnings.warn(
                f"class_weights were given, but {argument} is a loss instance whose arguments "
                "are already set, so they are not used. Set its weights yourself, or pass the "
                "loss by name to have the model's class_weights applied.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
            weights = None
    else:
        if entry is None:
            name, params, class_path = _unpack(loss, argument)
            entry = find_entry(name, class_path)  # the one registry lookup
        else:  # the spec of an instance, whose entry is known
            params = dict(typing.cast(LossSpec, loss).params)
        built_for_caller = entry.builds_for_caller
        routed = _context_for(entry, context, weights, feed)
        arguments = {**routed, **params, **(kwargs or {})}
        module = entry.build_for(caller, **arguments)  # the one validation
        spec = LossSpec.of(module, entry=entry)
    # a loss built for its caller has fitted each of its parts to the feed, and adapts what
    # it is fed for each of them: it is called as fed
    takes = None if built_for_caller else takes_of(module, entry)
    if feed is not None and not built_for_caller:
        own_classes = spec.params.get("num_classes") if spec is not None else None
        problem = fit_problem(
            feed,
            takes,
            forward=module.forward,
            num_classes=own_classes if isinstance(own_classes, int) else None,
        ) or _setting_problem(module, entry, spec, feed)
        if problem is not None:
            raise _mismatch(problem, loss, module, entry, takes, feed, argument, owner)
        if entry is not None and warn_task:
            message = task_warning(entry, feed, argument)
            if message is not None:
                warnings.warn(message, LossTaskWarning, stacklevel=user_stacklevel())
    if (
        weights is not None
        and not built_for_caller
        and (entry is None or entry.class_weights is None)
    ):
        what = (
            f"loss {entry.name!r} has no per-class weight parameter"
            if entry is not None
            else f"{argument} is an instance of the unregistered {type(module).__name__}"
        )
        warnings.warn(
            f"class_weights were given but {what}, so they are not used. Pick a loss that "
            "takes per-class weights, or register yours with class_weights='<its parameter>'.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return ResolvedLoss(module, entry, spec, takes, feed, routed)


def task_warning(entry: LossEntry, feed: LossFeed, argument: str = "loss_fn") -> str | None:
    """The warning for a loss registered only for other tasks than ``feed``'s (or ``None``).

    A loss without a task (a custom one) never gets it. The warning names the losses
    registered for the caller's task that fit the argument.

    Example:
        >>> from autotimm.losses import get_entry
        >>> feed = LossFeed(task="classification", target="class_indices",
        ...                 prediction=("N", "C"), num_classes=3)
        >>> print(task_warning(get_entry("focal_pixelwise"), feed))  # doctest: +ELLIPSIS
        loss 'focal_pixelwise' is registered for segmentation, not classification; ...
    """
    if not entry.tasks or feed.task in entry.tasks:
        return None
    same_task = [e for e in get_loss_registry() if feed.task in e.tasks]
    names = fitting_losses(feed, same_task)
    return (
        f"loss {entry.name!r} is registered for {', '.join(entry.tasks)}, not {feed.task}; "
        f"it fits what {argument} is fed, so it is used. Losses registered for {feed.task} "
        f"that fit {argument}: {', '.join(names) or '(none)'}"
    )


# ---------------------------------------------------------------------- helpers
def _unpack(loss: Any, argument: str) -> tuple[str, dict[str, Any], str | None]:
    """``(name, params, class_path)`` of a name, a ``LossSpec`` or its dict form."""
    if isinstance(loss, str) and loss.startswith(_UNREGISTERED):
        raise ValueError(
            f"This model was saved with an unregistered loss instance "
            f"({loss.removeprefix(_UNREGISTERED)}) that cannot be stored as plain data. Pass it "
            f"again when loading, e.g. Model.load_from_checkpoint(path, {argument}=YourLoss(...)), "
            "or register its class with register_custom_loss so checkpoints can rebuild it."
        )
    if isinstance(loss, str):
        return loss, {}, None
    if isinstance(loss, (list, tuple)):  # a list of losses: the weighted sum of its terms
        return LIST_LOSS, {"terms": list(loss)}, None
    if isinstance(loss, LossSpec):
        return loss.name, dict(loss.params), loss.class_path
    if isinstance(loss, Mapping) and isinstance(loss.get("name"), str):
        unknown = [str(key) for key in loss if key not in _SPEC_KEYS]
        if unknown:
            hints = [
                f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                for key in unknown
                for close in [difflib.get_close_matches(key, _SPEC_KEYS, n=1, cutoff=0.5)]
            ]
            raise ValueError(
                f"{argument}: a loss spec has the keys 'name', 'params' and 'class_path'; "
                f"unknown key {', '.join(hints)}"
            )
        params = loss.get("params")
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(
                f"{argument}: 'params' of a loss spec maps argument names to values; got {params!r}"
            )
        return loss["name"], dict(params or {}), loss.get("class_path")
    raise TypeError(
        f"{argument} must be a registry name, a LossSpec, a dict with 'name' and 'params', "
        f"an nn.Module instance or a list of losses; got {type(loss).__name__}."
    )


def _adopt(
    loss: nn.Module, entry: LossEntry | None, feed: LossFeed | None
) -> tuple[nn.Module, LossEntry | None, LossSpec | None]:
    """A given instance (of ``entry``'s class), its entry and spec; rebuilt with the feed's
    reduction if it was left at a different default (a reduction chosen explicitly is kept:
    the caller reports it)."""
    spec = None if entry is None else LossSpec.of(loss, entry=entry)
    if feed is None or feed.reduction is None or entry is None or spec is None:
        return loss, entry, spec
    reduction = next((p for p in entry.parameters if p.name == "reduction"), None)
    if reduction is None or "reduction" in spec.params or reduction.default == feed.reduction:
        return loss, entry, spec
    module = entry.build(**spec.params, reduction=feed.reduction)
    return module, entry, LossSpec.of(module, entry=entry)


def _context_for(
    entry: LossEntry,
    context: Mapping[str, Any] | None,
    weights: list[float] | None,
    feed: LossFeed | None,
    *,
    fill: bool = True,
) -> dict[str, Any]:
    """The caller's values that reach ``entry``'s parameters, by parameter name; with
    ``fill``, uniform weights for a required per-class weight parameter left unset."""
    accepted = {p.name: p for p in entry.parameters}
    routed = {k: v for k, v in (context or {}).items() if k in accepted and v is not None}
    if feed is not None and feed.reduction is not None and "reduction" in accepted:
        routed["reduction"] = feed.reduction
    target = entry.class_weights
    if target is None:
        return routed
    if weights is None and fill and accepted[target].required:
        classes = feed.num_classes if feed is not None else routed.get("num_classes")
        if isinstance(classes, int) and classes >= 1:
            weights = [1.0] * classes
            warnings.warn(
                f"Loss {entry.name!r} requires {target!r} (its per-class weights) and none were "
                f"given; using uniform weights ({weights!r}). Pass class_weights=... to the "
                "model or the weights in its loss kwargs.",
                UserWarning,
                stacklevel=user_stacklevel(),
            )
    if weights is not None:
        routed[target] = class_weights_argument(
            feed, weights, broadcast=entry.class_weights_broadcast
        )
    return routed


def _setting_problem(
    module: nn.Module, entry: LossEntry | None, spec: LossSpec | None, feed: LossFeed
) -> str | None:
    """A value the loss was built with that cannot work for this caller, which needs one
    number per step and feeds ``feed.num_classes`` classes."""
    # a loss whose settings fix the channels it takes (a segmentation mode) says why not
    channel_problem: Any = getattr(module, "channel_problem", None)
    knows_channels = feed.class_dim is None or (feed.class_dim == 1 and feed.num_classes)
    if channel_problem is not None and knows_channels:
        problem: str | None = channel_problem(feed.num_classes if feed.class_dim else None)
        if problem is not None:
            return problem
    if getattr(module, "reduction", None) == "none":
        return (
            "it is set to reduction='none', and the caller trains on one number per step: "
            "leave the reduction at its default, or use 'mean' or 'sum'"
        )
    if entry is None or spec is None or not entry.class_weights or entry.class_weights_broadcast:
        return None
    weights = spec.params.get(entry.class_weights)
    classes = feed.num_classes
    if (
        isinstance(weights, (list, tuple))
        and isinstance(classes, int)
        and classes > 1
        and len(weights) != classes
    ):
        return (
            f"its {entry.class_weights} has {len(weights)} values, one per class, and this "
            f"prediction has {classes} classes"
        )
    return None


def _mismatch(
    problem: str,
    given: LossLike,
    module: nn.Module,
    entry: LossEntry | None,
    takes: LossTakes | None,
    feed: LossFeed,
    argument: str,
    owner: str,
) -> LossMismatchError:
    label = entry.name if entry is not None else type(module).__name__
    shown = label if not isinstance(given, str) else given
    fitting = fitting_losses(feed, get_loss_registry())
    takes_text = takes.describe() if takes is not None else "what it is fed"
    message = (
        f"{owner} cannot use {argument}={shown!r}: {problem}. {owner} feeds {argument} "
        f"{feed.describe()}; {label} takes {takes_text}. "
        f"Registered losses that fit {argument}: {', '.join(fitting) or '(none)'}."
    )
    return LossMismatchError(message, argument=argument, loss=label, fitting=fitting)


def _flat(weights: Sequence[float] | Tensor) -> list[Any]:
    if isinstance(weights, Tensor):
        return weights.detach().cpu().reshape(-1).tolist()
    return list(weights)

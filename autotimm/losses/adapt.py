"""What a caller feeds a loss, what the loss takes, whether they fit, and the adaptation between.

A model (or a composite loss such as ``fcos``) describes each loss argument it has with a
:class:`LossFeed`: the prediction it computes (raw logits and their layout, boxes, or several
structured inputs) and the targets it holds (class indices, dense targets, boxes). What a loss
takes is a :class:`LossTakes`, read by :func:`takes_of` from its registry entry (``expects``,
``target``, ``class_dim``, ``soft_targets``), where attributes ``expects`` / ``target`` on the
loss instance narrow it (e.g. a region loss built with ``mode="binary"`` takes dense targets).

- :func:`fit_problem` says why a loss cannot take what the caller feeds (or ``None``): callers
  refuse such a loss when they are built, not at the first step.
- :func:`adapt_to_loss` turns the fed prediction and targets into what the loss takes (softmax
  or sigmoid probabilities, one-hot targets, ...), once per call.
- :func:`fitting_losses` lists the registered losses that fit a feed (for error messages and
  the models page of the docs).

Nothing here knows a loss by name: everything is read from the metadata above.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autotimm.losses._entry import LossEntry
from autotimm.losses._types import (
    INPUT_KINDS,
    TARGET_KINDS,
    TASKS,
    ClassDim,
    InputKind,
    Reduction,
    TargetKind,
    Task,
)

__all__ = [
    "LossFeed",
    "LossTakes",
    "adapt_to_loss",
    "class_weights_argument",
    "fit_problem",
    "fitting_losses",
    "takes_of",
]


@dataclasses.dataclass(frozen=True)
class LossFeed:
    """What a caller feeds one loss argument: its prediction, its targets, its needs.

    Attributes:
        task: The caller's task (a loss registered only for other tasks gets a warning).
        target: What the caller holds as target: ``"class_indices"`` (integer labels),
            ``"dense"`` (multi-hot vectors, binary masks, one-hot rows; the prediction's
            shape), ``"boxes"`` or ``"structured"`` (several named inputs).
        prediction: The prediction's dimensions, e.g. ``("N", "C")``, ``("B", "C", "H", "W")``
            or ``("N", "H", "W")``; ``"C"`` marks the class dimension (none: independent
            binary logits, e.g. instance masks). With ``target="class_indices"`` the targets
            are the prediction's shape without ``C``.
        num_classes: The size of the class dimension, when known.
        ignore_index: The target label that is left out (class-index targets).
        soft_targets: The dense targets are class probabilities (e.g. mixed-up labels), not
            0/1 values.
        reduction: The reduction the caller needs (``"sum"`` when it normalises the loss
            itself, as the FCOS criterion does); a loss given by name is built with it.
        inputs: How many positional inputs the caller passes (2: prediction and target).
        note: What the caller wants a reader of its messages to know about this feed, in its
            own words (e.g. ``"multi_label=True"``).
        multi_label: The dense targets may mark several classes of one sample (multi-hot
            vectors, also mixed up, when they are soft but not class probabilities): a loss
            that takes class indices (one class per sample) does not fit them.

    Example:
        >>> feed = LossFeed(task="segmentation", target="class_indices",
        ...                 prediction=("B", "C", "H", "W"), num_classes=3, ignore_index=255)
        >>> feed.class_dim, feed.describe()
        (1, 'logits [B, C, H, W] (C = 3) and class indices [B, H, W] (ignore_index 255)')
    """

    task: Task
    target: TargetKind
    prediction: tuple[str, ...]
    num_classes: int | None = None
    ignore_index: int | None = None
    soft_targets: bool = False
    reduction: Reduction | None = None
    inputs: int = 2
    note: str = ""
    multi_label: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"LossFeed task must be one of {TASKS}; got {self.task!r}")
        if self.target not in TARGET_KINDS:
            raise ValueError(f"LossFeed target must be one of {TARGET_KINDS}; got {self.target!r}")
        if self.prediction.count("C") > 1:
            raise ValueError(f"LossFeed prediction has more than one 'C': {self.prediction}")
        if self.target == "class_indices" and self.class_dim is None:
            raise ValueError("LossFeed: class-index targets need a class dimension 'C'")

    @property
    def class_dim(self) -> int | None:
        """The index of the class dimension in the prediction, or ``None``."""
        return self.prediction.index("C") if "C" in self.prediction else None

    def describe(self) -> str:
        """What the caller feeds, in words (for error messages and the docs)."""
        return self._describe() + (f" ({self.note})" if self.note else "")

    def _describe(self) -> str:
        if self.target == "structured":
            return f"{self.inputs} structured inputs"
        layout = f"[{', '.join(self.prediction)}]"
        if self.target == "boxes":
            return f"boxes {layout} and target boxes {layout}"
        classes = (
            ""
            if self.num_classes is None or self.class_dim is None
            else (f" (C = {self.num_classes})")
        )
        if self.target == "class_indices":
            labels = [d for d in self.prediction if d != "C"]
            ignore = "" if self.ignore_index is None else f" (ignore_index {self.ignore_index})"
            values = " in {0, 1}" if self.num_classes == 1 else ""
            return (
                f"logits {layout}{classes} and class indices [{', '.join(labels)}]{values}{ignore}"
            )
        what = "soft targets" if self.soft_targets else "0/1 targets"
        return f"logits {layout}{classes} and {what} {layout}"


@dataclasses.dataclass(frozen=True)
class LossTakes:
    """What a loss takes (see :func:`autotimm.losses.register_loss` for each field).

    Example:
        >>> LossTakes(expects="probabilities", target="dense").describe()
        'probabilities [N, C, ...] and dense targets of that shape'
    """

    expects: InputKind = "logits"
    target: TargetKind = "class_indices"
    class_dim: ClassDim = 1
    soft_targets: bool = False

    def describe(self) -> str:
        """What the loss takes, in words."""
        if self.target == "structured":
            return "structured inputs"
        if self.target == "boxes":
            return "boxes [..., 4] and target boxes [..., 4]"
        layout, labels = (
            ("[N, C, ...]", "[N, ...]") if self.class_dim == 1 else ("[..., C]", "[...]")
        )
        if self.target == "class_indices":
            soft = " (or class probabilities of that shape)" if self.soft_targets else ""
            return f"{self.expects} {layout} and class indices {labels}{soft}"
        soft = " (soft targets too)" if self.soft_targets else ""
        return f"{self.expects} {layout} and dense targets of that shape{soft}"


def takes_of(loss: nn.Module | None, entry: LossEntry | None) -> LossTakes | None:
    """What ``loss`` takes: its entry's metadata, narrowed by the instance's own ``expects`` /
    ``target`` attributes (or properties) where it has them.

    ``None`` for an instance of an unregistered class that declares neither: it is called with
    what its caller feeds, as fed. ``loss`` may be ``None`` to read an entry alone.

    Raises:
        ValueError: an ``expects`` or ``target`` attribute that is a string outside the
            vocabulary (non-string attributes of those names are not declarations).

    Example:
        >>> from autotimm.losses import get_entry
        >>> takes_of(None, get_entry("nll")).expects
        'log_probabilities'
    """
    expects = _declared(loss, "expects", INPUT_KINDS)
    target = _declared(loss, "target", TARGET_KINDS)
    if entry is None:
        if expects is None and target is None:
            return None
        return LossTakes(expects=expects or "logits", target=target or "class_indices")
    return LossTakes(
        expects=expects or entry.expects,
        target=target or entry.target,
        class_dim=entry.class_dim,
        soft_targets=entry.soft_targets,
    )


def _declared(loss: nn.Module | None, name: str, allowed: tuple[str, ...]) -> Any:
    value = getattr(loss, name, None) if loss is not None else None
    if not isinstance(value, str):
        return None
    if value not in allowed:
        raise ValueError(
            f"{type(loss).__name__}.{name} = {value!r} is not a {name} kind; expected one of "
            f"{', '.join(map(repr, allowed))}"
        )
    return value


def fit_problem(
    feed: LossFeed,
    takes: LossTakes | None,
    *,
    forward: Callable[..., Any] | None = None,
    num_classes: int | None = None,
) -> str | None:
    """Why a loss that takes ``takes`` cannot take what ``feed`` feeds, or ``None`` if it can.

    Args:
        feed: What the caller feeds.
        takes: What the loss takes (``None``: undeclared, called with the feed as fed).
        forward: The loss's ``forward`` (bound, or the class's function): it must accept the
            caller's ``feed.inputs`` positional inputs.
        num_classes: The loss's own ``num_classes`` argument, if set: it must be the feed's.

    Example:
        >>> from autotimm.losses import get_entry
        >>> feed = LossFeed(task="segmentation", target="class_indices",
        ...                 prediction=("B", "C", "H", "W"), num_classes=3)
        >>> fit_problem(feed, takes_of(None, get_entry("dice"))) is None
        True
        >>> fit_problem(feed, takes_of(None, get_entry("focal")))
        'it reads the classes in the last dimension ([..., C]), but this prediction, ...'
    """
    if takes is not None:
        problem = _kind_problem(feed, takes, num_classes)
    elif feed.target == "class_indices" and feed.num_classes == 1:
        # called as fed, it would get class indices for one channel, which no loss can use
        problem = (
            "it declares no target kind, so it would be called with class indices, which a "
            "one-channel prediction cannot use; declare target='dense' (register it, or give "
            "its class a target attribute) to get the channel's 0/1 targets"
        )
    else:
        problem = None
    if problem is None and forward is not None and not _accepts(forward, feed.inputs):
        problem = (
            f"its forward{_signature(forward)} cannot be called with the {feed.inputs} "
            "positional inputs this caller passes"
        )
    return problem


def _kind_problem(feed: LossFeed, takes: LossTakes, num_classes: int | None) -> str | None:
    if feed.target in ("boxes", "structured") or takes.target in ("boxes", "structured"):
        if takes.target != feed.target:
            return f"it takes {_kind(takes.target)}, not {_kind(feed.target)}"
        return None
    if takes.target == "class_indices":
        if feed.target == "dense" and feed.multi_label and feed.soft_targets:
            return (
                "it takes class indices (one class per sample), and this caller's targets "
                "are mixed multi-hot vectors (several classes per sample)"
            )
        if feed.target == "dense" and not (feed.soft_targets and takes.soft_targets):
            return "it takes class indices, and this caller's targets are dense " + (
                "class probabilities, which it does not take"
                if feed.soft_targets
                else "(0/1 per class or pixel), not one class per sample"
            )
        if feed.num_classes == 1:
            return (
                "it takes class indices (one class out of C), but the prediction has one "
                "channel, and a softmax over one channel is constant: it would train on nothing"
            )
    elif feed.soft_targets and not takes.soft_targets:
        return "the targets are soft (class probabilities), which it does not take"
    if feed.class_dim is not None:
        rank = len(feed.prediction)
        if takes.class_dim % rank != feed.class_dim:
            where = (
                "in dimension 1 ([N, C, ...])"
                if takes.class_dim == 1
                else ("in the last dimension ([..., C])")
            )
            return (
                f"it reads the classes {where}, but this prediction, "
                f"[{', '.join(feed.prediction)}], has them in dimension {feed.class_dim}"
            )
    if num_classes is not None:
        if feed.class_dim is None:
            return (
                f"it is set to num_classes={num_classes}, but this prediction has no class "
                "dimension"
            )
        if feed.num_classes is not None and num_classes != feed.num_classes:
            return (
                f"it is set to num_classes={num_classes}, but this prediction has "
                f"{feed.num_classes} classes"
            )
    return None


def fitting_losses(feed: LossFeed, entries: Iterable[LossEntry]) -> list[str]:
    """The names of the ``entries`` whose metadata fits ``feed`` (built with their defaults).

    A loss built for its caller (``weighted_sum``: :attr:`LossEntry.builds_for_caller`) fits
    whatever its parts fit, so it is not listed.

    Example:
        >>> from autotimm.losses import get_loss_registry
        >>> fitting_losses(LossFeed(task="detection", target="boxes", prediction=("N", "4")),
        ...                get_loss_registry())
        ['ciou', 'diou', 'giou', 'iou', 'l1', 'smooth_l1']
    """
    return sorted(
        entry.name
        for entry in entries
        if not entry.builds_for_caller
        and fit_problem(feed, takes_of(None, entry), forward=entry.loss_class.forward) is None
    )


def adapt_to_loss(
    feed: LossFeed, takes: LossTakes | None, prediction: Tensor, target: Tensor
) -> tuple[Tensor, Tensor]:
    """Turn what ``feed`` feeds into what a loss that takes ``takes`` takes.

    - prediction: ``logits`` as fed; ``probabilities``: a softmax over the class dimension for
      a loss that takes class indices (mutually exclusive classes), else a sigmoid;
      ``log_probabilities``: log-softmax or log-sigmoid likewise.
    - target: class indices become floats of the prediction's shape for a loss that takes
      dense targets: one-hot vectors along the class dimension (labels equal to
      ``ignore_index`` get an all-zero vector), or, for a one-channel prediction, 1 where the
      label is 1; dense targets become floats of the prediction's dtype; anything else (and
      everything for boxes, structured inputs or ``takes=None``) is passed as fed.

    A class index outside ``[0, C)`` that is not ``ignore_index`` is a ``ValueError`` (a
    one-hot vector cannot hold it). The caller has checked the fit (:func:`fit_problem`).

    Example:
        >>> from autotimm.losses import get_entry
        >>> feed = LossFeed(task="classification", target="class_indices",
        ...                 prediction=("N", "C"), num_classes=3)
        >>> p, t = adapt_to_loss(feed, takes_of(None, get_entry("bce")), torch.zeros(2, 3),
        ...                      torch.tensor([0, 2]))
        >>> p[0, 0].item(), t.tolist()
        (0.5, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    """
    if takes is None or feed.target in ("boxes", "structured"):
        return prediction, target
    class_dim = feed.class_dim
    # exclusive classes (a loss that takes class indices): softmax; otherwise sigmoid
    softmax_dim = class_dim if takes.target == "class_indices" else None
    if takes.expects == "probabilities":
        prediction = (
            prediction.sigmoid() if softmax_dim is None else prediction.softmax(softmax_dim)
        )
    elif takes.expects == "log_probabilities":
        prediction = (
            F.logsigmoid(prediction) if softmax_dim is None else prediction.log_softmax(softmax_dim)
        )
    if takes.target == "dense":
        if feed.target == "class_indices" and class_dim is not None:
            target = _dense_targets(target, prediction, class_dim, feed.ignore_index)
        target = target.to(prediction.dtype)
    return prediction, target


def _dense_targets(
    target: Tensor, prediction: Tensor, class_dim: int, ignore_index: int | None
) -> Tensor:
    classes = int(prediction.shape[class_dim])
    ignored = (
        target == ignore_index
        if ignore_index is not None
        else torch.zeros_like(target, dtype=torch.bool)
    )
    if not torch.compiler.is_compiling():
        high = 2 if classes == 1 else classes
        bad = target[~ignored & ((target < 0) | (target >= high))]
        if bad.numel():
            allowed = "0 or 1" if classes == 1 else f"in [0, {classes})"
            raise ValueError(
                f"class index {int(bad[0])} cannot become a dense target: labels must be "
                f"{allowed}" + ("" if ignore_index is None else f" or ignore_index={ignore_index}")
            )
    if classes == 1:  # one channel: the logit of class 1 against the rest
        return ((target == 1) & ~ignored).unsqueeze(class_dim).float()
    one_hot = F.one_hot(torch.where(ignored, 0, target).long(), classes)
    one_hot = one_hot * (~ignored).unsqueeze(-1)
    return one_hot.movedim(-1, class_dim).float()


def class_weights_argument(
    feed: LossFeed | None, weights: Sequence[float], *, broadcast: bool
) -> list[Any]:
    """Per-class weights as the loss's per-class weight parameter takes them (plain lists).

    A ``[C]`` list, or with ``broadcast`` one shaped to broadcast along the feed's class
    dimension (``[C, 1, 1]`` for ``[B, C, H, W]``).

    Example:
        >>> feed = LossFeed(task="segmentation", target="class_indices",
        ...                 prediction=("B", "C", "H", "W"), num_classes=2)
        >>> class_weights_argument(feed, [1.0, 3.0], broadcast=True)
        [[[1.0]], [[3.0]]]
    """
    shaped: list[Any] = [float(w) for w in weights]
    if not broadcast or feed is None or feed.class_dim is None:
        return shaped
    for _ in range(len(feed.prediction) - feed.class_dim - 1):
        shaped = [[w] for w in shaped]
    return shaped


# ---------------------------------------------------------------------- helpers
def _accepts(forward: Callable[..., Any], inputs: int) -> bool:
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):  # a builtin without a signature: assume it does
        return True
    parameters = list(signature.parameters.values())
    if not inspect.ismethod(forward) and parameters and parameters[0].name == "self":
        signature = signature.replace(parameters=parameters[1:])
    try:
        signature.bind(*range(inputs))
    except TypeError:
        return False
    return True


def _signature(forward: Callable[..., Any]) -> str:
    try:
        parameters = [p for p in inspect.signature(forward).parameters.values() if p.name != "self"]
    except (TypeError, ValueError):
        return ""
    return (
        "("
        + ", ".join(str(p.replace(annotation=inspect.Parameter.empty)) for p in parameters)
        + ")"
    )


def _kind(target: TargetKind) -> str:
    return {
        "class_indices": "class indices",
        "dense": "dense targets",
        "boxes": "boxes",
        "structured": "structured inputs",
    }[target]

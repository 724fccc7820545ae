"""The loss registry: register a loss by decorator, get it back by name with validated kwargs.

>>> import torch.nn as nn
>>> from autotimm.losses import get_loss_registry, register_loss
>>> with get_loss_registry().temporary():
...     @register_loss(task="segmentation", alias="scaled")
...     class ScaledL1Loss(nn.Module):
...         def __init__(self, scale: float = 1.0) -> None:
...             super().__init__()
...             self.scale = scale
...     get_loss_registry().get_loss("scaled", scale=2.0).scale
2.0

Everything about one loss is its :class:`LossEntry` (``_entry.py``: validate, build, read an
instance back); :class:`LossRegistry` maps names and aliases to entries, and this module also
holds the global registry and its functions. Errors are in :mod:`autotimm.losses.errors`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.metadata
import re
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from torch import nn

from autotimm.losses._entry import LossEntry
from autotimm.losses._parameters import constructor_of, plain_text
from autotimm.losses._stack import user_stacklevel
from autotimm.losses._typed_lookups import TypedLookups
from autotimm.losses._types import (
    CLASS_DIMS,
    INPUT_KINDS,
    TARGET_KINDS,
    TASKS,
    ClassDim,
    InputKind,
    TargetKind,
    Task,
)
from autotimm.losses.errors import LossRegistrationError, UnknownLossError

__all__ = [
    "LossRegistry",
    "describe",
    "get_entry",
    "get_loss",
    "get_loss_class",
    "get_loss_registry",
    "get_schema",
    "list_available_losses",
    "register_custom_loss",
    "register_loss",
]

M = TypeVar("M", bound=nn.Module)
CUSTOM = "custom"
"""The ``get_loss_info`` key (and ``list_losses`` task filter) of losses with no task."""
PLUGIN_GROUP = "autotimm.losses"
"""Entry-point group through which installed packages contribute losses."""


class LossRegistry(TypedLookups):
    """A thread-safe map from loss names and aliases to :class:`LossEntry`.

    Use the global instance from :func:`get_loss_registry`; separate instances are for tests.
    For type checkers ``get_loss`` and ``get_loss_class`` have one overload per built-in name
    (generated into :class:`TypedLookups`), so editors infer the loss class.
    """

    def __init__(self, *, plugin_group: str | None = None) -> None:
        self._lock = threading.RLock()
        self._entries: dict[str, LossEntry] = {}
        self._aliases: dict[str, str] = {}
        self._plugin_group = plugin_group
        self._plugins_loaded = plugin_group is None
        # what each plugin registered, so that a reset (``temporary``) can restore it without
        # re-importing a module whose decorators will not run a second time
        self._plugin_entries: dict[str, list[LossEntry]] | None = None

    # ------------------------------------------------------------------ registration
    def register_loss(
        self,
        name: str,
        loss_class: type[nn.Module],
        alias: str | Sequence[str] | None = None,
        *,
        task: Task | Sequence[Task] | None = None,
        override: bool = False,
        expects: InputKind = "logits",
        target: TargetKind = "class_indices",
        class_dim: ClassDim = 1,
        soft_targets: bool = False,
        class_weights: str | None = None,
        class_weights_broadcast: bool = False,
    ) -> LossEntry:
        """Register ``loss_class`` under ``name`` (and ``alias``); return its entry.

        ``expects``, ``target``, ``class_dim``, ``soft_targets``, ``class_weights`` and
        ``class_weights_broadcast`` say what the loss takes (see :func:`register_loss`); each is
        checked here. ``class_weights`` must name a parameter of the constructor; left
        ``None``, it is the parameter called ``class_weights`` if there is one.

        Re-registering the same class (same module and qualified name, as after a module reload
        or a re-run notebook cell) replaces its entry, aliases included; anything else that
        would replace or shadow an existing name needs ``override=True``. The class itself is
        never modified.

        Raises:
            LossRegistrationError: a name collision, or a constructor the registry cannot
                validate (a positional-only parameter, an annotation that does not resolve).
            ValueError: an unknown ``task``, ``expects``, ``target`` or ``class_dim``; a
                ``soft_targets`` or ``class_weights_broadcast`` that is not a bool; a
                ``class_weights`` that names no parameter of the constructor.

        Example:
            >>> import torch.nn as nn
            >>> registry = LossRegistry()
            >>> registry.register_loss("l1", nn.L1Loss, alias="mae", task="classification").aliases
            ('mae',)
        """
        _check_loss_class(loss_class)
        _check_name(name, "name")
        aliases = _as_tuple(alias, "alias")
        entry = LossEntry(
            name=name,
            loss_class=loss_class,
            tasks=_as_tasks(task),
            aliases=aliases,
            expects=_check_kind(expects, "expects", INPUT_KINDS),
            target=_check_kind(target, "target", TARGET_KINDS),
            defined_at=_defined_at(loss_class),
            class_dim=_check_class_dim(class_dim),
            soft_targets=_check_flag(soft_targets, "soft_targets"),
            class_weights_broadcast=_check_flag(class_weights_broadcast, "class_weights_broadcast"),
        )
        # read the constructor now: refuse what cannot be validated
        entry = _with_class_weights(entry, class_weights)
        with self._lock:
            existing = self._lookup(name)
            if existing is not None and existing.name != name:
                self._refuse(override, f"{name!r} is already an alias of", existing)
            if existing is not None and existing.name == name and not _same_class(existing, entry):
                self._refuse(override, f"the name {name!r} is already taken by", existing)
            for a in aliases:
                if a == name:
                    raise LossRegistrationError(f"alias {a!r} is the same as the loss name")
                owner = self._lookup(a)
                if owner is not None and owner.name != name:
                    self._refuse(override, f"the alias {a!r} is already used by", owner)
            self._insert(entry)
        return entry

    def _insert(self, entry: LossEntry) -> None:
        if entry.name in self._entries:  # replaced as a whole: its old aliases go too
            self._remove(entry.name)
        for alias in entry.aliases:  # with override=True an alias may move from another loss
            owner = self._aliases.pop(alias, None)
            if owner is not None and owner in self._entries:
                old = self._entries[owner]
                self._entries[owner] = dataclasses.replace(
                    old, aliases=tuple(a for a in old.aliases if a != alias)
                )
            self._aliases[alias] = entry.name
        self._entries[entry.name] = entry

    def _remove(self, name: str) -> LossEntry:
        entry = self._entries.pop(name)
        for alias in entry.aliases:
            self._aliases.pop(alias, None)
        return entry

    @staticmethod
    def _refuse(override: bool, what: str, existing: LossEntry) -> None:
        if not override:
            raise LossRegistrationError(
                f"Cannot register: {what} loss {existing.name!r} "
                f"({existing.loss_class.__qualname__}, defined at {existing.defined_at}). "
                "Pass override=True to replace it, or choose another name."
            )

    def unregister(self, name: str) -> LossEntry:
        """Remove a loss (given by name or alias) and all its aliases; return its entry."""
        with self._lock:
            return self._remove(self.get_entry(name).name)

    @contextlib.contextmanager
    def temporary(self) -> Iterator[LossRegistry]:
        """Restore the registry's current state on exit (for tests and notebooks).

        Example:
            >>> registry = get_loss_registry()
            >>> with registry.temporary():
            ...     _ = registry.unregister("dice")
            >>> registry.has_loss("dice")
            True
        """
        with self._lock:
            saved = (dict(self._entries), dict(self._aliases), self._plugins_loaded)
        try:
            yield self
        finally:
            with self._lock:
                self._entries, self._aliases, self._plugins_loaded = saved

    # ------------------------------------------------------------------ lookup
    def _lookup(self, name: str) -> LossEntry | None:
        entry = self._entries.get(name)
        if entry is None and name in self._aliases:
            entry = self._entries.get(self._aliases[name])
        return entry

    def get_entry(self, name: str) -> LossEntry:
        """The entry for a name or alias.

        Raises:
            UnknownLossError: a ``ValueError`` naming the closest registered names.
            TypeError: ``name`` is not a string (e.g. a loss class or ``None``).
        """
        if not isinstance(name, str):
            raise TypeError(_not_a_name(name))
        entry = self._lookup(name)
        if entry is None:
            self._load_plugins()
            entry = self._lookup(name)
        if entry is None:
            raise UnknownLossError(self._unknown_message(name))
        return entry

    def _unknown_message(self, name: str) -> str:
        with self._lock:
            known = sorted([*self._entries, *self._aliases])
        message = f"Unknown loss {name!r}."
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        return message + f" Available losses: {', '.join(self.list_losses())}."

    if not TYPE_CHECKING:  # type checkers read the generated overloads of TypedLookups instead

        def get_loss(self, name: str, /, **kwargs: Any) -> nn.Module:
            """Validate ``kwargs`` against the loss's schema, then instantiate it.

            Only the arguments you pass reach the constructor, so the class keeps its own
            defaults. Exceptions raised by the loss's own ``__init__`` propagate unchanged.

            Raises:
                UnknownLossError: ``name`` is neither a name nor an alias (with suggestions).
                LossConfigError: arguments are unknown, mistyped, out of range or missing.
                TypeError: ``name`` is not a string.

            Example:
                >>> dice = get_loss_registry().get_loss("dice", num_classes=10, smooth=1.0)
                >>> type(dice).__name__
                'DiceLoss'
            """
            return self.get_entry(name).build(**kwargs)

        def get_loss_class(self, name: str, /) -> type[nn.Module]:
            """The class registered under a name or alias: construct it fully type-checked.

            Example:
                >>> get_loss_registry().get_loss_class("ce").__name__
                'CrossEntropyLoss'
            """
            return self.get_entry(name).loss_class

    def has_loss(self, name: str) -> bool:
        """Whether ``name`` is a registered loss name or alias."""
        try:
            self.get_entry(name)
        except UnknownLossError:
            return False
        return True

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.has_loss(name)

    def get_schema(self, name: str) -> type[BaseModel]:
        """The pydantic model of a loss's constructor parameters (``.model_json_schema()``)."""
        return self.get_entry(name).schema

    def entry_for_class(self, loss_class: type) -> LossEntry | None:
        """The entry whose class is ``loss_class`` (the first registered), if any."""
        with self._lock:
            entries = list(self._entries.values())
        return next((e for e in entries if e.loss_class is loss_class), None)

    # ------------------------------------------------------------------ listing
    def list_losses(self, task: str | None = None) -> list[str]:
        """Sorted loss names (aliases excluded), optionally only those registered for ``task``.

        ``task`` is ``"classification"``, ``"detection"``, ``"segmentation"`` or ``"custom"``
        (losses registered without a task).
        """
        if task is not None and task not in (*TASKS, CUSTOM):
            raise ValueError(
                f"Unknown task {task!r}; expected one of {', '.join(map(repr, (*TASKS, CUSTOM)))}."
            )
        self._load_plugins()
        with self._lock:
            entries = list(self._entries.values())
        if task is None:
            return sorted(e.name for e in entries)
        if task == CUSTOM:
            return sorted(e.name for e in entries if not e.tasks)
        return sorted(e.name for e in entries if task in e.tasks)

    def get_loss_info(self) -> dict[str, list[str]]:
        """Task name to sorted loss names; losses without a task are under ``"custom"``."""
        info: dict[str, list[str]] = {task: self.list_losses(task) for task in TASKS}
        custom = self.list_losses(CUSTOM)
        if custom:
            info[CUSTOM] = custom
        return info

    def describe(self, name: str) -> str:
        """A human-readable summary of a loss: tasks, aliases, inputs and parameter table."""
        entry = self.get_entry(name)
        summary = plain_text(entry.loss_class.__doc__ or "").strip().splitlines()
        if entry.builds_for_caller:  # what it takes is what its parts take
            takes = ["  expects:  what its caller feeds; each part gets what it takes"]
        else:
            takes = [
                f"  expects:  {entry.expects} (targets: {entry.target}"
                + (", soft targets too)" if entry.soft_targets else ")"),
                f"  classes:  {'[N, C, ...]' if entry.class_dim == 1 else '[..., C]'}; "
                f"per-class weights: {entry.class_weights or '-'}"
                + (" (broadcast)" if entry.class_weights_broadcast else ""),
            ]
        lines = [
            f"{entry.name}: {entry.class_path}",
            *([f"  {summary[0]}"] if summary else []),
            f"  tasks:    {', '.join(entry.tasks) or CUSTOM}",
            f"  aliases:  {', '.join(entry.aliases) or '-'}",
            *takes,
            f"  defined:  {entry.defined_at}",
            "  parameters:",
        ]
        for p in entry.parameters:
            default = "required" if p.required else f"= {p.default!r}"
            lines.append(f"    {p.name}: {p.type} {default}")
            if p.description:
                lines.append(f"        {plain_text(p.description)}")
        if not entry.parameters:
            lines.append("    (none)")
        return "\n".join(lines)

    def __iter__(self) -> Iterator[LossEntry]:
        self._load_plugins()
        with self._lock:
            return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self.list_losses())

    # ------------------------------------------------------------------ plugins
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded:
                return
            self._plugins_loaded = True
            if self._plugin_entries is not None:  # loaded before: restore, don't re-import
                for entries in self._plugin_entries.values():
                    for entry in entries:
                        if self._lookup(entry.name) is None:
                            self._insert(entry)
                return
            self._plugin_entries = {}
            assert self._plugin_group is not None
            for point in importlib.metadata.entry_points(group=self._plugin_group):
                self._plugin_entries[point.name] = self._load_plugin(point)

    def _load_plugin(self, point: importlib.metadata.EntryPoint) -> list[LossEntry]:
        """Import one entry point: a loss class, a module that registers losses on import, or
        a function that takes the registry. Whatever goes wrong is one warning, never an exit."""
        before = set(self._entries)
        try:
            loaded = point.load()
            if isinstance(loaded, type) and issubclass(loaded, nn.Module):
                if self.entry_for_class(loaded) is None:
                    self.register_loss(point.name, loaded)
            elif callable(loaded) and not isinstance(loaded, type):
                loaded(self)
            elif not isinstance(loaded, types.ModuleType):
                raise TypeError(
                    f"it resolves to {loaded!r}, which is not a loss class (an nn.Module "
                    "subclass), a module that registers losses, or a function taking the registry"
                )
        except (Exception, SystemExit) as error:  # a plugin calling sys.exit must not end us
            dist = point.dist.name if point.dist is not None else "an unknown distribution"
            warnings.warn(
                f"Loss plugin {point.name!r} ({point.value}) from {dist} failed to load and "
                f"was skipped: {type(error).__name__}: {error}",
                RuntimeWarning,
                stacklevel=user_stacklevel(),
            )
        return [self._entries[n] for n in self._entries.keys() - before]


# ---------------------------------------------------------------------- helpers
def _check_loss_class(loss_class: object) -> None:
    if not (isinstance(loss_class, type) and issubclass(loss_class, nn.Module)):
        raise TypeError(
            f"A loss must be a subclass of torch.nn.Module; got {loss_class!r}. "
            "Wrap a loss function in an nn.Module whose forward calls it."
        )


def _check_name(name: object, what: str) -> None:
    if not isinstance(name, str) or not name or any(ch.isspace() for ch in name):
        raise ValueError(f"A loss {what} must be a non-empty string without spaces; got {name!r}.")


_K = TypeVar("_K", bound=str)


def _check_kind(value: _K, what: str, allowed: tuple[_K, ...]) -> _K:
    if value not in allowed:
        expected = ", ".join(map(repr, allowed))
        raise ValueError(f"Unknown {what} {value!r}; expected one of {expected}.")
    return value


def _check_class_dim(value: object) -> ClassDim:
    if isinstance(value, bool) or value not in CLASS_DIMS:
        raise ValueError(
            f"Unknown class_dim {value!r}; expected 1 (classes in dimension 1, [N, C, ...]) or "
            "-1 (classes last, [..., C])."
        )
    return value


def _check_flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be True or False; got {value!r}.")
    return value


def _with_class_weights(entry: LossEntry, class_weights: str | None) -> LossEntry:
    """``entry`` with its per-class weight parameter checked against the constructor (or, if
    not declared, the parameter named ``class_weights`` when there is one)."""
    names = [p.name for p in entry.parameters]  # reads (and checks) the constructor
    if class_weights is None:
        class_weights = "class_weights" if "class_weights" in names else None
    elif not isinstance(class_weights, str) or class_weights not in names:
        close = difflib.get_close_matches(str(class_weights), names, n=1, cutoff=0.5)
        raise LossRegistrationError(
            f"class_weights={class_weights!r} must name the constructor parameter of "
            f"{entry.loss_class.__qualname__} that takes one weight per class; its parameters "
            f"are {', '.join(names) or '(none)'}"
            + (f"; did you mean {close[0]!r}?" if close else ".")
        )
    if entry.class_weights_broadcast and class_weights is None:
        raise LossRegistrationError(
            f"class_weights_broadcast=True needs class_weights: the parameter of "
            f"{entry.loss_class.__qualname__} that takes the per-class weights."
        )
    if class_weights == entry.class_weights:
        return entry
    return dataclasses.replace(entry, class_weights=class_weights)


def _as_tuple(alias: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if alias is None:
        return ()
    aliases = (alias,) if isinstance(alias, str) else tuple(alias)
    for a in aliases:
        _check_name(a, what)
    return aliases


def _as_tasks(task: Task | Sequence[Task] | None) -> tuple[Task, ...]:
    tasks = () if task is None else (task,) if isinstance(task, str) else tuple(task)
    for t in tasks:
        if t not in TASKS:
            raise ValueError(
                f"Unknown task {t!r}; expected one of {', '.join(map(repr, TASKS))} "
                "(or a tuple of them, or None for a custom loss)."
            )
    return tasks


def _same_class(entry: LossEntry, new: LossEntry) -> bool:
    return entry.loss_class is new.loss_class or entry.class_path == new.class_path


def _defined_at(loss_class: type) -> str:
    """``path:line`` of the class: the line of its own constructor or, for a class that
    inherits it (``DiceLoss``), of the first function in its body (no source is read)."""
    module = sys.modules.get(loss_class.__module__)
    path = getattr(module, "__file__", None) or loss_class.__module__
    own = [constructor_of(loss_class)] if "__init__" in vars(loss_class) else []
    own += [v for k, v in vars(loss_class).items() if k != "__init__" and callable(v)]
    code = next((f.__code__ for f in own if hasattr(f, "__code__")), None)
    return f"{path}:{code.co_firstlineno}" if code is not None else path


def _not_a_name(name: object) -> str:
    if isinstance(name, type) and issubclass(name, nn.Module):
        return (
            f"A loss name (str) is expected; got the class {name.__qualname__}. Pass its "
            f"registry name, or register it first, e.g. register_custom_loss('my_loss', "
            f"{name.__qualname__}); a model also accepts an instance, {name.__qualname__}(...)."
        )
    return f"A loss name (str) is expected; got {name!r} ({type(name).__name__})."


def _default_name(class_name: str) -> str:
    """``FocalTverskyLoss`` -> ``focal_tversky``; ``BCEWithLogitsLoss`` -> ``bce_with_logits``."""
    stem = class_name[:-4] if class_name.endswith("Loss") and class_name != "Loss" else class_name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", stem).lower()


# ---------------------------------------------------------------------- the global registry
_REGISTRY = LossRegistry(plugin_group=PLUGIN_GROUP)


def get_loss_registry() -> LossRegistry:
    """The global loss registry.

    Example:
        >>> get_loss_registry().has_loss("dice")
        True
    """
    return _REGISTRY


def register_loss(
    name: str | None = None,
    *,
    task: Task | Sequence[Task] | None,
    alias: str | Sequence[str] | None = None,
    override: bool = False,
    expects: InputKind = "logits",
    target: TargetKind = "class_indices",
    class_dim: ClassDim = 1,
    soft_targets: bool = False,
    class_weights: str | None = None,
    class_weights_broadcast: bool = False,
) -> Callable[[type[M]], type[M]]:
    """Class decorator: register a loss in the global registry and return the class unchanged.

    Models read what a loss takes from its registration: they refuse a loss they cannot feed
    when they are built, and adapt their raw logits and targets to the rest.

    Args:
        name: Registry name; default: the class name in snake_case without a trailing ``Loss``.
        task: ``"classification"``, ``"detection"``, ``"segmentation"``, a tuple of them, or
            ``None`` for a task-agnostic (custom) loss.
        alias: One or more alternative names.
        override: Replace an existing entry with the same name or alias.
        expects: What the loss takes as prediction: logits, probabilities or log-probabilities.
        target: What the loss takes as target (see :data:`autotimm.losses.TargetKind`).
        class_dim: Where it reads the classes of its prediction: ``1`` (``[N, C, ...]``, torch's
            convention) or ``-1`` (``[..., C]``, classes last).
        soft_targets: It also takes soft targets: class probabilities of the prediction's shape
            (a class-index loss) or values strictly between 0 and 1 (a dense loss).
        class_weights: The constructor parameter that takes one weight per class; a model's
            ``class_weights`` reach the loss there. Default: the parameter named
            ``class_weights``, if any.
        class_weights_broadcast: That parameter is broadcast against the prediction (as
            ``torch.nn.BCEWithLogitsLoss(weight=...)``) rather than indexed by class (as
            ``torch.nn.CrossEntropyLoss(weight=...)``); models then shape the weights to their
            class dimension (``[C, 1, 1]`` for ``[B, C, H, W]``).

    Example:
        >>> import torch.nn as nn
        >>> with get_loss_registry().temporary():
        ...     @register_loss(task="detection")
        ...     class MyBoxLoss(nn.Module):
        ...         pass
        ...     get_loss_registry().has_loss("my_box")
        True
    """
    if isinstance(name, type):
        raise TypeError(
            "register_loss needs arguments: use @register_loss(task=...), not @register_loss"
        )

    def decorator(loss_class: type[M]) -> type[M]:
        _check_loss_class(loss_class)
        _REGISTRY.register_loss(
            name or _default_name(loss_class.__name__),
            loss_class,
            alias,
            task=task,
            override=override,
            expects=expects,
            target=target,
            class_dim=class_dim,
            soft_targets=soft_targets,
            class_weights=class_weights,
            class_weights_broadcast=class_weights_broadcast,
        )
        return loss_class

    return decorator


def register_custom_loss(
    name: str,
    loss_class: type[nn.Module],
    alias: str | Sequence[str] | None = None,
    *,
    task: Task | Sequence[Task] | None = None,
    override: bool = False,
    expects: InputKind = "logits",
    target: TargetKind = "class_indices",
    class_dim: ClassDim = 1,
    soft_targets: bool = False,
    class_weights: str | None = None,
    class_weights_broadcast: bool = False,
) -> LossEntry:
    """Register ``loss_class`` globally under ``name`` (same as ``LossRegistry.register_loss``).

    Example:
        >>> import torch.nn as nn
        >>> with get_loss_registry().temporary():
        ...     _ = register_custom_loss("torch_huber", nn.HuberLoss, alias="huber")
        ...     get_loss_registry().get_loss("huber", delta=0.5).delta
        0.5
    """
    return _REGISTRY.register_loss(
        name,
        loss_class,
        alias,
        task=task,
        override=override,
        expects=expects,
        target=target,
        class_dim=class_dim,
        soft_targets=soft_targets,
        class_weights=class_weights,
        class_weights_broadcast=class_weights_broadcast,
    )


def list_available_losses(task: str | None = None) -> list[str]:
    """Sorted names of the registered losses, optionally only those for ``task``.

    Example:
        >>> "dice" in list_available_losses(task="segmentation")
        True
    """
    return _REGISTRY.list_losses(task)


get_loss = _REGISTRY.get_loss
"""Build a registered loss by name or alias with validated kwargs (the global registry)."""

get_loss_class = _REGISTRY.get_loss_class
"""The class registered under a name or alias (typed for every built-in name)."""


def get_schema(name: str) -> type[BaseModel]:
    """The pydantic model of a loss's parameters.

    Example:
        >>> "smooth" in get_schema("dice").model_json_schema()["properties"]
        True
    """
    return _REGISTRY.get_schema(name)


def get_entry(name: str) -> LossEntry:
    """The registry entry of a loss: ``.name``, ``.tasks``, ``.aliases``, ``.loss_class``, ...

    Example:
        >>> get_entry("ce").name
        'cross_entropy'
    """
    return _REGISTRY.get_entry(name)


def describe(name: str) -> str:
    """A human-readable summary of a loss and its parameters.

    Example:
        >>> print(describe("dice").splitlines()[0])
        dice: autotimm.losses.segmentation.DiceLoss
    """
    return _REGISTRY.describe(name)

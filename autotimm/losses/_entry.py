"""``LossEntry``: everything the registry knows about one loss, and what it does with it.

The constructor's signature is read (and checked) at registration by :mod:`._parameters`; its
pydantic model is built on first use by :mod:`._schema`. An entry validates arguments, builds
the loss (recording the validated arguments on it), reads a directly built loss back into
arguments (:mod:`._rebuild`) and dumps arguments as plain data.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from torch import nn

from autotimm.losses._parameters import (
    ParameterInfo,
    Signature,
    read_signature,
    signature_summary,
)
from autotimm.losses._rebuild import arguments_from_attributes
from autotimm.losses._schema import ParamSchema, build_schema
from autotimm.losses._types import ClassDim, InputKind, TargetKind, Task
from autotimm.losses.errors import (
    ArgumentProblem,
    LossConfigError,
    problems_from_validation_error,
)

__all__ = ["LossEntry"]

RECORDED_ARGUMENTS = "_autotimm_loss_arguments"
"""Where a loss built by the registry keeps its validated constructor arguments."""

_MIRRORED = "_autotimm_loss_mirrored"
"""The parameters a loss built by the registry keeps as plain attributes of the same name and
value (``loss.reduction``): setting one later changes the loss, so its spec reads it back."""

_PLAIN = (str, int, float, bool)


@dataclasses.dataclass(frozen=True, eq=False)
class LossEntry:
    """Everything the registry knows about one loss. Immutable; the schema is built lazily.

    An entry pickles without its cached signature and schema (they are rebuilt on use), so
    models that hold one pickle and deep-copy.

    What the loss takes (checked at registration, read by
    :func:`autotimm.losses.adapt.takes_of` and :func:`autotimm.losses.adapt.fit_problem`):

    Attributes:
        expects: Its prediction: ``"logits"``, ``"probabilities"`` or ``"log_probabilities"``.
        target: Its target: ``"class_indices"``, ``"dense"``, ``"boxes"`` or ``"structured"``.
        class_dim: Where it reads the classes of its prediction: ``1`` (``[N, C, ...]``) or
            ``-1`` (``[..., C]``).
        soft_targets: It also takes soft targets: class probabilities of the prediction's
            shape (a class-index loss such as ``cross_entropy``) or values in [0, 1] other
            than 0 and 1 (a dense loss such as ``bce_with_logits``), e.g. mixed-up labels.
        class_weights: The constructor parameter that takes one weight per class (a model's
            ``class_weights`` go there), or ``None``.
        class_weights_broadcast: That parameter is broadcast against the prediction (as
            ``torch.nn.BCEWithLogitsLoss(weight=...)``), so a model shapes the weights to its
            class dimension (``[C, 1, 1]`` for ``[B, C, H, W]``); otherwise it is a ``[C]``
            vector the loss indexes by class (as ``torch.nn.CrossEntropyLoss(weight=...)``).
    """

    name: str
    loss_class: type[nn.Module]
    tasks: tuple[Task, ...]
    aliases: tuple[str, ...] = ()
    expects: InputKind = "logits"
    target: TargetKind = "class_indices"
    defined_at: str = ""
    class_dim: ClassDim = 1
    soft_targets: bool = False
    class_weights: str | None = None
    class_weights_broadcast: bool = False

    @property
    def class_path(self) -> str:
        """Where the class is defined: ``module.QualName``."""
        return f"{self.loss_class.__module__}.{self.loss_class.__qualname__}"

    @functools.cached_property
    def signature(self) -> Signature:
        """The constructor's keyword parameters, read (and checked) at registration."""
        return read_signature(self.loss_class)

    @property
    def parameters(self) -> tuple[ParameterInfo, ...]:
        """The constructor's keyword parameters with rendered types, defaults and docs."""
        return self.signature.parameters

    @functools.cached_property
    def _schema(self) -> ParamSchema:
        return build_schema(self.loss_class, self.signature)

    @property
    def schema(self) -> type[BaseModel]:
        """The pydantic model of the constructor's parameters (``extra="forbid"``, strict)."""
        return self._schema.model

    def validate(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Validate ``kwargs``; return only the explicitly passed values, as validated.

        Python values and their plain-data form (lists for tensors, an enum's value) are both
        accepted, so configs and checkpoints take the same path.

        Raises:
            LossConfigError: listing every unknown, mistyped, out-of-range or missing argument.
        """
        try:
            return self._schema.validate(kwargs)
        except ValidationError as error:
            expected = {p.name: p.type for p in self.parameters}
            problems = problems_from_validation_error(error, expected=expected, given=kwargs)
            raise self._config_error(problems) from None

    @property
    def builds_for_caller(self) -> bool:
        """The class has a ``for_caller`` classmethod: built for a caller (a model, or another
        loss), it learns what that caller feeds and offers and passes it on to its parts
        (``weighted_sum``). Such a loss fits whatever its parts fit and is called as fed."""
        return callable(getattr(self.loss_class, "for_caller", None))

    def targets_by_mode(self) -> dict[TargetKind, tuple[str, ...]]:
        """What the loss takes as target for each value of its ``mode`` parameter.

        A loss with a ``mode`` parameter whose instances say their own ``target`` (a property,
        as the segmentation losses have) takes different targets per mode; any other loss gives
        ``{target: ()}``.

        Example:
            >>> from autotimm.losses import get_entry
            >>> get_entry("dice").targets_by_mode()
            {'class_indices': ('multiclass',), 'dense': ('multilabel', 'binary')}
            >>> get_entry("focal").targets_by_mode()
            {'dense': ()}
        """
        mode = next((p for p in self.parameters if p.name == "mode"), None)
        if mode is None or not isinstance(getattr(self.loss_class, "target", None), property):
            return {self.target: ()}
        by_kind: dict[TargetKind, tuple[str, ...]] = {}
        for value in typing.get_args(mode.annotation):
            built: Any = self.build(mode=value)
            kind: TargetKind = built.target
            by_kind[kind] = (*by_kind.get(kind, ()), value)
        return by_kind

    def build(self, **kwargs: Any) -> nn.Module:
        """Validate ``kwargs`` and instantiate the loss with exactly the values passed.

        The loss remembers its validated arguments, so a spec of it needs no second validation.
        """
        return self.build_for(None, **kwargs)

    def build_for(self, caller: object, /, **kwargs: Any) -> nn.Module:
        """:meth:`build`, for ``caller`` (a :class:`~autotimm.losses.resolve.LossCaller`): a
        loss that :attr:`builds_for_caller` is built by ``loss_class.for_caller(caller,
        **validated)``; any other loss (or ``caller=None``) by its constructor."""
        arguments = self.validate(kwargs)
        if caller is not None and self.builds_for_caller:
            loss: nn.Module = self.loss_class.for_caller(caller, **arguments)  # type: ignore[attr-defined]
        else:
            loss = self.loss_class(**arguments)
        loss.__dict__[RECORDED_ARGUMENTS] = arguments
        attributes = vars(loss)
        loss.__dict__[_MIRRORED] = tuple(
            p.name
            for p in self.parameters
            if isinstance(value := arguments.get(p.name, p.default), _PLAIN)
            and type(attributes.get(p.name)) is type(value)
            and attributes[p.name] == value
        )
        return loss

    def arguments_of(self, loss: nn.Module) -> dict[str, Any] | None:
        """The constructor arguments that rebuild ``loss``, an instance of this entry's class.

        Recorded when the registry built it; otherwise read from the attributes named like the
        parameters and checked by rebuilding (``None`` when that does not give the same loss).
        """
        recorded = loss.__dict__.get(RECORDED_ARGUMENTS)
        if recorded is not None:
            arguments = dict(recorded)
            defaults = {p.name: p.default for p in self.parameters}
            for name in loss.__dict__.get(_MIRRORED, ()):
                value = vars(loss).get(name)
                if isinstance(value, _PLAIN) and value != arguments.get(name, defaults[name]):
                    arguments[name] = value  # set after the build: ``loss.reduction = "sum"``
            return arguments
        if type(loss) is not self.loss_class:
            return None
        return arguments_from_attributes(loss, self.parameters, lambda a: self.build(**a))

    def dump(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Validated arguments as plain JSON data (tensors as lists, enums as their values).

        Raises:
            LossConfigError: an argument that plain data cannot hold (e.g. a module instance).
        """
        try:
            return self._schema.dump(arguments)
        except ValueError as error:
            argument = str(error).split("=", 1)[0]
            problem = ArgumentProblem(argument, str(error), given=arguments.get(argument))
            raise self._config_error([problem]) from None

    def _config_error(self, problems: Sequence[ArgumentProblem]) -> LossConfigError:
        return LossConfigError(
            self.name,
            problems,
            where=f" ({self.class_path})",
            accepted=signature_summary(self.parameters),
        )

    def __getstate__(self) -> dict[str, Any]:  # the cached schema is a class made at run time
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

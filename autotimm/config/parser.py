"""The config parser: Lightning's argument parser, with loss arguments typed as ``LossArgument``.

jsonargparse builds one parser per class it reads (the models, data modules and the trainer),
always of the class of the parser that asked, so overriding how a signature parameter is added
here reaches every ``model.init_args.*``. Two things happen per parameter:

- an annotation that is :data:`autotimm.losses.resolve.LossLike` becomes
  :class:`~autotimm.config.loss_argument.LossArgument` (plain data, checked by shape only);
- ``float | int`` is read as ``int | float``, so that a YAML integer stays an integer;
- the parameter is recorded (:class:`Parameter`: name, annotation, default, docs, whether it
  is a loss), which is what the whole-config checker and the JSON Schema writer read. So they
  see exactly the parameters jsonargparse resolved, including those a class forwards through
  ``**kwargs`` to its base class.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import types
import typing
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser

from autotimm.config import loss_argument

__all__ = ["ConfigParser", "Parameter", "class_parameters", "section_parser"]

loss_argument.register_with_jsonargparse()


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One constructor parameter as the config parser added it."""

    name: str
    annotation: Any
    """The annotation as written in the signature (before the loss type was substituted)."""
    default: Any
    """The default, or ``inspect.Parameter.empty`` when the parameter is required."""
    doc: str | None
    is_loss: bool

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty


class ConfigParser(LightningArgumentParser):
    """A ``LightningArgumentParser`` that types loss arguments and records every parameter.

    ``parameters[nested_key][name]`` holds the :class:`Parameter` s added under ``nested_key``
    (``""`` for a parser of one class).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parameters: dict[str, dict[str, Parameter]] = {}

    def _add_signature_parameter(  # jsonargparse's per-parameter hook (stable across 4.x)
        self,
        container: Any,
        nested_key: str | None,
        param: Any,
        added_args: list[str],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        original = param.annotation
        substitute = loss_argument.loss_annotation(original)
        annotation = substitute if substitute is not None else _int_before_float(original)
        if annotation is not original:
            param = copy.copy(param)  # jsonargparse caches signature parameters: don't mutate
            param.annotation = annotation
        count = len(added_args)
        super()._add_signature_parameter(container, nested_key, param, added_args, *args, **kwargs)
        if len(added_args) > count:
            self.parameters.setdefault(nested_key or "", {})[param.name] = Parameter(
                name=param.name,
                annotation=original,
                default=param.default,
                doc=param.doc,
                is_loss=substitute is not None,
            )


def _int_before_float(annotation: Any) -> Any:
    """``float | int`` as ``int | float``: jsonargparse tries union members in order, so a YAML
    ``1`` for ``limit_val_batches: float | int`` would become ``1.0`` (100%) instead of 1 batch.
    """
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    members = typing.get_args(annotation)
    if int not in members or float not in members or members.index(int) < members.index(float):
        return annotation
    ordered = [int, *(m for m in members if m is not int)]
    return typing.Union[tuple(ordered)]  # noqa: UP007 - built at runtime


@functools.cache
def section_parser(component: Any) -> ConfigParser:
    """A parser of one class's (or function's) constructor arguments, with its parameters.

    Used to check the arguments of one config section key by key. Cached per component.
    """
    parser = ConfigParser(exit_on_error=False)
    if inspect.isclass(component):
        parser.add_class_arguments(component, fail_untyped=False, sub_configs=True)
    else:
        parser.add_function_arguments(component, fail_untyped=False, sub_configs=True)
    return parser


def class_parameters(component: Any) -> dict[str, Parameter]:
    """The constructor parameters of ``component`` as the config parser resolves them.

    Example:
        >>> from autotimm.models import ImageClassifier
        >>> params = class_parameters(ImageClassifier)
        >>> params["loss_fn"].is_loss, params["num_classes"].required
        (True, True)
    """
    return dict(section_parser(component).parameters.get("", {}))

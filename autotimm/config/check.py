"""Check a whole config before anything is built: every problem at once, each at its place.

:func:`check_config` reads a plain config mapping (``model``, ``data``, ``trainer``, ...) and
reports, without constructing a model, a data module or a trainer:

- unknown sections, classes, arguments (with "did you mean") and missing required arguments;
- values of the wrong type (``check_types``; skipped for a config jsonargparse already parsed);
- every loss argument, resolved through the model's own loss slots (``Model.loss_slots``, the
  hook the model's ``__init__`` uses) and the one resolution path (each term of a list of
  losses on its own, at ``loss_fn[i]``, as the model resolves it),
  :func:`autotimm.losses.resolve.resolve_loss`: unknown names, unknown, mistyped or
  out-of-range parameters, required parameters that neither the config nor the model
  supplies, and a loss the model cannot feed (with the losses that fit);
- a backbone that is not a timm model, a ``data_dir`` without the layout its data module reads
  (by listing directories), a ``ckpt_path`` that does not exist.

A loss registered only for other tasks than the model's that fits what the model feeds is a
warning (the same :class:`~autotimm.losses.LossTaskWarning` the model gives), not a problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jsonargparse import Namespace

from autotimm.config import hooks, loss_argument
from autotimm.config.parser import ConfigParser, Parameter, class_parameters, section_parser
from autotimm.config.problems import ConfigProblem
from autotimm.config.trainer import config_trainer
from autotimm.losses.resolve import LossSlot

__all__ = ["CheckResult", "check_config", "resolve_class"]

_IGNORED_TOP_LEVEL = frozenset({"config", "$schema", "__path__", "subcommand"})
_CKPT_KEYWORDS = frozenset({"best", "last", "hpc", "registry"})


@dataclasses.dataclass
class CheckResult:
    """What :func:`check_config` found."""

    problems: list[ConfigProblem] = dataclasses.field(default_factory=list)
    warnings: list[ConfigProblem] = dataclasses.field(default_factory=list)
    """Allowed but suspicious (a loss registered for another task)."""
    notes: list[ConfigProblem] = dataclasses.field(default_factory=list)
    """What the losses said while they were resolved (e.g. a neutral fallback was used)."""

    def add(self, place: str, message: str) -> None:
        self.problems.append(ConfigProblem(place, message))


def check_config(
    config: Mapping[str, Any],
    *,
    stage: str = "fit",
    parser: ConfigParser | None = None,
    check_types: bool = True,
) -> CheckResult:
    """Every problem of ``config`` for ``stage`` (``fit``, ``validate``, ``test``, ``predict``).

    Args:
        config: The config as plain data (a YAML file's content, or a parsed config dumped).
        stage: Which splits of the data the run reads and whether ``ckpt_path`` must exist.
        parser: The subcommand's parser, to check top-level keys other than the sections.
        check_types: Check every value's type (not needed after jsonargparse parsed it).

    Example:
        >>> result = check_config({"model": {"class_path": "ImageClassifier", "init_args": {
        ...     "backbone": "resnet10t", "num_classes": 3, "loss_fn": "dise"}}})
        >>> [problem.place for problem in result.problems]
        ['model.init_args.loss_fn']
    """
    result = CheckResult()
    if parser is not None:
        _check_top_level(config, parser, check_types, result)
    model = config.get("model")
    if model is not None:
        found = _check_class_section(model, "model", _lightning_module(), check_types, result)
        if found is not None:
            cls, values, given = found
            _check_losses(cls, values, given, result)
            _check_backbone(values, result)
    data = config.get("data")
    if data is not None:
        found = _check_class_section(data, "data", _data_module(), check_types, result)
        if found is not None:
            cls, values, _ = found
            _check_data_dir(cls, values, stage, result)
    trainer = config.get("trainer")
    if trainer is not None:
        _check_arguments(trainer, "trainer", config_trainer, check_types, result)
    _check_ckpt_path(config.get("ckpt_path"), result)
    return result


# --------------------------------------------------------------------------- sections
def _check_top_level(
    config: Mapping[str, Any], parser: ConfigParser, check_types: bool, result: CheckResult
) -> None:
    defaults = parser.get_defaults()  # a jsonargparse Namespace: iterating it is not by key
    known = {str(key).split(".", 1)[0] for key in defaults.keys()}  # noqa: SIM118
    for section in ("model", "data"):
        if section in known and config.get(section) is None:
            result.add(section, "missing: give its class_path and init_args")
    for key, value in config.items():
        if key in _IGNORED_TOP_LEVEL:
            continue
        if key not in known:
            result.add(key, _unknown("section", key, sorted(known)))
        elif check_types and key not in ("model", "data", "trainer"):
            message = _type_problem(parser, key, value, None)
            if message:
                result.add(key, message)


def _check_class_section(
    section: Any, place: str, base: type, check_types: bool, result: CheckResult
) -> tuple[type, dict[str, Any], dict[str, Any]] | None:
    """Resolve ``{class_path, init_args}``; check the arguments. Return the class, its values
    (given or default) and the given init_args, or ``None`` if the class is unknown."""
    if isinstance(section, str):
        section = {"class_path": section}
    if not isinstance(section, Mapping):
        result.add(place, f"expected {{class_path: ..., init_args: {{...}}}}, got {section!r}")
        return None
    for key in section:
        if key not in ("class_path", "init_args", "dict_kwargs"):
            result.add(
                f"{place}.{key}",
                "unknown key; a section has class_path and init_args "
                f"(put constructor arguments under {place}.init_args)",
            )
    class_path = section.get("class_path")
    if class_path is None:
        result.add(f"{place}.class_path", f"missing: one of {', '.join(_known_names(base))}")
        return None
    cls, message = resolve_class(class_path, base)
    if cls is None:
        result.add(f"{place}.class_path", message)
        return None
    init_args = section.get("init_args") or {}
    values = _check_arguments(init_args, f"{place}.init_args", cls, check_types, result)
    given = dict(init_args) if isinstance(init_args, Mapping) else {}
    return cls, values, given


def _check_arguments(
    arguments: Any, place: str, component: Any, check_types: bool, result: CheckResult
) -> dict[str, Any]:
    """Unknown, mistyped and missing arguments; return the values with defaults filled in."""
    if not isinstance(arguments, Mapping):
        result.add(place, f"expected a mapping of argument names to values, got {arguments!r}")
        arguments = {}
    parameters = class_parameters(component)
    for key, value in arguments.items():
        parameter = parameters.get(key)
        if parameter is None:
            result.add(f"{place}.{key}", _unknown("argument", str(key), list(parameters)))
        elif check_types and not parameter.is_loss:
            message = _type_problem(section_parser(component), key, value, parameter)
            if message:
                result.add(f"{place}.{key}", message)
    for name, parameter in parameters.items():
        if parameter.required and name not in arguments:
            result.add(
                f"{place}.{name}", f"missing required argument (expected {_expected(parameter)})"
            )
    values = {n: p.default for n, p in parameters.items() if not p.required}
    values.update({k: v for k, v in arguments.items() if k in parameters})
    return values


def _type_problem(
    parser: ConfigParser, key: str, value: Any, parameter: Parameter | None
) -> str | None:
    try:
        parser.validate(Namespace(**{key: value}), skip_required=True)
    except Exception as error:  # jsonargparse raises TypeError, NSKeyError, ArgumentError, ...
        if parameter is not None:
            expected = _expected(parameter)
        else:  # a top-level key: the type as jsonargparse states it
            text = str(error)
            union = re.search(r"Subtypes: \[(.*?)\]\n", text)
            single = re.search(r"Expected an? (.*?)\. Got value", text)
            found = union.group(1).replace(", ", " | ") if union else single and single.group(1)
            expected = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", found or "a valid value")
        return f"expected {expected}, got {_given(value)}"
    return None


def resolve_class(class_path: Any, base: type) -> tuple[type | None, str]:
    """The class a ``class_path`` names: a dotted import path or a short name (``Segmentor``).

    Returns ``(class, "")``, or ``(None, message)`` saying what is wrong.

    Example:
        >>> from lightning.pytorch import LightningModule
        >>> resolve_class("SemanticSegmentor", LightningModule)[0].__name__
        'SemanticSegmentor'
    """
    if not isinstance(class_path, str) or not class_path:
        return None, f"expected a class name, got {class_path!r}"
    if "." in class_path:
        module_name, _, name = class_path.rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), name)
        except ImportError as error:
            return None, f"cannot import {class_path!r}: {error}"
        except AttributeError:
            return None, f"module {module_name!r} has no {name!r}"
    else:
        candidates = _subclasses_by_name(base)
        found = candidates.get(class_path)
        if found is None:
            return None, _unknown("class", class_path, _known_names(base))
    if not (inspect.isclass(found) and issubclass(found, base)):
        return None, f"{class_path!r} is not a {base.__name__} subclass"
    return found, ""


def _subclasses_by_name(base: type) -> dict[str, type]:
    import autotimm

    for name in autotimm.__all__:
        getattr(autotimm, name)  # import the lazy exports, so their subclasses are known
    found: dict[str, type] = {}
    pending = list(base.__subclasses__())
    while pending:
        cls = pending.pop()
        found.setdefault(cls.__name__, cls)
        pending.extend(cls.__subclasses__())
    return found


def _known_names(base: type) -> list[str]:
    """The autotimm classes offered for a section (the "did you mean" candidates)."""
    import autotimm

    names = []
    for name in autotimm.__all__:
        value = getattr(autotimm, name)
        if inspect.isclass(value) and issubclass(value, base) and not inspect.isabstract(value):
            names.append(name)
    return names


# --------------------------------------------------------------------------- losses
def _check_losses(
    model_class: type, values: Mapping[str, Any], given: Mapping[str, Any], result: CheckResult
) -> None:
    """Resolve every loss argument of the model as the model would, through its slots."""
    for slot in hooks.loss_slots(model_class, values, class_parameters(model_class)):
        place = f"model.init_args.{slot.argument}"
        value = values.get(slot.argument)
        if value is None:
            value = slot.default
        if value is None:
            continue
        if isinstance(value, (list, tuple)) and value:
            # a list of losses: every term whose shape is right is still resolved below, so
            # one pass names the problems of every term
            terms, shape_problems = loss_argument.read_terms(value)
            for index, message in shape_problems:
                result.add(f"{place}[{index}]", f"term{message}")
            normalized: Any = terms
        else:
            try:
                normalized = loss_argument.normalize(value)
            except ValueError as error:
                result.add(place, str(error))
                continue
        kwargs = values.get(slot.kwargs_argument) if slot.kwargs_argument else None
        if kwargs is not None and not isinstance(kwargs, Mapping):
            result.add(
                f"model.init_args.{slot.kwargs_argument}",
                f"expected a mapping of loss arguments, got {kwargs!r}",
            )
            continue
        if isinstance(normalized, list) and kwargs:  # as the model refuses them
            result.add(
                f"model.init_args.{slot.kwargs_argument}",
                f"{slot.argument} is a list of losses; loss kwargs cannot be applied to it: "
                "give each term its own params",
            )
            kwargs = None
        for suffix, item in loss_argument.loss_items(normalized):
            # a term is resolved as the model resolves it: named loss_fn[i] in its messages
            term_slot = dataclasses.replace(slot, argument=slot.argument + suffix)
            _check_loss(model_class, term_slot, item, place + suffix, given, kwargs, result)


def _check_loss(
    model_class: type,
    slot: LossSlot,
    item: loss_argument.LossValue,
    place: str,
    given: Mapping[str, Any],
    kwargs: Mapping[str, Any] | None,
    result: CheckResult,
) -> None:
    from autotimm.losses import (
        LossConfigError,
        LossMismatchError,
        LossTaskWarning,
        UnknownLossError,
        get_entry,
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            slot.resolve(item, kwargs)
        except UnknownLossError as error:
            result.add(f"{place}.name" if isinstance(item, dict) else place, str(error))
            return
        except LossMismatchError as error:
            result.add(place, str(error))
            return
        except LossConfigError as error:
            params = item.get("params", {}) if isinstance(item, dict) else {}
            weights = get_entry(error.loss_name).class_weights
            for problem in error.problems:
                argument = problem.argument
                if kwargs and argument in kwargs:
                    where = f"model.init_args.{slot.kwargs_argument}.{argument}"
                elif argument in params:
                    where = f"{place}.params.{argument}"
                elif argument == weights and slot.class_weights is not None:
                    where = "model.init_args.class_weights"  # the model's weights, routed
                elif argument in given and argument in slot.context:
                    where = f"model.init_args.{argument}"  # a model value passed as context
                else:
                    where = f"{place}.params.{argument}"
                message = str(problem).removeprefix(f"{argument}: ")
                if "missing required" in message:
                    message += f"; neither the config nor {model_class.__name__} supplies it"
                result.add(where, f"loss {error.loss_name!r}: {message}")
            return
        except Exception as error:  # the loss's own constructor refused the values
            result.add(place, f"{type(error).__name__}: {error}")
            return
    for warning in caught:
        found = ConfigProblem(place, str(warning.message))
        if issubclass(warning.category, LossTaskWarning):
            result.warnings.append(found)
        else:
            result.notes.append(found)


# --------------------------------------------------------------------------- other values
def _check_backbone(values: Mapping[str, Any], result: CheckResult) -> None:
    backbone = values.get("backbone")
    if not isinstance(backbone, str) or backbone.split(":", 1)[0] in (
        "hf-hub",
        "hf_hub",
        "local-dir",
    ):
        return
    import timm

    if not timm.is_model(backbone):
        close = difflib.get_close_matches(backbone, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        result.add("model.init_args.backbone", f"{backbone!r} is not a timm model name{hint}")


def _check_data_dir(
    data_class: type, values: Mapping[str, Any], stage: str, result: CheckResult
) -> None:
    data_dir = values.get("data_dir")
    if data_dir is None or data_dir is inspect.Parameter.empty:
        return
    for problem in hooks.layout_problems(data_class, data_dir, stage):
        result.add("data.init_args.data_dir", problem)


def _check_ckpt_path(ckpt_path: Any, result: CheckResult) -> None:
    if not isinstance(ckpt_path, str) or ckpt_path in _CKPT_KEYWORDS or "://" in ckpt_path:
        return
    if ckpt_path.startswith("registry:") or Path(ckpt_path).is_file():
        return
    result.add("ckpt_path", f"checkpoint file not found: {ckpt_path}")


# --------------------------------------------------------------------------- helpers
def _unknown(what: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    message = f"unknown {what}"
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if what == "class":
        return f"{message} {name!r}; expected one of {', '.join(known)}"
    return message


def _expected(parameter: Parameter) -> str:
    from autotimm.losses._parameters import format_annotation

    return format_annotation(parameter.annotation)


def _given(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _lightning_module() -> type:
    from lightning.pytorch import LightningModule

    return LightningModule


def _data_module() -> type:
    from lightning.pytorch import LightningDataModule

    return LightningDataModule

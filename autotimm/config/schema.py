"""The JSON Schema (draft 2020-12) of autotimm config files, for editors and validators.

``autotimm schema -o autotimm.schema.json`` writes it; a YAML file that starts with
``# yaml-language-server: $schema=autotimm.schema.json`` then gets completion and checks in any
editor that speaks the YAML language server (VS Code with the Red Hat YAML extension, Neovim,
JetBrains, ...).

What it describes:

- ``model`` and ``data``: ``class_path`` (short names like ``SemanticSegmentor`` as well as
  import paths) and, through ``if``/``then`` on ``class_path``, that class's ``init_args``:
  every constructor parameter with its type, default and description, nothing else;
- every loss argument (``loss_fn``, ``cls_loss_fn``, ...): a choice of the registered losses
  (built-ins, entry-point plugins and modules imported before the schema is written), each
  with its own parameter schema from the registry (types, defaults, bounds, enums,
  descriptions). Parameters a model may supply as context are not required here;
- ``trainer`` (``AutoTrainer``: every ``lightning.Trainer`` argument), ``seed_everything``,
  ``imports``, ``optimizer``/``lr_scheduler`` and the subcommands' own keys (``ckpt_path``, ...).

Parameter lists come from the config parser (:func:`autotimm.config.parser.class_parameters`),
so the schema describes what ``autotimm fit`` accepts.
"""

from __future__ import annotations

import collections.abc
import enum
import inspect
import json
import os
import pathlib
import types
import typing
from typing import Any

import annotated_types

from autotimm.config import loss_argument
from autotimm.config.parser import Parameter, class_parameters

__all__ = ["SCHEMA_URI", "config_json_schema", "type_schema"]

SCHEMA_URI = "https://json-schema.org/draft/2020-12/schema"

_CLASS_PATH_PATTERN = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$"
_SEQUENCES = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.Iterable,
    collections.abc.Collection,
)
_MAPPINGS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)
_BOUNDS = (
    (annotated_types.Gt, "gt", "exclusiveMinimum"),
    (annotated_types.Ge, "ge", "minimum"),
    (annotated_types.Lt, "lt", "exclusiveMaximum"),
    (annotated_types.Le, "le", "maximum"),
)


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of config files for every subcommand, as plain JSON data.

    Example:
        >>> schema = config_json_schema()
        >>> schema["$schema"], sorted(schema["properties"])[:3]
        ('https://json-schema.org/draft/2020-12/schema', ['$schema', 'ckpt_path', 'data'])
    """
    from lightning.pytorch import LightningDataModule, LightningModule, Trainer
    from lightning.pytorch.cli import LightningCLI

    import autotimm
    from autotimm.config.trainer import config_trainer

    defs: dict[str, Any] = {}
    defs["loss"] = _loss_schema(defs)
    properties: dict[str, Any] = {
        "$schema": {"type": "string", "description": "the schema of this file (for editors)"},
        "imports": {
            "anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "null"}],
            "description": "modules to import first, e.g. ones with @register_loss classes",
        },
        "seed_everything": {
            "anyOf": [{"type": "boolean"}, {"type": "integer"}],
            "description": "an int seeds everything with it; true picks a random seed",
            "default": True,
        },
        "trainer": _arguments_schema(config_trainer, defs, "AutoTrainer (lightning.Trainer)"),
        "model": _section_schema(_exports(autotimm, LightningModule), defs, "the model"),
        "data": _section_schema(_exports(autotimm, LightningDataModule), defs, "the data"),
        "optimizer": _class_path_schema("an optimizer (replaces the model's own)"),
        "lr_scheduler": _class_path_schema("a learning-rate scheduler"),
    }
    for subcommand, skipped in LightningCLI.subcommands().items():
        method = getattr(Trainer, subcommand)
        for name, parameter in inspect.signature(method).parameters.items():
            if name == "self" or name in skipped or name in properties:
                continue
            hints = typing.get_type_hints(method)
            properties[name] = _parameter_schema(
                Parameter(name, hints.get(name, Any), parameter.default, None, False)
            )
    return {
        "$schema": SCHEMA_URI,
        "title": "autotimm config",
        "description": "A config for autotimm fit | validate | test | predict | check.",
        "type": "object",
        "properties": dict(sorted(properties.items())),
        "additionalProperties": False,
        "$defs": dict(sorted(defs.items())),
    }


# --------------------------------------------------------------------------- sections
def _exports(package: types.ModuleType, base: type) -> list[type]:
    classes = []
    for name in getattr(package, "__all__", ()):
        value = getattr(package, name)
        if inspect.isclass(value) and issubclass(value, base):
            classes.append(value)
    return classes


def _class_names(cls: type) -> list[str]:
    """Every ``class_path`` spelling that names ``cls``: short, package, module paths."""
    module = cls.__module__
    names = [cls.__name__, f"autotimm.{cls.__name__}"]
    parts = module.split(".")
    names += [".".join([*parts[:end], cls.__name__]) for end in range(2, len(parts) + 1)]
    return list(dict.fromkeys(names))


def _section_schema(classes: list[type], defs: dict[str, Any], what: str) -> dict[str, Any]:
    names = [name for cls in classes for name in _class_names(cls)]
    branches = []
    for cls in classes:
        defs[cls.__name__] = _arguments_schema(cls, defs, _summary(cls))
        branches.append(
            {
                "if": {
                    "properties": {"class_path": {"enum": _class_names(cls)}},
                    "required": ["class_path"],
                },
                "then": {"properties": {"init_args": {"$ref": f"#/$defs/{cls.__name__}"}}},
            }
        )
    return {
        "type": "object",
        "description": f"{what}: class_path and the constructor's init_args",
        "properties": {
            "class_path": {
                "anyOf": [
                    {"type": "string", "enum": names},
                    {"type": "string", "pattern": _CLASS_PATH_PATTERN},
                ],
                "description": "the class: a short name or an import path",
            },
            "init_args": {"type": "object"},
            "dict_kwargs": {"type": "object"},
        },
        "additionalProperties": False,
        "allOf": branches,
    }


def _arguments_schema(component: Any, defs: dict[str, Any], description: str) -> dict[str, Any]:
    properties = {
        name: _parameter_schema(parameter)
        for name, parameter in class_parameters(component).items()
    }
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }


def _parameter_schema(parameter: Parameter) -> dict[str, Any]:
    annotation = loss_argument.loss_annotation(parameter.annotation) or parameter.annotation
    schema = type_schema(annotation)
    if parameter.doc:
        schema["description"] = " ".join(parameter.doc.split())
    default = _json_default(parameter.default)
    if default is not _NO_DEFAULT:
        schema["default"] = default
    return schema


def _class_path_schema(description: str) -> dict[str, Any]:
    return {
        "anyOf": [{"type": "string"}, _class_object(), {"type": "null"}],
        "description": description,
    }


def _class_object() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "class_path": {"type": "string"},
            "init_args": {"type": "object"},
            "dict_kwargs": {"type": "object"},
        },
        "required": ["class_path"],
        "additionalProperties": False,
    }


# --------------------------------------------------------------------------- losses
def _loss_schema(defs: dict[str, Any]) -> dict[str, Any]:
    from autotimm.losses import get_loss_registry

    registry = get_loss_registry()
    spec_schemas: dict[str, Any] = {}
    for name in registry.list_losses():  # loads entry-point plugins too
        entry = registry.get_entry(name)
        params = _embed(entry.schema.model_json_schema(), defs, f"loss_{entry.name}_")
        params.pop("required", None)  # a model may supply them as context
        params.pop("title", None)
        params["description"] = f"parameters of loss {entry.name!r}: {_summary(entry.loss_class)}"
        defs[f"loss_{entry.name}"] = params
        for spelling in (entry.name, *entry.aliases):
            spec_schemas[spelling] = {"$ref": f"#/$defs/loss_{entry.name}"}
    return loss_argument.json_schema(sorted(spec_schemas), spec_schemas)


def _embed(schema: dict[str, Any], defs: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Move ``schema``'s own ``$defs`` into ``defs`` under ``prefix`` and fix its ``$ref`` s."""
    nested = schema.pop("$defs", {})

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    value.replace("#/$defs/", f"#/$defs/{prefix}", 1)
                    if key == "$ref" and isinstance(value, str)
                    else rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for name, definition in nested.items():
        defs[f"{prefix}{name}"] = rewrite(definition)
    return rewrite(schema)


# --------------------------------------------------------------------------- type hints
def type_schema(annotation: Any) -> dict[str, Any]:
    """The JSON Schema of the values a config may give for ``annotation``.

    Example:
        >>> type_schema(int | None)
        {'anyOf': [{'type': 'integer'}, {'type': 'null'}]}
    """
    if annotation in (Any, object, inspect.Parameter.empty):
        return {}
    if annotation is None or annotation is type(None):
        return {"type": "null"}
    basic = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if annotation in basic:
        return {"type": basic[annotation]}
    if annotation is loss_argument.LossArgument:
        return {"$ref": "#/$defs/loss"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        schema = type_schema(args[0])
        for meta in args[1:]:
            _add_bounds(schema, meta)
        return schema
    if origin is typing.Literal:
        return {"enum": [a.name if isinstance(a, enum.Enum) else a for a in args]}
    if origin in (typing.Union, types.UnionType):
        members = [type_schema(a) for a in args]
        if any(not m for m in members):
            return {}
        return {"anyOf": members}
    if origin in _SEQUENCES:
        if origin is tuple and args and args[-1] is not Ellipsis:
            return {
                "type": "array",
                "prefixItems": [type_schema(a) for a in args],
                "minItems": len(args),
                "maxItems": len(args),
            }
        items = type_schema(args[0]) if args else {}
        return {"type": "array", **({"items": items} if items else {})}
    if origin in _MAPPINGS:
        values = type_schema(args[1]) if len(args) == 2 else {}
        return {"type": "object", **({"additionalProperties": values} if values else {})}
    if origin is os.PathLike:
        return {"type": "string"}
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return {}
    if isinstance(annotation, type):
        return _class_schema(annotation)
    return {}


def _class_schema(cls: type) -> dict[str, Any]:
    import torch

    if issubclass(cls, enum.Enum):
        return {"enum": list(cls.__members__)}
    if issubclass(cls, torch.Tensor):
        number = {"type": "number"}
        return {
            "anyOf": [number, {"type": "array", "items": {"anyOf": [number, {"type": "array"}]}}]
        }
    if issubclass(cls, pathlib.PurePath) or hasattr(cls, "__fspath__"):
        return {"type": "string"}
    if cls in (list, tuple, set, frozenset):
        return {"type": "array"}
    if cls is dict:
        return {"type": "object"}
    return {"anyOf": [{"type": "string"}, _class_object()]}  # a class given by class_path


def _add_bounds(schema: dict[str, Any], meta: Any) -> None:
    from pydantic.fields import FieldInfo

    if isinstance(meta, FieldInfo):
        for inner in meta.metadata:
            _add_bounds(schema, inner)
        return
    if isinstance(meta, annotated_types.Interval):
        for part in meta:
            _add_bounds(schema, part)
        return
    for kind, attribute, keyword in _BOUNDS:
        if isinstance(meta, kind):
            schema[keyword] = getattr(meta, attribute)


_NO_DEFAULT = object()


def _json_default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return _NO_DEFAULT
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return _NO_DEFAULT


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().split("\n\n", 1)[0].replace("\n", " ")

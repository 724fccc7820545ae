"""The config as written: ``--config`` files and ``--key value`` overrides merged, unvalidated.

jsonargparse stops at the first invalid value. To report every problem of a config at once the
checker also needs the config as the user wrote it, so this module merges the same inputs the
way LightningCLI does (later files and overrides win, ``--model.lr`` means
``model.init_args.lr``), without checking anything. It also collects the ``imports`` a run
asks for and the directories of its config files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from autotimm.config.problems import ConfigProblem

__all__ = ["CLASS_SECTIONS", "RawConfig", "read_raw_config"]

CLASS_SECTIONS = ("model", "data", "optimizer", "lr_scheduler")
"""Sections given as ``{class_path, init_args}``."""

_CLASS_KEYS = ("class_path", "init_args", "dict_kwargs")
_VALUELESS = {"-h", "--help"}


@dataclasses.dataclass
class RawConfig:
    """The merged, unvalidated config of one command line."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)
    config_files: list[Path] = dataclasses.field(default_factory=list)
    imports: list[str] = dataclasses.field(default_factory=list)
    """Modules to import: every config file's ``imports:`` and every ``--imports``, in order."""
    problems: list[ConfigProblem] = dataclasses.field(default_factory=list)
    """Config files that are missing or are not YAML mappings."""


def read_raw_config(args: Sequence[str]) -> RawConfig:
    """Merge the ``--config`` files and ``--key value`` overrides of ``args`` in order.

    Example:
        >>> read_raw_config(["--model", "SemanticSegmentor", "--model.lr", "0.01"]).values
        {'model': {'class_path': 'SemanticSegmentor', 'init_args': {'lr': 0.01}}}
    """
    raw = RawConfig()
    for key, text in _options(args):
        if text is None:
            continue
        if key in ("config", "c"):
            loaded = _load_file(Path(text), raw)
            if loaded is not None:
                _add_imports(raw, loaded.get("imports"))
                _merge(raw.values, loaded)
        elif key == "imports":
            _add_imports(raw, _value(text))
        else:
            _set(raw.values, key.split("."), _value(text))
    if raw.imports:
        raw.values["imports"] = list(raw.imports)
    return raw


def _add_imports(raw: RawConfig, value: Any) -> None:
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    for name in names:
        if str(name) not in raw.imports:
            raw.imports.append(str(name))


def _options(args: Sequence[str]) -> Iterable[tuple[str, str | None]]:
    """``(key, value text)`` per option; ``value`` is ``None`` for a flag without a value."""
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if token in _VALUELESS or not token.startswith("-"):
            continue
        name = token.lstrip("-")
        if "=" in name:
            key, text = name.split("=", 1)
            yield key, text
            continue
        if index < len(args) and not args[index].startswith("--"):
            yield name, args[index]
            index += 1
        else:
            yield name, None


def _load_file(path: Path, raw: RawConfig) -> dict[str, Any] | None:
    place = f"--config {path}"
    if not path.is_file():
        raw.problems.append(ConfigProblem(place, "config file not found"))
        return None
    raw.config_files.append(path)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raw.problems.append(ConfigProblem(place, f"not valid YAML: {error}"))
        return None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raw.problems.append(
            ConfigProblem(
                place, f"a config is a mapping of sections; got a {type(loaded).__name__}"
            )
        )
        return None
    return loaded


def _value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    section = keys[0]
    if section in CLASS_SECTIONS:
        if len(keys) == 1:
            if isinstance(value, str) and Path(value).is_file():
                value = yaml.safe_load(Path(value).read_text(encoding="utf-8"))
            if isinstance(value, str):
                value = {"class_path": value}
            if isinstance(value, Mapping):
                _merge(target, {section: dict(value)})
            else:
                target[section] = value
            return
        if keys[1] not in _CLASS_KEYS:
            keys = [section, "init_args", *keys[1:]]
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``base``; a section that changes class drops the old init_args."""
    for key, value in update.items():
        old = base.get(key)
        if key in CLASS_SECTIONS and isinstance(value, str):
            value = {"class_path": value}
        if isinstance(old, dict) and isinstance(value, Mapping):
            if key in CLASS_SECTIONS and _class_changed(old, value):
                base[key] = dict(value)
                continue
            _merge(old, value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value


def _class_changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    before, after = old.get("class_path"), new.get("class_path")
    if not isinstance(before, str) or not isinstance(after, str):
        return False
    return before.rsplit(".", 1)[-1] != after.rsplit(".", 1)[-1]

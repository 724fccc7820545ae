"""``autotimm fit | validate | test | predict | check``: LightningCLI, checked before it builds.

:class:`AutotimmCLI` is Lightning's ``LightningCLI`` with the four autotimm models and data
modules selectable by ``class_path`` (short names work), :func:`config_trainer`
(``AutoTrainer``) as the trainer, loss arguments typed by :mod:`autotimm.config.loss_argument`
and the saved config kept. What it adds:

- modules listed under ``imports:`` (or ``--imports``) are imported first, with the current
  directory and each config file's directory on ``sys.path``, so their ``@register_loss``
  classes are known;
- the whole config is checked (:func:`autotimm.config.check.check_config`) before anything is
  instantiated. A bad config prints every problem with its place and exits with status 2,
  having built nothing and written nothing. When jsonargparse itself stops at a problem, the
  config as written (:mod:`autotimm.config.raw`) is checked instead, so the report is
  still complete;
- ``check`` parses and checks like ``fit``, prints the resolved config and exits (0 or 2);
  ``--print_config`` checks before it prints;
- ``predict`` writes its outputs to files (:class:`autotimm.config.predictions.PredictionFiles`).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import autotimm.data
import autotimm.models
from autotimm.config.check import CheckResult, check_config
from autotimm.config.parser import ConfigParser
from autotimm.config.predictions import PredictionFiles
from autotimm.config.problems import ConfigProblem, format_problems
from autotimm.config.raw import RawConfig, read_raw_config
from autotimm.config.trainer import config_trainer

__all__ = ["CONFIG_COMMANDS", "AutotimmCLI", "import_modules", "run_config_command"]

_SELECTABLE = (autotimm.models, autotimm.data)
"""Imported so that jsonargparse knows their classes by short name (``SemanticSegmentor``)."""

CONFIG_COMMANDS = ("fit", "validate", "test", "predict", "check")
"""The commands that read a config (``check`` takes the same flags as ``fit``)."""


class AutotimmCLI(LightningCLI):
    """``LightningCLI`` for autotimm configs, checked as a whole before anything is built.

    Args:
        args: The command line after ``autotimm``: a subcommand and its flags.
        raw: The same config as written (for the complete report when jsonargparse stops).
        problems: Problems found before parsing (modules that failed to import).
        check_only: Stop after the check and print the resolved config (``autotimm check``).
        print_config: ``--print_config``'s flags (``None``: not given).
        command: The command name shown in messages (default: the subcommand).
    """

    def __init__(
        self,
        args: Sequence[str],
        *,
        raw: RawConfig | None = None,
        problems: Sequence[ConfigProblem] = (),
        check_only: bool = False,
        print_config: str | None = None,
        command: str | None = None,
    ) -> None:
        self._raw = raw if raw is not None else read_raw_config(args[1:])
        self._early_problems = list(problems)
        self._check_only = check_only
        self._print_config = print_config
        self._dumped = ""  # the parsed config as YAML, once checked
        stage = args[0] if args else "fit"
        self._command = command or stage
        super().__init__(
            model_class=LightningModule,
            datamodule_class=LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_class=config_trainer,
            trainer_defaults={"callbacks": [PredictionFiles()]} if stage == "predict" else None,
            parser_class=ConfigParser,
            parser_kwargs={"prog": "autotimm"},
            # the models save their own hyperparameters (plain data, losses as specs)
            load_from_checkpoint_support=False,
            args=list(args),
        )

    # ------------------------------------------------------------------ parser
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        kwargs["exit_on_error"] = False  # errors come back here, to be reported with the rest
        return super().init_parser(**kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--imports",
            type=list[str] | None,
            default=None,
            help="Modules to import before the config is checked, e.g. the module of a "
            "custom @register_loss class (found in the current directory or the config's).",
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        try:
            self.config = parser.parse_args(args)
        except ArgumentError as error:  # jsonargparse stops at its first problem
            stage = args[0] if args and args[0] in self.subcommands() else "fit"
            result = check_config(
                self._raw.values,
                stage=stage,
                parser=getattr(self, "_subcommand_parsers", {}).get(stage),
                check_types=True,
            )
            problems = [*self._early_problems, *self._raw.problems, *result.problems]
            problems = problems or [ConfigProblem("", _parser_message(error))]
            _fail(self._command, problems, result)

    def _parse_ckpt_path(self) -> None:
        """Merge the checkpoint's hyperparameters into the model config, as LightningCLI does.

        autotimm models store their init arguments as plain data without LightningCLI's
        ``_class_path`` key, so they get the config's ``class_path`` here (LightningCLI's own
        merge would read them as arguments of the ``LightningModule`` base class).
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not isinstance(ckpt_path, str) or not Path(ckpt_path).is_file():
            return  # no checkpoint, a keyword such as "best", or missing (the check reports it)
        try:
            checkpoint = torch.load(ckpt_path, weights_only=True, map_location="cpu")
        except Exception as error:  # not a checkpoint, or not loadable without pickled code
            problem = f"cannot read the checkpoint's hyperparameters: {error}"
            _fail(self._command, [ConfigProblem("ckpt_path", problem)], CheckResult())
        hparams = dict(checkpoint.get("hyper_parameters") or {})
        hparams.pop("_instantiator", None)
        model = self.config[subcommand].get("model")
        class_path = hparams.pop("_class_path", None) or getattr(model, "class_path", None)
        if not hparams or class_path is None:
            return
        section = {"model": {"class_path": class_path, "init_args": hparams}}
        try:
            self.config = self.parser.parse_object({subcommand: section}, self.config)
        except ArgumentError as error:
            problem = (
                f"the checkpoint's hyperparameters do not fit {class_path}: "
                f"{_parser_message(error)}"
            )
            _fail(self._command, [ConfigProblem("ckpt_path", problem)], CheckResult())

    # ------------------------------------------------------------------ check, then build
    def _set_seed(self) -> None:
        # the parsed config is complete here (checkpoint hyperparameters merged): check it
        # before anything else happens, seeding included
        self._check_parsed_config()
        super()._set_seed()

    def _check_parsed_config(self) -> None:
        stage = str(self.subcommand)
        self._dumped = _dump(self._parser(self.subcommand), self.config[stage], keep_null=True)
        result = check_config(yaml.safe_load(self._dumped), stage=stage, check_types=False)
        problems = [*self._early_problems, *result.problems]
        if problems:
            _fail(self._command, problems, result)
        _print_findings(result, notes=self._check_only)

    def before_instantiate_classes(self) -> None:
        stage = str(self.subcommand)
        if self._print_config is not None:
            keep_null = "skip_null" not in self._print_config
            print(
                _dump(self._parser(self.subcommand), self.config[stage], keep_null=keep_null),
                end="",
            )
            raise SystemExit(0)
        if self._check_only:
            print(self._dumped, end="")
            print(f"autotimm {self._command}: the config is valid", file=sys.stderr)
            raise SystemExit(0)


# --------------------------------------------------------------------------- running
def run_config_command(argv: Sequence[str]) -> int:
    """Run ``autotimm <fit|validate|test|predict|check> ...``; return the exit code.

    Example:
        >>> run_config_command(["check", "--config", "missing.yaml"])  # doctest: +SKIP
        2
    """
    command, args = argv[0], list(argv[1:])
    stage = "fit" if command == "check" else command
    args, print_config = _pop_print_config(args)
    raw = read_raw_config(args)
    search = [Path.cwd(), *(path.resolve().parent for path in raw.config_files)]
    problems = import_modules(raw.imports, search)
    args = [a for a in _without_imports_flags(args)]
    if raw.imports:
        args.append(f"--imports={json.dumps(raw.imports)}")
    try:
        AutotimmCLI(
            [stage, *args],
            raw=raw,
            problems=problems,
            check_only=command == "check",
            print_config=print_config,
            command=command,
        )
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 0 if done.code is None else 1
    return 0


def import_modules(modules: Sequence[str], search: Sequence[Path]) -> list[ConfigProblem]:
    """Import ``modules`` with ``search`` directories first on ``sys.path``; report failures.

    As ``python -m`` does for the current directory, so a module next to the config (or in
    the working directory) is found without setting ``PYTHONPATH``.

    Example:
        >>> import_modules(["no_such_module_here"], [])[0].place
        'imports[0]'
    """
    for directory in reversed(search):
        entry = os.fspath(directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    problems = []
    for index, name in enumerate(modules):
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure of the user's module is reported, not raised
            problems.append(
                ConfigProblem(
                    f"imports[{index}]", f"cannot import {name!r}: {type(error).__name__}: {error}"
                )
            )
    return problems


def _pop_print_config(args: list[str]) -> tuple[list[str], str | None]:
    kept, flags = [], None
    for arg in args:
        if arg == "--print_config" or arg.startswith("--print_config="):
            flags = arg.partition("=")[2]
        else:
            kept.append(arg)
    return kept, flags


def _without_imports_flags(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--imports":
            skip = True
        elif not arg.startswith("--imports="):
            kept.append(arg)
    return kept


def _fail(command: str, problems: Sequence[ConfigProblem], result: CheckResult) -> None:
    _print_findings(result, notes=False)
    print(f"autotimm {command}: error: {format_problems(problems)}", file=sys.stderr)
    raise SystemExit(2)


def _print_findings(result: CheckResult, *, notes: bool) -> None:
    for warning in result.warnings:
        print(f"autotimm: warning: {warning}", file=sys.stderr)
    for note in result.notes if notes else ():
        print(f"autotimm: note: {note}", file=sys.stderr)


def _dump(parser: LightningArgumentParser, config: Any, *, keep_null: bool) -> str:
    """``parser.dump`` with or without nulls (jsonargparse 4.49 renamed the keyword)."""
    try:
        return parser.dump(config, skip_unset=not keep_null)
    except (TypeError, ValueError) as error:
        if "skip_unset" not in str(error):
            raise
        return parser.dump(config, skip_none=not keep_null)


def _parser_message(error: ArgumentError) -> str:
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    return "\n".join(lines[:12])

"""Config-driven training: ``autotimm fit --config run.yaml``, checked before anything runs.

- :mod:`autotimm.config.cli`: ``AutotimmCLI`` (LightningCLI) and ``run_config_command``;
- :mod:`autotimm.config.check`: the whole-config checker (every problem, each at its place);
- :mod:`autotimm.config.loss_argument`: how a config names a loss (name or ``{name, params}``);
- :mod:`autotimm.config.schema`: the JSON Schema of config files, for editors;
- :mod:`autotimm.config.raw`, :mod:`~autotimm.config.parser`, :mod:`~autotimm.config.hooks`,
  :mod:`~autotimm.config.trainer`, :mod:`~autotimm.config.predictions`: the parts they use.

Submodules are imported on first use, so ``import autotimm.config`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "AutotimmCLI",
    "ConfigProblem",
    "check_config",
    "config_json_schema",
    "run_config_command",
]

if TYPE_CHECKING:
    from autotimm.config.check import check_config
    from autotimm.config.cli import AutotimmCLI, run_config_command
    from autotimm.config.problems import ConfigProblem
    from autotimm.config.schema import config_json_schema

_LAZY = {
    "AutotimmCLI": "autotimm.config.cli",
    "run_config_command": "autotimm.config.cli",
    "check_config": "autotimm.config.check",
    "ConfigProblem": "autotimm.config.problems",
    "config_json_schema": "autotimm.config.schema",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'autotimm.config' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

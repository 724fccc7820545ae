"""``config_trainer``: ``AutoTrainer`` with the explicit signature a config parser can read.

``AutoTrainer.__init__`` takes ``**trainer_kwargs`` and adds its defaults before it calls
``Trainer.__init__``, which jsonargparse cannot follow, so ``trainer.max_steps`` would be an
unknown option. This function has ``AutoTrainer``'s own keywords plus every ``Trainer``
keyword in its ``__signature__``, with the same types and docs.

A config parser fills in every argument, so a value equal to ``Trainer``'s own default is
dropped before ``AutoTrainer`` is called: ``AutoTrainer`` then applies its defaults exactly as
in Python (``autotimm_runs``, its logger and checkpoint callback, ``PL_TRAINER_*`` variables).
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from lightning.pytorch import Trainer

from autotimm.trainer import AutoTrainer

__all__ = ["config_trainer"]

_TRAINER_PARAMETERS = {
    name: parameter
    for name, parameter in inspect.signature(Trainer.__init__).parameters.items()
    if name != "self"
}


def config_trainer(**kwargs: Any) -> AutoTrainer:
    """Build an :class:`~autotimm.trainer.AutoTrainer` from config values.

    Arguments equal to ``lightning.Trainer``'s defaults are left to ``AutoTrainer``.

    Example:
        >>> trainer = config_trainer(max_epochs=1, logger=False, enable_checkpointing=False)
        >>> trainer.max_epochs
        1
    """
    given = {
        name: value
        for name, value in kwargs.items()
        if name not in _TRAINER_PARAMETERS or not _is_default(name, value)
    }
    return AutoTrainer(**given)


def _is_default(name: str, value: Any) -> bool:
    default = _TRAINER_PARAMETERS[name].default
    try:
        return type(value) is type(default) and bool(value == default)
    except Exception:  # a value that cannot be compared is not a default
        return False


def _signature() -> inspect.Signature:
    hints = typing.get_type_hints(AutoTrainer.__init__)
    own = [
        parameter.replace(annotation=hints.get(name, parameter.annotation))
        for name, parameter in inspect.signature(AutoTrainer.__init__).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    trainer = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _TRAINER_PARAMETERS.values()]
    return inspect.Signature([*own, *trainer], return_annotation=AutoTrainer)


def _doc() -> str:
    """This function's summary, ``AutoTrainer``'s keywords and ``Trainer``'s ``Args:`` entries."""
    summary = (inspect.getdoc(config_trainer) or "").split("\n\n", 1)[0]
    trainer = inspect.getdoc(Trainer.__init__) or ""
    args = trainer.split("Args:\n", 1)[-1].split("\nRaises:", 1)[0]
    return (
        f"{summary}\n\nArgs:\n"
        "    checkpoint_monitor: Metric of the default ModelCheckpoint (``null``: none is added).\n"
        "    checkpoint_mode: ``min`` or ``max``: which value of checkpoint_monitor is best.\n"
        f"{args}"
    )


config_trainer.__signature__ = _signature()  # type: ignore[attr-defined]
config_trainer.__doc__ = _doc()

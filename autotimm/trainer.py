"""``AutoTrainer``: a ``lightning.Trainer`` with defaults that suit the autotimm models."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger
from lightning.pytorch.utilities.argparse import _parse_env_variables

__all__ = ["DEFAULT_ROOT_DIR", "AutoTrainer"]

DEFAULT_ROOT_DIR = "autotimm_runs"


class AutoTrainer(Trainer):
    """A :class:`lightning.Trainer` with sensible defaults; every Trainer keyword passes through.

    Defaults (each only when you did not pass the corresponding keyword):

    - ``default_root_dir="autotimm_runs"``;
    - ``logger``: a ``TensorBoardLogger`` when tensorboard is installed, else a ``CSVLogger``,
      writing under ``default_root_dir``;
    - callbacks: a ``ModelCheckpoint`` on ``checkpoint_monitor`` (``"val/loss"``, mode
      ``checkpoint_mode``, plus ``last.ckpt``) unless you pass your own ``ModelCheckpoint``,
      ``enable_checkpointing=False`` or ``checkpoint_monitor=None``; a
      ``LearningRateMonitor`` when there is a logger. Your ``callbacks`` are kept as given.
    - Lightning's progress bar.

    Values you pass always win, e.g. ``logger=False``, ``callbacks=[...]``,
    ``enable_checkpointing=False``. ``PL_TRAINER_<ARG>`` (and ``PL_AUTOTRAINER_<ARG>``)
    environment variables set defaults for Trainer arguments, as for ``lightning.Trainer``.
    There is no automatic learning-rate or batch-size search.

    Example:
        >>> trainer = AutoTrainer(max_epochs=1, logger=False, enable_checkpointing=False)
        >>> trainer.max_epochs
        1
    """

    def __init__(
        self,
        *,
        checkpoint_monitor: str | None = "val/loss",
        checkpoint_mode: str = "min",
        **trainer_kwargs: Any,
    ) -> None:
        kwargs = {**_env_defaults(), **trainer_kwargs}
        root = kwargs.setdefault("default_root_dir", DEFAULT_ROOT_DIR)
        if "logger" not in kwargs:
            kwargs["logger"] = default_logger(os.fspath(root))
        callbacks = _as_list(kwargs.get("callbacks"))
        checkpointing = kwargs.get("enable_checkpointing", True) is not False
        if (
            checkpointing
            and checkpoint_monitor
            and not any(isinstance(c, ModelCheckpoint) for c in callbacks)
        ):
            callbacks.append(
                ModelCheckpoint(
                    monitor=checkpoint_monitor,
                    mode=checkpoint_mode,
                    save_last=True,
                    filename="epoch={epoch}-step={step}",
                    auto_insert_metric_name=False,
                )
            )
        if _has_logger(kwargs["logger"]) and not any(
            isinstance(c, LearningRateMonitor) for c in callbacks
        ):
            callbacks.append(LearningRateMonitor(logging_interval="step"))
        kwargs["callbacks"] = callbacks
        super().__init__(**kwargs)


def default_logger(save_dir: str) -> Logger:
    """``TensorBoardLogger`` if tensorboard is installed, else ``CSVLogger``, in ``save_dir``.

    Example:
        >>> type(default_logger("autotimm_runs")).__name__ in ("TensorBoardLogger", "CSVLogger")
        True
    """
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        return TensorBoardLogger(save_dir=save_dir, name="logs")
    return CSVLogger(save_dir=save_dir, name="logs")


def _env_defaults() -> dict[str, Any]:
    """``PL_TRAINER_*`` then ``PL_AUTOTRAINER_*`` values for ``lightning.Trainer`` arguments.

    Lightning reads these only for the class whose name they carry, and only for arguments in
    that class's own signature, so a subclass with ``**kwargs`` has to read them itself.
    """
    values = vars(_parse_env_variables(Trainer))
    values.update(vars(_parse_env_variables(Trainer, template="PL_AUTOTRAINER_%(cls_argument)s")))
    return values


def _as_list(callbacks: Callback | Iterable[Callback] | None) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    return list(callbacks)


def _has_logger(logger: Any) -> bool:
    if logger is None or logger is False:
        return False
    if isinstance(logger, Iterable) and not isinstance(logger, Logger):
        return bool(list(logger))
    return True

"""The models' optimiser and learning-rate schedule: timm's AdamW and torch's own schedulers.

AdamW comes from :func:`timm.optim.create_optimizer_v2`, which puts biases and norm
parameters (every parameter with at most one dimension) in a group without weight decay. The
schedule is a linear warmup followed by cosine decay to 0, stepped once per optimiser step:
``SequentialLR(LinearLR, CosineAnnealingLR)``, whose state is plain numbers, so checkpoints
resume it and load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Literal

# the documented public path; timm's __init__ re-exports it without declaring __all__
from timm.optim import create_optimizer_v2  # pyright: ignore[reportPrivateImportUsage]
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR

from autotimm.losses._stack import user_stacklevel

__all__ = [
    "SchedulerName",
    "check_optim_settings",
    "configure_optimizer",
    "create_adamw",
    "warmup_cosine",
]

SchedulerName = Literal["cosine", "none"]
"""``"cosine"``: linear warmup then cosine decay; ``"none"``: a constant learning rate."""


def check_optim_settings(
    lr: Any, weight_decay: Any, warmup_ratio: Any, scheduler: Any
) -> tuple[float, float, float, SchedulerName]:
    """The optimisation arguments, checked, as ``(lr, weight_decay, warmup_ratio, scheduler)``.

    Example:
        >>> check_optim_settings(1e-3, 0, 0.1, "cosine")
        (0.001, 0.0, 0.1, 'cosine')
    """
    if not (_is_number(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if not (_is_number(weight_decay) and weight_decay >= 0):
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
    if not (_is_number(warmup_ratio) and 0 <= warmup_ratio < 1):
        raise ValueError(f"warmup_ratio must be in [0, 1); got {warmup_ratio!r}")
    if scheduler not in ("cosine", "none"):
        raise ValueError(f"scheduler must be 'cosine' or 'none'; got {scheduler!r}")
    return float(lr), float(weight_decay), float(warmup_ratio), scheduler


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def create_adamw(model: nn.Module, lr: float, weight_decay: float) -> Optimizer:
    """timm's AdamW for ``model``: no weight decay on biases and norm parameters.

    Example:
        >>> optimizer = create_adamw(nn.Linear(3, 2), lr=0.1, weight_decay=0.01)
        >>> sorted((len(g["params"]), g["weight_decay"]) for g in optimizer.param_groups)
        [(1, 0.0), (1, 0.01)]
    """
    return create_optimizer_v2(
        model, opt="adamw", lr=lr, weight_decay=weight_decay, filter_bias_and_bn=True
    )


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_ratio: float) -> LRScheduler:
    """Linear warmup over ``round(warmup_ratio * total_steps)`` steps, then cosine decay to 0.

    Step ``s`` of the warmup runs at ``(s + 1) / warmup_steps`` of the learning rate; without
    warmup steps this is a plain ``CosineAnnealingLR``.

    Example:
        >>> optimizer = create_adamw(nn.Linear(2, 2), lr=1.0, weight_decay=0.0)
        >>> schedule = warmup_cosine(optimizer, total_steps=8, warmup_ratio=0.25)
        >>> rates = []
        >>> for _ in range(8):
        ...     rates.append(round(optimizer.param_groups[0]["lr"], 3))
        ...     optimizer.step()
        ...     schedule.step()
        >>> rates
        [0.5, 1.0, 1.0, 0.933, 0.75, 0.5, 0.25, 0.067]
    """
    warmup = round(warmup_ratio * total_steps)
    cosine = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup))
    if warmup == 0:
        return cosine
    # factor (step + 1) / warmup: the last warmup step runs at the full learning rate
    linear = LinearLR(optimizer, start_factor=1.0 / warmup, total_iters=max(1, warmup - 1))
    return SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def configure_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    warmup_ratio: float,
    scheduler: SchedulerName,
    total_steps: float,
) -> Optimizer | dict[str, Any]:
    """What ``LightningModule.configure_optimizers`` returns for the autotimm models.

    ``total_steps`` is ``trainer.estimated_stepping_batches``; when it is infinite (neither
    ``max_steps`` nor ``max_epochs`` set) there is no length to warm up and decay over, so the
    learning rate stays constant, with a warning.

    Example:
        >>> config = configure_optimizer(nn.Linear(2, 2), lr=0.1, weight_decay=0.0,
        ...                              warmup_ratio=0.1, scheduler="cosine", total_steps=100)
        >>> type(config["lr_scheduler"]["scheduler"]).__name__, config["lr_scheduler"]["interval"]
        ('SequentialLR', 'step')
    """
    optimizer = create_adamw(model, lr, weight_decay)
    if scheduler == "none":
        return optimizer
    if not math.isfinite(total_steps):
        warnings.warn(
            "The training length is unknown (neither max_steps nor max_epochs is set), so the "
            "cosine schedule cannot be laid out: the learning rate stays constant at lr. Set "
            "max_steps or max_epochs, or pass scheduler='none' to silence this warning.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
        return optimizer
    schedule = warmup_cosine(optimizer, int(total_steps), warmup_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

"""``TaskModel``: what every autotimm model shares: the step, loss logging and the optimiser.

Every training, validation and test step of every model is the same template,
:meth:`TaskModel.shared_step`::

    images, targets = self.unpack_batch(batch)        # checked: bad input fails here
    if stage == "train":
        images, targets = self.mix_batch(images, targets)  # mixup/cutmix (the classifier)
    outputs = self.step_outputs(images)               # the network
    loss, parts = self.compute_loss(outputs, targets)  # the model's one ModelLoss
    self.log_loss(stage, loss, parts, batch_size)     # {stage}/loss, {stage}/loss_<part>
    self.update_metrics(stage, images, outputs, targets)

A model fills in those hooks; it owns its head, calls its ``self.loss`` and nothing else.
What a model feeds each of its loss arguments is one classmethod, :meth:`TaskModel.loss_slots`,
which the model's ``__init__`` and the config checker both use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from torch import Tensor

from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossSlot
from autotimm.models.optim import SchedulerName, check_optim_settings, configure_optimizer

__all__ = ["Stage", "TaskModel"]

Stage = Literal["train", "val", "test"]
"""``"train"``, ``"val"`` or ``"test"``: the prefix of everything a step logs."""


class TaskModel(LightningModule):
    """Base of the autotimm models: the step template, loss logging, AdamW + warmup/cosine.

    Subclasses call :meth:`set_optimisation` and set ``self.loss`` in ``__init__``, and fill in
    :meth:`unpack_batch`, :meth:`compute_loss` and (optionally) :meth:`step_outputs` and
    :meth:`update_metrics`.
    """

    loss: ModelLoss
    lr: float
    weight_decay: float
    warmup_ratio: float
    scheduler: SchedulerName

    # ------------------------------------------------------------------ the loss arguments
    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """Each loss argument of the model, by name, and what the model feeds it.

        ``init_args`` are the constructor's arguments (those it does not hold have their
        defaults); they may be unchecked (a config that has not been validated), so this
        never raises: unknown values leave the feed's sizes unknown. The model's
        ``__init__`` resolves its losses through these slots, and ``autotimm check`` checks a
        config's losses through them, without building anything.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ the step template
    def unpack_batch(self, batch: Any) -> tuple[Tensor, Any]:
        """``(images, targets)`` of a batch, with the targets checked."""
        raise NotImplementedError

    def mix_batch(self, images: Tensor, targets: Any) -> tuple[Tensor, Any]:
        """A training batch as the model trains on it (mixed up, for a classifier with
        ``mixup_alpha``); as it is by default. Validation and test batches are never mixed."""
        return images, targets

    def step_outputs(self, images: Tensor) -> Any:
        """What :meth:`compute_loss` and :meth:`update_metrics` read; ``self(images)``."""
        return self(images)

    def compute_loss(self, outputs: Any, targets: Any) -> tuple[Tensor, Mapping[str, Tensor]]:
        """The loss and its named parts to log (``{stage}/<name>``)."""
        raise NotImplementedError

    def update_metrics(self, stage: Stage, images: Tensor, outputs: Any, targets: Any) -> None:
        """Update and log the metrics of ``stage`` (nothing by default)."""

    def shared_step(self, batch: Any, stage: Stage) -> Tensor:
        """The loss of one batch; logs it, its parts and the metrics of ``stage``."""
        images, targets = self.unpack_batch(batch)
        if stage == "train":
            images, targets = self.mix_batch(images, targets)
        outputs = self.step_outputs(images)
        loss, parts = self.compute_loss(outputs, targets)
        self.log_loss(stage, loss, parts, batch_size=int(images.shape[0]))
        self.update_metrics(stage, images, outputs, targets)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self.shared_step(batch, "test")

    def log_loss(
        self, stage: Stage, loss: Tensor, parts: Mapping[str, Tensor], batch_size: int
    ) -> None:
        """Log ``{stage}/loss`` (per step in training, per epoch otherwise) and each part."""
        train = stage == "train"
        options: dict[str, Any] = {
            "on_step": train,
            "on_epoch": not train,
            "batch_size": batch_size,
            "sync_dist": not train,
        }
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, **options)
        for name, value in parts.items():
            self.log(f"{stage}/{name}", _scalar(value), **options)

    # ------------------------------------------------------------------ optimisation
    def set_optimisation(
        self, lr: float, weight_decay: float, warmup_ratio: float, scheduler: SchedulerName
    ) -> None:
        """Check and keep the optimisation arguments (``self.lr`` is what LR finders tune)."""
        self.lr, self.weight_decay, self.warmup_ratio, self.scheduler = check_optim_settings(
            lr, weight_decay, warmup_ratio, scheduler
        )

    def configure_optimizers(self) -> Any:
        """timm's AdamW (no weight decay on biases and norm parameters) with a linear warmup
        and cosine decay over ``trainer.estimated_stepping_batches``, stepped per step."""
        return configure_optimizer(
            self,
            lr=self.lr,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            scheduler=self.scheduler,
            total_steps=(
                float(self.trainer.estimated_stepping_batches) if self.scheduler != "none" else 0
            ),
        )


def _scalar(value: Tensor | float) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().float().mean()
    return torch.tensor(float(value))

"""``ImageClassifier``: a timm backbone with its classification head, as a LightningModule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy, MultilabelAccuracy

from autotimm.losses.resolve import LossLike, resolve_loss
from autotimm.models._base import warn_unused
from autotimm.models.backbones import create_backbone
from autotimm.models.batches import images_and, images_of
from autotimm.models.checks import check_class_weights, check_images, check_num_classes
from autotimm.models.hparams import plain_hparam
from autotimm.models.model_loss import ModelLoss
from autotimm.models.optim import SchedulerName
from autotimm.models.task import Stage, TaskModel

__all__ = ["ImageClassifier"]


class ImageClassifier(TaskModel):
    """Image classification on any timm backbone; ``model(x)`` is ``[B, num_classes]`` logits.

    Args:
        backbone: A timm model name (``timm.list_models()``).
        num_classes: Number of classes (>= 1).
        loss_fn: A registry name or alias, a ``LossSpec`` (or its dict) or an ``nn.Module``.
            ``None``: ``"cross_entropy"``, or ``"bce_with_logits"`` when ``multi_label``.
        loss_kwargs: Arguments for a loss given by name; they win over the model's context
            values (``num_classes``, ``class_weights``) that reach the loss when its
            constructor has a parameter of that name.
        multi_label: Targets are multi-hot ``[B, num_classes]`` vectors, not class ids.
        class_weights: Per-class weights, for losses that take ``class_weights``.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        drop_rate: Dropout before the classifier (timm's ``drop_rate``).

    Batches are ``{"image": [B, 3, H, W], "label": [B]}`` dicts or ``(images, labels)``.
    ``model.loss`` is the :class:`~autotimm.models.model_loss.ModelLoss` it trains with.

    Example:
        >>> model = ImageClassifier("resnet18", num_classes=10, pretrained=False)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        loss_fn: LossLike | None = None,
        loss_kwargs: Mapping[str, Any] | None = None,
        multi_label: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        pretrained: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_ratio: float = 0.05,
        scheduler: SchedulerName = "cosine",
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.set_optimisation(lr, weight_decay, warmup_ratio, scheduler)
        if loss_fn is None:
            loss_fn = "bce_with_logits" if multi_label else "cross_entropy"
        weights = check_class_weights(class_weights, num_classes)
        # the loss first: bad loss arguments fail before the backbone is built or data is read
        context = {"num_classes": num_classes, "class_weights": weights}
        resolved = resolve_loss(
            loss_fn,
            context=context,
            kwargs=loss_kwargs,
            fallbacks={"class_weights": lambda: torch.ones(num_classes)},
        )
        if multi_label and resolved.target == "class_indices":
            raise ValueError(
                f"multi_label=True gives multi-hot targets, but loss_fn "
                f"{resolved.to_hparam()!r} takes class indices; use a loss with dense "
                "targets such as 'bce_with_logits'"
            )
        warn_unused(resolved, {"class_weights": weights})
        self.loss = ModelLoss(resolved, class_dim=1, multi_label=multi_label)
        self.backbone = create_backbone(
            backbone, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate
        )
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.in_chans = 3
        self.train_acc = _accuracy(num_classes, multi_label)
        self.val_acc = _accuracy(num_classes, multi_label)
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "loss_fn": resolved.to_hparam(context),
                "loss_kwargs": None,  # merged into loss_fn's params
                "multi_label": multi_label,
                "class_weights": plain_hparam(weights),
                "pretrained": pretrained,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_ratio": warmup_ratio,
                "scheduler": scheduler,
                "drop_rate": drop_rate,
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]`` for images ``[B, 3, H, W]``."""
        return self.backbone(check_images(x, self.in_chans))

    def unpack_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        return images_and(batch, "label")

    def compute_loss(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(outputs, targets), self.loss.components()

    def update_metrics(
        self, stage: Stage, images: Tensor, outputs: Tensor, targets: Tensor
    ) -> None:
        metric = self.train_acc if stage == "train" else self.val_acc
        if self.multi_label:
            probs = outputs.detach().sigmoid()
            if self.num_classes == 1:  # BinaryAccuracy
                probs, targets = probs.reshape(-1), targets.reshape(-1)
            metric(probs, targets.long())
        else:
            metric(outputs.detach().argmax(1), targets)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = images_of(batch)
        logits = self(images)
        return logits.sigmoid() if self.multi_label else logits.softmax(1)


def _accuracy(num_classes: int, multi_label: bool) -> Metric:
    if multi_label:
        return MultilabelAccuracy(num_labels=num_classes) if num_classes > 1 else BinaryAccuracy()
    return MulticlassAccuracy(num_classes=max(num_classes, 2), average="micro")

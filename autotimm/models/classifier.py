"""``ImageClassifier``: a timm backbone with its classification head, as a LightningModule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy, MultilabelAccuracy

from autotimm.losses.resolve import LossLike, resolve_loss
from autotimm.models._base import (
    SchedulerName,
    TaskModel,
    adapt_to_loss,
    check_images,
    check_num_classes,
    create_backbone,
    images_of,
    plain_hparam,
    warn_unused,
)

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
        lr, weight_decay: AdamW settings.
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        drop_rate: Dropout before the classifier (timm's ``drop_rate``).

    Batches are ``{"image": [B, 3, H, W], "label": [B]}`` dicts or ``(images, labels)``.

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
        self._set_optim(lr, weight_decay, warmup_ratio, scheduler)
        if loss_fn is None:
            loss_fn = "bce_with_logits" if multi_label else "cross_entropy"
        weights = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        )
        if weights is not None and weights.shape != (num_classes,):
            raise ValueError(
                f"class_weights must have one weight per class ({num_classes}); "
                f"got shape {list(weights.shape)}"
            )
        # the loss first: bad loss arguments fail before the backbone is built or data is read
        context = {"num_classes": num_classes, "class_weights": weights}
        self.criterion = resolve_loss(
            loss_fn,
            context=context,
            kwargs=loss_kwargs,
            fallbacks={"class_weights": lambda: torch.ones(num_classes)},
        )
        if multi_label and self.criterion.target == "class_indices":
            raise ValueError(
                f"multi_label=True gives multi-hot targets, but loss_fn "
                f"{self.criterion.to_hparam()!r} takes class indices; use a loss with dense "
                "targets such as 'bce_with_logits'"
            )
        warn_unused(self.criterion, {"class_weights": weights})
        self.loss = self.criterion.module
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
                "loss_fn": self.criterion.to_hparam(context),
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

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Mapping):
            return batch["image"], batch["label"]
        images, labels = batch[0], batch[1]
        return images, labels

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        images, labels = self._unpack(batch)
        logits = self(images)
        prediction, target = adapt_to_loss(
            self.criterion, logits, labels, class_dim=1, multi_label=self.multi_label
        )
        loss = self.loss(prediction, target)
        self.log_loss(stage, loss, {"loss": self.loss}, batch_size=images.shape[0])
        metric = self.train_acc if stage == "train" else self.val_acc
        if self.multi_label:
            probs = logits.detach().sigmoid()
            if self.num_classes == 1:  # BinaryAccuracy
                probs, labels = probs.reshape(-1), labels.reshape(-1)
            metric(probs, labels.long())
        else:
            metric(logits.detach().argmax(1), labels)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = images_of(batch)
        logits = self(images)
        return logits.sigmoid() if self.multi_label else logits.softmax(1)


def _accuracy(num_classes: int, multi_label: bool) -> Metric:
    if multi_label:
        return MultilabelAccuracy(num_labels=num_classes) if num_classes > 1 else BinaryAccuracy()
    return MulticlassAccuracy(num_classes=max(num_classes, 2), average="micro")

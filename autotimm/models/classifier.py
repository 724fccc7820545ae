"""``ImageClassifier``: a timm backbone with its classification head, as a LightningModule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy, MultilabelAccuracy

from autotimm.losses.adapt import LossFeed
from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossLike, LossSlot
from autotimm.models.backbones import create_backbone
from autotimm.models.batches import images_and, images_of
from autotimm.models.checks import (
    check_class_weights,
    check_images,
    check_num_classes,
    count_or_none,
    weights_or_none,
)
from autotimm.models.hparams import plain_hparam
from autotimm.models.optim import SchedulerName
from autotimm.models.task import Stage, TaskModel

__all__ = ["ImageClassifier"]


class ImageClassifier(TaskModel):
    """Image classification on any timm backbone; ``model(x)`` is ``[B, num_classes]`` logits.

    Args:
        backbone: A timm model name (``timm.list_models()``).
        num_classes: Number of classes (>= 1). ``1`` without ``multi_label`` is binary
            classification with one sigmoid output: labels are 0 or 1, and the loss must take
            dense targets (e.g. ``"bce_with_logits"``, the default then).
        loss_fn: A registry name or alias, a ``LossSpec`` (or its dict) or an ``nn.Module``.
            ``None``: ``"cross_entropy"``, or ``"bce_with_logits"`` when ``multi_label`` or
            ``num_classes=1``. A loss that cannot take what the model feeds it is refused
            here, naming the losses that can.
        loss_kwargs: Arguments for a loss given by name; they win over the model's context
            values (``num_classes``) that reach the loss when its constructor has a parameter
            of that name.
        multi_label: Targets are multi-hot ``[B, num_classes]`` vectors, not class ids.
        class_weights: Per-class weights; they reach the loss's per-class weight parameter
            (``weight`` of ``cross_entropy``, ...), with a warning for a loss that has none.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        drop_rate: Dropout before the classifier (timm's ``drop_rate``).

    Batches are ``{"image": [B, 3, H, W], "label": [B]}`` dicts or ``(images, labels)``.
    ``model.loss`` is the :class:`~autotimm.models.model_loss.ModelLoss` it trains with.

    Example:
        >>> import torch
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
        weights = check_class_weights(class_weights, num_classes)
        # the loss first: a loss that does not fit, or bad loss arguments, fail before the
        # backbone is built or data is read
        slot = self.loss_slots(
            {"num_classes": num_classes, "multi_label": multi_label, "class_weights": weights}
        )["loss_fn"]
        resolved = slot.resolve(loss_fn, loss_kwargs)
        self.loss = ModelLoss(resolved)
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
                "loss_fn": resolved.to_hparam(),
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

    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """``loss_fn``: logits ``[N, C]`` and class indices ``[N]`` (multi-hot ``[N, C]``
        targets with ``multi_label``); see :meth:`TaskModel.loss_slots`.

        Example:
            >>> ImageClassifier.loss_slots({"num_classes": 3})["loss_fn"].feed.describe()
            'logits [N, C] (C = 3) and class indices [N]'
        """
        num_classes = init_args.get("num_classes")
        classes = count_or_none(num_classes)
        multi_label = init_args.get("multi_label") is True
        if multi_label:
            target, note = "dense", "multi_label=True: multi-hot targets"
        elif classes == 1:
            target, note = "class_indices", "num_classes=1: one sigmoid output for class 1"
        else:
            target, note = "class_indices", ""
        feed = LossFeed(
            task="classification",
            target=target,
            prediction=("N", "C"),
            num_classes=classes,
            note=note,
        )
        return {
            "loss_fn": LossSlot(
                "loss_fn",
                feed,
                owner=cls.__name__,
                context={"num_classes": num_classes},
                class_weights=weights_or_none(init_args.get("class_weights")),
                default="bce_with_logits" if multi_label or classes == 1 else "cross_entropy",
                kwargs_argument="loss_kwargs",
            )
        }

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
        if self.multi_label or self.num_classes == 1:  # independent sigmoid outputs
            probs = outputs.detach().sigmoid()
            if self.num_classes == 1:  # BinaryAccuracy
                probs, targets = probs.reshape(-1), targets.reshape(-1)
            metric(probs, targets.long())
        else:
            metric(outputs.detach().argmax(1), targets)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities: softmax, or sigmoid with ``multi_label`` or one output."""
        images = images_of(batch)
        logits = self(images)
        return logits.sigmoid() if self.multi_label or self.num_classes == 1 else logits.softmax(1)


def _accuracy(num_classes: int, multi_label: bool) -> Metric:
    if num_classes == 1:  # one sigmoid output: class 1 against the rest
        return BinaryAccuracy()
    if multi_label:
        return MultilabelAccuracy(num_labels=num_classes)
    return MulticlassAccuracy(num_classes=num_classes, average="micro")

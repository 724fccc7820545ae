"""``SemanticSegmentor``: DeepLabV3+ on a timm feature backbone, as a LightningModule."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from autotimm.losses._stack import user_stacklevel
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
from autotimm.models.heads import DeepLabV3PlusHead
from autotimm.models.hparams import plain_hparam
from autotimm.models.optim import SchedulerName
from autotimm.models.task import Stage, TaskModel

__all__ = ["LOSS_TYPES", "SemanticSegmentor"]

LOSS_TYPES: dict[str, str] = {
    "combined": "combined_segmentation",
    "ce": "cross_entropy",
    "dice": "dice",
    "focal": "focal_pixelwise",
}
"""The deprecated ``loss_type`` values and the registry losses they stand for."""

DEFAULT_LOSS = "combined_segmentation"


class SemanticSegmentor(TaskModel):
    """Semantic segmentation; ``model(x)`` is ``[B, num_classes, H, W]`` logits at input size.

    A DeepLabV3+ head: ASPP on the backbone's deepest feature, fused with its stride-4
    (or shallowest) feature.

    Args:
        backbone: A timm model name that supports ``features_only=True``.
        num_classes: Number of classes (>= 1). ``1`` is binary segmentation with one sigmoid
            channel and needs a loss with dense targets (``"bce_with_logits"``, the default
            then); masks are then 0 (background) or 1 (foreground). Softmax and class-index
            losses need ``num_classes >= 2`` (for binary masks: ``num_classes=2``).
        loss_fn: A registry name or alias, a ``LossSpec`` (or its dict) or an ``nn.Module``;
            default ``"combined_segmentation"`` (``"bce_with_logits"`` for one channel). A
            loss that cannot take what the model feeds it is refused here, naming the losses
            that can.
        loss_kwargs: Arguments for a loss given by name (they win over context values).
        loss_type: Deprecated: ``"combined"``, ``"ce"``, ``"dice"`` or ``"focal"``; use
            ``loss_fn`` (``combined_segmentation``, ``cross_entropy``, ``dice``,
            ``focal_pixelwise``).
        ce_weight: Weight of the cross-entropy term, for losses that take ``ce_weight``.
        dice_weight: Weight of the Dice term, for losses that take ``dice_weight``.
        ignore_index: Mask value of unlabelled pixels; reaches losses that take
            ``ignore_index`` and masks the metrics. Losses with dense targets have no ignored
            pixels: there they count as background.
        class_weights: Per-class weights; they reach the loss's per-class weight parameter
            (``class_weights`` of ``combined_segmentation``, ``weight`` of ``cross_entropy``,
            ``alpha`` of ``focal_pixelwise``, ...), with a warning for a loss that has none.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        decoder_channels: Width of the ASPP and decoder.
        aspp_rates: Dilation rates of the three atrous ASPP branches.

    Batches are ``{"image": [B, 3, H, W], "mask": [B, H, W]}`` dicts or ``(images, masks)``.
    ``model.loss`` is the :class:`~autotimm.models.model_loss.ModelLoss` it trains with.

    Example:
        >>> model = SemanticSegmentor("resnet18", num_classes=3, pretrained=False)
        >>> model(torch.zeros(1, 3, 64, 64)).shape
        torch.Size([1, 3, 64, 64])
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        loss_fn: LossLike | None = None,
        loss_kwargs: Mapping[str, Any] | None = None,
        loss_type: str | None = None,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        ignore_index: int = 255,
        class_weights: Tensor | Sequence[float] | None = None,
        pretrained: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_ratio: float = 0.05,
        scheduler: SchedulerName = "cosine",
        decoder_channels: int = 256,
        aspp_rates: Sequence[int] = (6, 12, 18),
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.set_optimisation(lr, weight_decay, warmup_ratio, scheduler)
        loss_fn = _from_loss_type(loss_fn, loss_type)
        weights = check_class_weights(class_weights, num_classes)
        # the loss first: a loss that does not fit, or bad loss arguments, fail before the
        # backbone is built or data is read
        slot = self.loss_slots(
            {
                "num_classes": num_classes,
                "ignore_index": ignore_index,
                "class_weights": weights,
                "ce_weight": ce_weight,
                "dice_weight": dice_weight,
            }
        )["loss_fn"]
        resolved = slot.resolve(loss_fn, loss_kwargs)
        self.loss = ModelLoss(resolved)
        self.backbone = create_backbone(backbone, pretrained=pretrained, features_only=True)
        info = cast(Any, self.backbone).feature_info
        reductions, channels = info.reduction(), info.channels()
        self.low_index = next((i for i, r in enumerate(reductions) if r >= 4), 0)
        self.high_index = len(reductions) - 1
        self.head = DeepLabV3PlusHead(
            low_channels=channels[self.low_index],
            high_channels=channels[self.high_index],
            num_classes=num_classes,
            channels=decoder_channels,
            rates=tuple(aspp_rates),
        )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.in_chans = 3
        metric_classes = max(num_classes, 2)
        self.val_miou = MulticlassJaccardIndex(metric_classes, ignore_index=ignore_index)
        self.val_pixel_acc = MulticlassAccuracy(
            metric_classes, average="micro", ignore_index=ignore_index
        )
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "loss_fn": resolved.to_hparam(),
                "loss_kwargs": None,  # merged into loss_fn's params
                "loss_type": None,  # translated into loss_fn
                "ce_weight": ce_weight,
                "dice_weight": dice_weight,
                "ignore_index": ignore_index,
                "class_weights": plain_hparam(weights),
                "pretrained": pretrained,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_ratio": warmup_ratio,
                "scheduler": scheduler,
                "decoder_channels": decoder_channels,
                "aspp_rates": plain_hparam(tuple(aspp_rates)),
            }
        )

    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """``loss_fn``: logits ``[B, C, H, W]`` and class indices ``[B, H, W]`` with
        ``ignore_index``; see :meth:`TaskModel.loss_slots`.

        Example:
            >>> SemanticSegmentor.loss_slots({"num_classes": 1})["loss_fn"].default
            'bce_with_logits'
        """
        num_classes = init_args.get("num_classes")
        classes = count_or_none(num_classes)
        ignore_index = init_args.get("ignore_index", 255)
        feed = LossFeed(
            task="segmentation",
            target="class_indices",
            prediction=("B", "C", "H", "W"),
            num_classes=classes,
            ignore_index=ignore_index if isinstance(ignore_index, int) else None,
            note=(
                "num_classes=1: one sigmoid channel for class 1; for a softmax loss use "
                "num_classes=2"
                if classes == 1
                else ""
            ),
        )
        context = {
            "num_classes": num_classes,
            "ignore_index": ignore_index,
            "ce_weight": init_args.get("ce_weight", 1.0),
            "dice_weight": init_args.get("dice_weight", 1.0),
        }
        return {
            "loss_fn": LossSlot(
                "loss_fn",
                feed,
                owner=cls.__name__,
                context=context,
                class_weights=weights_or_none(init_args.get("class_weights")),
                default="bce_with_logits" if classes == 1 else DEFAULT_LOSS,
                kwargs_argument="loss_kwargs",
            )
        }

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel class logits ``[B, num_classes, H, W]`` for images ``[B, 3, H, W]``."""
        check_images(x, self.in_chans)
        features = self.backbone(x)
        logits = self.head(features[self.low_index], features[self.high_index])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    def labels_of(self, logits: Tensor) -> Tensor:
        """Class index per pixel ``[B, H, W]`` of logits ``[B, num_classes, H, W]``: the
        arg-max, or with one (binary) channel 1 where its logit is positive."""
        if self.num_classes == 1:
            return (logits[:, 0] > 0).long()
        return logits.argmax(1)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Class index per pixel, ``[B, H, W]`` (evaluation mode, no gradients)."""
        was_training = self.training
        self.eval()
        try:
            return self.labels_of(self(images))
        finally:
            self.train(was_training)

    def unpack_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        images, masks = images_and(batch, "mask")
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape[-2:] != images.shape[-2:] or masks.ndim != 3:
            raise ValueError(
                f"masks must be [B, H, W] at the image resolution {list(images.shape[-2:])}; "
                f"got {list(masks.shape)}"
            )
        masks = masks.long()
        if self.num_classes == 1:
            other = masks[(masks != self.ignore_index) & ((masks < 0) | (masks > 1))]
            if other.numel():
                raise ValueError(
                    "num_classes=1 (binary segmentation) takes masks of 0 (background) and 1 "
                    f"(foreground), and ignore_index={self.ignore_index}; got mask values "
                    f"{other.unique().tolist()[:10]}. For more classes set num_classes."
                )
        return images, masks

    def compute_loss(self, outputs: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss(outputs, targets), self.loss.components()

    def update_metrics(
        self, stage: Stage, images: Tensor, outputs: Tensor, targets: Tensor
    ) -> None:
        if stage == "train":
            return
        predicted = self.labels_of(outputs.detach())
        self.val_miou(predicted, targets)
        self.val_pixel_acc(predicted, targets)
        self.log(f"{stage}/miou", self.val_miou, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/pixel_acc", self.val_pixel_acc, on_epoch=True)

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = images_of(batch)
        return self.labels_of(self(images))


def _from_loss_type(loss_fn: LossLike | None, loss_type: str | None) -> LossLike | None:
    """Translate the deprecated ``loss_type`` into a registry name (with a FutureWarning)."""
    if loss_type is None:
        return loss_fn
    if loss_fn is not None:
        raise ValueError(
            "Pass either loss_fn or the deprecated loss_type, not both "
            f"(got loss_fn={loss_fn!r}, loss_type={loss_type!r})"
        )
    if loss_type not in LOSS_TYPES:
        raise ValueError(
            f"loss_type must be one of {', '.join(map(repr, LOSS_TYPES))}; got {loss_type!r}. "
            "loss_type is deprecated: pass loss_fn with any registry loss name instead."
        )
    name = LOSS_TYPES[loss_type]
    warnings.warn(
        f"SemanticSegmentor(loss_type={loss_type!r}) is deprecated; use loss_fn={name!r}.",
        FutureWarning,
        stacklevel=user_stacklevel(),
    )
    return name

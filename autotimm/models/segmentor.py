"""``SemanticSegmentor``: DeepLabV3+ on a timm feature backbone, as a LightningModule."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

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
from autotimm.models.heads import DeepLabV3PlusHead

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
        num_classes: Number of classes (>= 1).
        loss_fn: A registry name or alias, a ``LossSpec`` (or its dict) or an ``nn.Module``;
            default ``"combined_segmentation"``.
        loss_kwargs: Arguments for a loss given by name (they win over context values).
        loss_type: Deprecated: ``"combined"``, ``"ce"``, ``"dice"`` or ``"focal"``; use
            ``loss_fn`` (``combined_segmentation``, ``cross_entropy``, ``dice``,
            ``focal_pixelwise``).
        ce_weight, dice_weight, ignore_index, class_weights: Context values, passed to the
            loss when its constructor has a parameter of that name. ``ignore_index`` also
            masks the metrics.
        pretrained, lr, weight_decay, warmup_ratio, scheduler: As for ``ImageClassifier``.
        decoder_channels: Width of the ASPP and decoder.
        aspp_rates: Dilation rates of the three atrous ASPP branches.

    Batches are ``{"image": [B, 3, H, W], "mask": [B, H, W]}`` dicts or ``(images, masks)``.

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
        self._set_optim(lr, weight_decay, warmup_ratio, scheduler)
        loss_fn = _from_loss_type(loss_fn, loss_type)
        weights = (
            None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        )
        if weights is not None and weights.shape != (num_classes,):
            raise ValueError(
                f"class_weights must have one weight per class ({num_classes}); "
                f"got shape {list(weights.shape)}"
            )
        context = {
            "num_classes": num_classes,
            "ignore_index": ignore_index,
            "class_weights": weights,
            "ce_weight": ce_weight,
            "dice_weight": dice_weight,
        }
        self.criterion = resolve_loss(
            loss_fn,
            context=context,
            kwargs=loss_kwargs,
            fallbacks={"class_weights": lambda: torch.ones(num_classes)},
        )
        warn_unused(self.criterion, {"class_weights": weights})
        self.loss = self.criterion.module
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
                "loss_fn": self.criterion.to_hparam(context),
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

    def forward(self, x: Tensor) -> Tensor:
        """Per-pixel class logits ``[B, num_classes, H, W]`` for images ``[B, 3, H, W]``."""
        check_images(x, self.in_chans)
        features = self.backbone(x)
        logits = self.head(features[self.low_index], features[self.high_index])
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Class index per pixel, ``[B, H, W]`` (evaluation mode, no gradients)."""
        was_training = self.training
        self.eval()
        try:
            return self(images).argmax(1)
        finally:
            self.train(was_training)

    def _unpack(self, batch: Any) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Mapping):
            return batch["image"], batch["mask"]
        return batch[0], batch[1]

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        images, masks = self._unpack(batch)
        if masks.ndim == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]
        if masks.shape[-2:] != images.shape[-2:]:
            raise ValueError(
                f"masks must be [B, H, W] at the image resolution {list(images.shape[-2:])}; "
                f"got {list(masks.shape)}"
            )
        masks = masks.long()
        logits = self(images)
        prediction, target = adapt_to_loss(
            self.criterion, logits, masks, class_dim=1, ignore_index=self.ignore_index
        )
        loss = self.loss(prediction, target)
        self.log_loss(stage, loss, {"loss": self.loss}, batch_size=images.shape[0])
        if stage != "train":
            predicted = logits.detach().argmax(1)
            self.val_miou(predicted, masks)
            self.val_pixel_acc(predicted, masks)
            self.log(f"{stage}/miou", self.val_miou, on_epoch=True, prog_bar=True)
            self.log(f"{stage}/pixel_acc", self.val_pixel_acc, on_epoch=True)
        return loss

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        images = images_of(batch)
        return self(images).argmax(1)


def _from_loss_type(loss_fn: LossLike | None, loss_type: str | None) -> LossLike:
    """Translate the deprecated ``loss_type`` into a registry name (with a FutureWarning)."""
    if loss_type is None:
        return DEFAULT_LOSS if loss_fn is None else loss_fn
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
        stacklevel=3,
    )
    return name

"""``InstanceSegmentor``: the FCOS detector plus a Mask R-CNN style mask head on RoI features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign, roi_align

from autotimm.losses.resolve import LossLike, ResolvedLoss, resolve_loss
from autotimm.models._base import adapt_to_loss
from autotimm.models.detector import DetectionTargets, ObjectDetector
from autotimm.models.heads import MaskHead

__all__ = ["InstanceSegmentor"]


class InstanceSegmentor(ObjectDetector):
    """Instance segmentation: :class:`ObjectDetector` (FCOS) plus a mask head.

    The mask head reads 14x14 RoI features from P3-P5 (``MultiScaleRoIAlign``) and predicts a
    28x28 mask logit map per class. It trains on the ground-truth boxes, with targets cropped
    from the ground-truth masks by ``roi_align``; the detection losses and the mask loss are
    summed. :meth:`predict` adds ``masks [K, H, W]`` (bool, input resolution).

    Args:
        mask_loss_fn: A registry name or alias, a ``LossSpec`` or an ``nn.Module`` for
            ``(mask logits [K, 28, 28], binary targets [K, 28, 28])``; default ``"mask"``.
        mask_loss_kwargs: Arguments for a mask loss given by name.
        mask_weight: Weight of the mask loss in the total.
        mask_channels, mask_convs: Width and depth of the mask head.
        mask_threshold: Probability above which a pixel belongs to the instance.
        Everything else: as for :class:`ObjectDetector`.

    Batches are detection batches plus ``"masks"``: a list of ``[K, H, W]`` binary masks
    aligned with the boxes (as from :class:`autotimm.data.InstanceSegmentationDataModule`).

    Example:
        >>> model = InstanceSegmentor("resnet18", num_classes=2, pretrained=False)
        >>> sorted(model.predict(torch.zeros(1, 3, 64, 64))[0])
        ['boxes', 'labels', 'masks', 'scores']
    """

    MASK_SIZE = 28

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        cls_loss_fn: LossLike = "focal",
        reg_loss_fn: LossLike = "giou",
        mask_loss_fn: LossLike = "mask",
        cls_loss_kwargs: Mapping[str, Any] | None = None,
        reg_loss_kwargs: Mapping[str, Any] | None = None,
        mask_loss_kwargs: Mapping[str, Any] | None = None,
        mask_weight: float = 1.0,
        mask_channels: int = 256,
        mask_convs: int = 4,
        mask_threshold: float = 0.5,
        **detector_kwargs: Any,
    ) -> None:
        # the mask loss first, so that its bad arguments fail before anything is built
        context = {"num_classes": num_classes}
        mask_criterion = resolve_loss(
            mask_loss_fn,
            context=context,
            kwargs=mask_loss_kwargs,
            argument="mask_loss_fn",
        )
        super().__init__(
            backbone,
            num_classes,
            cls_loss_fn=cls_loss_fn,
            reg_loss_fn=reg_loss_fn,
            cls_loss_kwargs=cls_loss_kwargs,
            reg_loss_kwargs=reg_loss_kwargs,
            **detector_kwargs,
        )
        if not 0 <= mask_threshold <= 1:
            raise ValueError(f"mask_threshold must be in [0, 1]; got {mask_threshold!r}")
        self.mask_criterion: ResolvedLoss = mask_criterion
        self.mask_loss = mask_criterion.module
        self.mask_weight = mask_weight
        self.mask_threshold = mask_threshold
        self.roi_pool = MultiScaleRoIAlign(["p3", "p4", "p5"], output_size=14, sampling_ratio=2)
        self.mask_head = MaskHead(
            self.hparams["fpn_channels"], num_classes, channels=mask_channels, num_convs=mask_convs
        )
        self.save_hyperparameters(
            {
                **self.hparams,
                "mask_loss_fn": mask_criterion.to_hparam(context),
                "mask_loss_kwargs": None,  # merged into mask_loss_fn's params
                "mask_weight": mask_weight,
                "mask_channels": mask_channels,
                "mask_convs": mask_convs,
                "mask_threshold": mask_threshold,
            }
        )

    def _map_iou_types(self) -> tuple[str, ...]:
        return ("bbox", "segm")

    # ------------------------------------------------------------------ masks
    def mask_logits(
        self,
        pyramid: Mapping[str, Tensor],
        boxes: list[Tensor],
        labels: list[Tensor],
        image_size: tuple[int, int],
    ) -> Tensor:
        """``[K, 28, 28]`` mask logits of each box's own class (boxes of all images in order)."""
        features = {k: pyramid[k] for k in ("p3", "p4", "p5")}
        rois = self.roi_pool(features, boxes, [image_size] * len(boxes))
        logits = self.mask_head(rois)
        classes = torch.cat(labels) if labels else logits.new_zeros(0, dtype=torch.long)
        return logits[torch.arange(logits.shape[0], device=logits.device), classes]

    def mask_targets(self, targets: DetectionTargets) -> Tensor:
        """Ground-truth masks cropped to their boxes and resampled to 28x28 (``roi_align``)."""
        crops = []
        for target in targets:
            boxes = target["boxes"].float()
            if boxes.numel() == 0:
                continue
            masks = target["masks"].float()[:, None]  # [K, 1, H, W]
            index = torch.arange(boxes.shape[0], device=boxes.device, dtype=boxes.dtype)[:, None]
            crops.append(
                roi_align(
                    masks, torch.cat([index, boxes], 1), self.MASK_SIZE, 1.0, 2, aligned=True
                )[:, 0]
            )
        if not crops:
            return torch.zeros(0, self.MASK_SIZE, self.MASK_SIZE)
        return (torch.cat(crops) >= 0.5).float()

    def compute_losses(
        self, images: Tensor, targets: DetectionTargets
    ) -> tuple[Tensor, dict[str, nn.Module | Tensor]]:
        for i, target in enumerate(targets):
            masks = target.get("masks")
            if (
                masks is None
                or masks.shape[0] != target["boxes"].shape[0]
                or masks.shape[-2:] != images.shape[-2:]
            ):
                raise ValueError(
                    f"targets[{i}] needs 'masks' [K, H, W] with one mask per box at the image "
                    f"resolution {list(images.shape[-2:])}; got "
                    f"{None if masks is None else list(masks.shape)}"
                )
        pyramid = self.features(images)
        detection = self.detection_loss(self._head(pyramid), targets)
        boxes = [t["boxes"].float() for t in targets]
        labels = [t["labels"].long() for t in targets]
        image_size = (int(images.shape[-2]), int(images.shape[-1]))
        logits = self.mask_logits(pyramid, boxes, labels, image_size)
        mask_targets = self.mask_targets(targets).to(logits)
        if logits.shape[0] == 0:
            mask = logits.sum() * 0.0  # no boxes in this batch: keep the graph, add nothing
        else:
            prediction, mask_target = adapt_to_loss(
                self.mask_criterion, logits, mask_targets, class_dim=None
            )
            mask = self.mask_loss(prediction, mask_target)
        return detection + self.mask_weight * mask, {"detection": self.loss, "mask": mask}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections as :meth:`ObjectDetector.predict`, plus ``masks [K, H, W]`` (bool) at
        the input resolution, pasted into each box."""
        was_training = self.training
        self.eval()
        try:
            image_size = (int(images.shape[-2]), int(images.shape[-1]))
            pyramid = self.features(images)
            detections = self._postprocess(self._head(pyramid), image_size)
            boxes = [d["boxes"] for d in detections]
            labels = [d["labels"] for d in detections]
            logits = self.mask_logits(pyramid, boxes, labels, image_size)
            probs = logits.sigmoid()[:, None]
            start = 0
            for detection in detections:
                count = detection["boxes"].shape[0]
                if count:
                    pasted = paste_masks_in_image(
                        probs[start : start + count], detection["boxes"], image_size
                    )[:, 0]
                else:
                    pasted = probs.new_zeros(0, *image_size)
                detection["masks"] = pasted > self.mask_threshold
                start += count
            return detections
        finally:
            self.train(was_training)

    def _map_target(self, target: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {**super()._map_target(target), "masks": target["masks"].bool()}

    def _map_prediction(self, prediction: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {**super()._map_prediction(prediction), "masks": prediction["masks"]}

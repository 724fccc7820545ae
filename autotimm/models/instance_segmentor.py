"""``InstanceSegmentor``: the FCOS detector plus a Mask R-CNN style mask head on RoI features."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import paste_masks_in_image
from torchvision.ops import MultiScaleRoIAlign, roi_align

from autotimm.losses.adapt import LossFeed
from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossLike, LossSlot
from autotimm.models.batches import DetectionTargets, detection_batch
from autotimm.models.checks import check_probability
from autotimm.models.detector import DetectionOutputs, ObjectDetector
from autotimm.models.heads import MaskHead
from autotimm.models.optim import SchedulerName

__all__ = ["InstanceSegmentor"]


class InstanceSegmentor(ObjectDetector):
    """Instance segmentation: :class:`ObjectDetector` (FCOS) plus a mask head.

    The mask head reads 14x14 RoI features from P3-P5 (``MultiScaleRoIAlign``) and predicts a
    28x28 mask logit map per class. It trains on the ground-truth boxes, with targets cropped
    from the ground-truth masks by ``roi_align``; the detection losses and the mask loss are
    summed. :meth:`predict` adds ``masks [K, H, W]`` (bool, input resolution).

    Args:
        backbone: A timm model name with ``features_only`` support and three increasingly
            strided feature levels (used as C3-C5).
        num_classes: Number of object classes (>= 1), background excluded.
        cls_loss_fn: Classification loss of the detector (see :class:`ObjectDetector`).
        reg_loss_fn: Box regression loss of the detector (see :class:`ObjectDetector`).
        mask_loss_fn: A registry name or alias, a ``LossSpec`` or an ``nn.Module``, fed
            ``(mask logits [K, 28, 28], binary targets [K, 28, 28])``: any loss that takes
            logits (or probabilities) with dense targets of their shape; default ``"mask"``.
            It gets none of the model's values (``num_classes`` describes the boxes' classes,
            not the masks).
        cls_loss_kwargs: Arguments for a classification loss given by name.
        reg_loss_kwargs: Arguments for a regression loss given by name.
        mask_loss_kwargs: Arguments for a mask loss given by name.
        mask_weight: Weight of the mask loss in the total.
        mask_channels: Width of the mask head.
        mask_convs: Convolutions of the mask head.
        mask_threshold: Probability above which a pixel belongs to the instance.
        cls_weight: Weight of the classification term of the ``fcos`` criterion.
        reg_weight: Weight of the box regression term.
        centerness_weight: Weight of the centerness term.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        fpn_channels: Width of the FPN and of the detection heads.
        head_convs: Convolutions per detection head tower.
        center_sampling_radius: Positive locations lie within this many strides of a centre.
        score_thresh: Detections need a score above this (in [0, 1]).
        nms_thresh: IoU above which class-wise NMS drops the lower-scored box (in [0, 1]).
        detections_per_img: Most detections kept per image.
        topk_candidates: Most candidates per pyramid level before NMS.
        compute_map: Compute COCO box and mask mAP during validation (``val/bbox_map``,
            ``val/segm_map``).

    Batches are detection batches plus ``"masks"``: a list of ``[K, H, W]`` binary masks
    aligned with the boxes (as from :class:`autotimm.data.InstanceSegmentationDataModule`).
    ``model.loss`` is the detector's ``fcos`` criterion, ``model.mask_loss`` the mask head's
    :class:`~autotimm.models.model_loss.ModelLoss`.

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
        cls_weight: float = 1.0,
        reg_weight: float = 1.0,
        centerness_weight: float = 1.0,
        pretrained: bool = True,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        warmup_ratio: float = 0.05,
        scheduler: SchedulerName = "cosine",
        fpn_channels: int = 256,
        head_convs: int = 4,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        compute_map: bool = True,
    ) -> None:
        # the mask loss first, so that a loss that does not fit, or its bad arguments, fail
        # before anything is built
        mask_slot = self.loss_slots({"num_classes": num_classes})["mask_loss_fn"]
        mask_loss = mask_slot.resolve(mask_loss_fn, mask_loss_kwargs)
        check_probability(mask_threshold, "mask_threshold")
        super().__init__(
            backbone,
            num_classes,
            cls_loss_fn=cls_loss_fn,
            reg_loss_fn=reg_loss_fn,
            cls_loss_kwargs=cls_loss_kwargs,
            reg_loss_kwargs=reg_loss_kwargs,
            cls_weight=cls_weight,
            reg_weight=reg_weight,
            centerness_weight=centerness_weight,
            pretrained=pretrained,
            lr=lr,
            weight_decay=weight_decay,
            warmup_ratio=warmup_ratio,
            scheduler=scheduler,
            fpn_channels=fpn_channels,
            head_convs=head_convs,
            center_sampling_radius=center_sampling_radius,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_img=detections_per_img,
            topk_candidates=topk_candidates,
            compute_map=compute_map,
        )
        self.mask_loss = ModelLoss(mask_loss)
        self.mask_weight = mask_weight
        self.mask_threshold = mask_threshold
        self.roi_pool = MultiScaleRoIAlign(["p3", "p4", "p5"], output_size=14, sampling_ratio=2)
        self.mask_head = MaskHead(
            fpn_channels, num_classes, channels=mask_channels, num_convs=mask_convs
        )
        self.save_hyperparameters(
            {
                **self.hparams,
                "mask_loss_fn": mask_loss.to_hparam(),
                "mask_loss_kwargs": None,  # merged into mask_loss_fn's params
                "mask_weight": mask_weight,
                "mask_channels": mask_channels,
                "mask_convs": mask_convs,
                "mask_threshold": mask_threshold,
            }
        )

    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """The detector's slots plus ``mask_loss_fn``: one mask logit map per box and its
        binary target, ``[K, 28, 28]``; see :meth:`TaskModel.loss_slots`.

        Example:
            >>> InstanceSegmentor.loss_slots({"num_classes": 2})["mask_loss_fn"].feed.describe()
            'logits [K, 28, 28] and 0/1 targets [K, 28, 28]'
        """
        size = str(cls.MASK_SIZE)
        feed = LossFeed(task="segmentation", target="dense", prediction=("K", size, size))
        mask = LossSlot(
            "mask_loss_fn",
            feed,
            owner=cls.__name__,
            default="mask",
            kwargs_argument="mask_loss_kwargs",
        )
        return {**super().loss_slots(init_args), "mask_loss_fn": mask}

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

    # ------------------------------------------------------------------ the step
    def unpack_batch(self, batch: Any) -> tuple[Tensor, DetectionTargets]:
        return detection_batch(batch, self.num_classes, masks=True)

    def compute_loss(
        self, outputs: DetectionOutputs, targets: DetectionTargets
    ) -> tuple[Tensor, dict[str, Tensor]]:
        detection, parts = super().compute_loss(outputs, targets)
        boxes = [t["boxes"].float() for t in targets]
        labels = [t["labels"].long() for t in targets]
        logits = self.mask_logits(outputs.features, boxes, labels, outputs.image_size)
        if logits.shape[0] == 0:
            mask = logits.sum() * 0.0  # no boxes in this batch: keep the graph, add nothing
        else:
            mask = self.mask_loss(logits, self.mask_targets(targets).to(logits))
        named = dict(parts)
        for key, value in self.mask_loss.components().items():  # e.g. the terms of a list
            taken = key in named or key == "loss_mask"
            named[f"loss_mask_{key.removeprefix('loss_')}" if taken else key] = value
        return detection + self.mask_weight * mask, {**named, "loss_mask": mask}

    # ------------------------------------------------------------------ inference
    def detections(self, outputs: DetectionOutputs) -> list[dict[str, Tensor]]:
        """Detections as :meth:`ObjectDetector.detections`, plus ``masks [K, H, W]`` (bool)
        at the input resolution, pasted into each box."""
        detections = super().detections(outputs)
        image_size = outputs.image_size
        boxes = [d["boxes"] for d in detections]
        labels = [d["labels"] for d in detections]
        probs = self.mask_logits(outputs.features, boxes, labels, image_size).sigmoid()[:, None]
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

    def _map_target(self, target: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {**super()._map_target(target), "masks": target["masks"].bool()}

    def _map_prediction(self, prediction: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {**super()._map_prediction(prediction), "masks": prediction["masks"]}

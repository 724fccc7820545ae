"""``ObjectDetector``: FCOS (FPN P3-P7, shared heads with centerness) on a timm backbone.

Training uses the registry's ``fcos`` criterion composed of the chosen classification and
regression losses. Every location not assigned to a box (center sampling inside the box and
the level's size range) is background and trained as a negative.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork, batched_nms, clip_boxes_to_image
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from autotimm.losses.adapt import LossFeed
from autotimm.losses.detection import FCOSLoss
from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossLike, LossSlot, resolve_loss
from autotimm.models.backbones import create_backbone
from autotimm.models.batches import DetectionTargets, detection_batch, images_of
from autotimm.models.checks import (
    check_images,
    check_num_classes,
    check_probability,
    count_or_none,
)
from autotimm.models.fcos import assign_fcos_targets, fcos_locations, level_size_ranges
from autotimm.models.heads import FCOSHead
from autotimm.models.optim import SchedulerName
from autotimm.models.task import Stage, TaskModel

__all__ = ["CRITERION", "DetectionOutputs", "ObjectDetector"]

CRITERION = "fcos"
"""The registry criterion that combines the detector's cls, reg and centerness losses."""

CRITERION_FEED = LossFeed(task="detection", target="structured", prediction=(), inputs=6)
"""What the detector feeds its criterion: logits, boxes and centerness with their targets."""


@dataclasses.dataclass
class DetectionOutputs:
    """The network's outputs for one batch: what the loss, the metrics and ``predict`` read.

    Attributes:
        features: FPN features ``p3``..``p7``.
        head: Per-level head outputs ``cls_logits``, ``box_regression`` and ``centerness``.
        image_size: ``(H, W)`` of the input images.
    """

    features: OrderedDict[str, Tensor]
    head: dict[str, list[Tensor]]
    image_size: tuple[int, int]


class ObjectDetector(TaskModel):
    """FCOS object detection on a timm backbone.

    ``model(x)`` returns the raw head outputs (per-level lists ``cls_logits``,
    ``box_regression`` and ``centerness``); :meth:`predict` returns detections.

    Args:
        backbone: A timm model name with ``features_only`` support and three increasingly
            strided feature levels (used as C3-C5).
        num_classes: Number of object classes (>= 1), background excluded.
        cls_loss_fn: Classification loss: a registry name or alias, a ``LossSpec`` or an
            ``nn.Module``, fed ``(logits [M, C], one-hot targets [M, C])`` by the ``fcos``
            criterion, which needs it summed (see :class:`~autotimm.losses.FCOSLoss`).
        reg_loss_fn: Box regression loss (``"giou"``, ``"diou"``, ``"ciou"`` or a module),
            fed ``(boxes [F, 4], target boxes [F, 4])``, likewise summed.
        cls_loss_kwargs: Arguments for a classification loss given by name.
        reg_loss_kwargs: Arguments for a regression loss given by name.
        cls_weight: Weight of the classification term of the ``fcos`` criterion.
        reg_weight: Weight of the box regression term.
        centerness_weight: Weight of the centerness term.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        fpn_channels: Width of the FPN and of the heads.
        head_convs: Convolutions per head tower.
        center_sampling_radius: Positive locations lie within this many strides of a centre.
        score_thresh: Detections need a score above this (in [0, 1]).
        nms_thresh: IoU above which class-wise NMS drops the lower-scored box (in [0, 1]).
        detections_per_img: Most detections kept per image.
        topk_candidates: Most candidates per pyramid level before NMS.
        compute_map: Compute COCO mAP (torchmetrics) during validation (``val/map``).

    Batches are ``{"image": [B, 3, H, W], "boxes": [[K, 4], ...], "labels": [[K], ...]}``
    (as from :class:`autotimm.data.DetectionDataModule`) or ``(images, targets)`` with
    torchvision-style target dicts. Boxes are ``x1, y1, x2, y2`` in input pixels; a box that
    is not finite or has ``x2 < x1`` or ``y2 < y1``, or a list of boxes shorter than the
    batch, is a ``ValueError`` naming the batch item and the box. ``model.loss`` is the
    :class:`~autotimm.models.model_loss.ModelLoss` of the ``fcos`` criterion.

    Example:
        >>> model = ObjectDetector("resnet18", num_classes=3, pretrained=False)
        >>> dets = model.predict(torch.zeros(1, 3, 64, 64))
        >>> sorted(dets[0])
        ['boxes', 'labels', 'scores']
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        cls_loss_fn: LossLike = "focal",
        reg_loss_fn: LossLike = "giou",
        cls_loss_kwargs: Mapping[str, Any] | None = None,
        reg_loss_kwargs: Mapping[str, Any] | None = None,
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
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.set_optimisation(lr, weight_decay, warmup_ratio, scheduler)
        check_probability(score_thresh, "score_thresh")
        check_probability(nms_thresh, "nms_thresh")
        # the losses first: losses that do not fit, or bad loss arguments, fail before the
        # backbone is built
        slots = self.loss_slots({"num_classes": num_classes})
        cls_loss = slots["cls_loss_fn"].resolve(cls_loss_fn, cls_loss_kwargs)
        reg_loss = slots["reg_loss_fn"].resolve(reg_loss_fn, reg_loss_kwargs)
        criterion = resolve_loss(
            CRITERION,
            feed=CRITERION_FEED,
            context={
                "num_classes": num_classes,
                "cls_weight": cls_weight,
                "reg_weight": reg_weight,
                "centerness_weight": centerness_weight,
            },
            kwargs={"cls_loss": cls_loss.module, "reg_loss": reg_loss.module},
            argument="cls_loss_fn/reg_loss_fn",
            owner=type(self).__name__,
        )
        self.loss = ModelLoss(criterion)

        self.backbone = create_backbone(backbone, pretrained=pretrained, features_only=True)
        info = cast(Any, self.backbone).feature_info
        reductions, channels = info.reduction(), info.channels()
        if len(reductions) < 3 or not (reductions[-3] < reductions[-2] < reductions[-1]):
            raise ValueError(
                f"backbone {backbone!r} must provide three feature levels of increasing stride "
                f"for the FPN; its feature strides are {reductions}"
            )
        self.feature_indices = [len(reductions) - 3, len(reductions) - 2, len(reductions) - 1]
        self.fpn = FeaturePyramidNetwork(
            [channels[i] for i in self.feature_indices],
            fpn_channels,
            extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
        )
        top = reductions[-1]
        self.strides = [reductions[i] for i in self.feature_indices] + [top * 2, top * 4]
        self.head = FCOSHead(fpn_channels, num_classes, num_convs=head_convs, num_levels=5)
        self.num_classes = num_classes
        self.in_chans = 3
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.val_map = _mean_average_precision(self._map_iou_types()) if compute_map else None
        self._map_updates = 0
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "cls_loss_fn": cls_loss.to_hparam(),
                "reg_loss_fn": reg_loss.to_hparam(),
                "cls_loss_kwargs": None,  # merged into cls_loss_fn's params
                "reg_loss_kwargs": None,
                "cls_weight": cls_weight,
                "reg_weight": reg_weight,
                "centerness_weight": centerness_weight,
                "pretrained": pretrained,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_ratio": warmup_ratio,
                "scheduler": scheduler,
                "fpn_channels": fpn_channels,
                "head_convs": head_convs,
                "center_sampling_radius": center_sampling_radius,
                "score_thresh": score_thresh,
                "nms_thresh": nms_thresh,
                "detections_per_img": detections_per_img,
                "topk_candidates": topk_candidates,
                "compute_map": compute_map,
            }
        )

    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """``cls_loss_fn`` and ``reg_loss_fn``: what the ``fcos`` criterion feeds its
        components (:meth:`FCOSLoss.component_feeds`); see :meth:`TaskModel.loss_slots`.

        Example:
            >>> ObjectDetector.loss_slots({"num_classes": 2})["reg_loss_fn"].feed.describe()
            'boxes [F, 4] and target boxes [F, 4]'
        """
        num_classes = init_args.get("num_classes")
        feeds = FCOSLoss.component_feeds(count_or_none(num_classes))
        context = {"num_classes": num_classes}
        return {
            f"{part}_fn": LossSlot(
                f"{part}_fn",
                feeds[part],
                owner=cls.__name__,
                context=context,
                default=default,
                kwargs_argument=f"{part}_kwargs",
            )
            for part, default in (("cls_loss", "focal"), ("reg_loss", "giou"))
        }

    # ------------------------------------------------------------------ network
    def _map_iou_types(self) -> tuple[str, ...]:
        return ("bbox",)

    def features(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """FPN features ``p3``..``p7`` (``fpn_channels`` wide) for images ``[B, 3, H, W]``."""
        check_images(images, self.in_chans)
        feats = self.backbone(images)
        selected = OrderedDict((f"p{3 + i}", feats[j]) for i, j in enumerate(self.feature_indices))
        pyramid = self.fpn(selected)
        return OrderedDict((f"p{3 + i}", f) for i, f in enumerate(pyramid.values()))

    def forward(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Raw per-level head outputs: ``cls_logits [B, C, h, w]``, ``box_regression
        [B, 4, h, w]`` (l, t, r, b in strides) and ``centerness [B, 1, h, w]``."""
        return self._head(self.features(x))

    def _head(self, pyramid: Mapping[str, Tensor]) -> dict[str, list[Tensor]]:
        cls, reg, ctr = self.head(list(pyramid.values()))
        return {"cls_logits": cls, "box_regression": reg, "centerness": ctr}

    def _flatten(
        self, outputs: Mapping[str, list[Tensor]]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Concatenate levels: cls ``[B, P, C]``, boxes ``[B, P, 4]`` xyxy pixels, ctr ``[B, P]``,
        plus the points ``[P, 2]`` and their strides ``[P]``."""
        cls_levels, reg_levels, ctr_levels = (
            outputs["cls_logits"],
            outputs["box_regression"],
            outputs["centerness"],
        )
        shapes = [(int(level.shape[-2]), int(level.shape[-1])) for level in cls_levels]
        device = cls_levels[0].device
        points = fcos_locations(shapes, self.strides, device)
        strides = torch.cat(
            [
                torch.full((p.shape[0],), float(s), device=device)
                for p, s in zip(points, self.strides)
            ]
        )
        points_all = torch.cat(points)
        cls = torch.cat([c.flatten(2).transpose(1, 2) for c in cls_levels], dim=1)
        reg = torch.cat([r.flatten(2).transpose(1, 2) for r in reg_levels], dim=1)
        ctr = torch.cat([c.flatten(1) for c in ctr_levels], dim=1)
        distances = reg * strides[None, :, None]
        boxes = torch.cat(
            [points_all[None] - distances[..., :2], points_all[None] + distances[..., 2:]], dim=2
        )
        return cls, boxes, ctr, points_all, strides

    # ------------------------------------------------------------------ the step
    def unpack_batch(self, batch: Any) -> tuple[Tensor, DetectionTargets]:
        return detection_batch(batch, self.num_classes)

    def step_outputs(self, images: Tensor) -> DetectionOutputs:
        pyramid = self.features(images)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return DetectionOutputs(features=pyramid, head=self._head(pyramid), image_size=size)

    def compute_loss(
        self, outputs: DetectionOutputs, targets: DetectionTargets
    ) -> tuple[Tensor, dict[str, Tensor]]:
        return self.detection_loss(outputs.head, targets), self.loss.components()

    def detection_loss(
        self, outputs: Mapping[str, list[Tensor]], targets: DetectionTargets
    ) -> Tensor:
        """The ``fcos`` criterion over all locations of all images (targets assigned here)."""
        cls, boxes, ctr, points, strides = self._flatten(outputs)
        ranges = level_size_ranges(strides, self.strides)
        cls_t, box_t, ctr_t = [], [], []
        for target in targets:
            c, b, n = assign_fcos_targets(
                points,
                strides,
                ranges,
                target["boxes"].to(points),
                target["labels"].to(points.device),
                self.num_classes,
                self.center_sampling_radius,
            )
            cls_t.append(c)
            box_t.append(b)
            ctr_t.append(n)
        # a structured loss takes the named inputs as they are: nothing to adapt
        return self.loss(
            cls.reshape(-1, self.num_classes),
            boxes.reshape(-1, 4),
            ctr.reshape(-1),
            torch.cat(cls_t),
            torch.cat(box_t),
            torch.cat(ctr_t),
        )

    def update_metrics(
        self,
        stage: Stage,
        images: Tensor,
        outputs: DetectionOutputs,
        targets: DetectionTargets,
    ) -> None:
        if stage == "train" or self.val_map is None:
            return
        detections = self.detections(outputs)  # evaluation mode here, as in predict()
        self._map_updates += 1
        self.val_map.update(
            [self._map_prediction(d) for d in detections],
            [self._map_target(t) for t in targets],
        )

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections per image: ``boxes [K, 4]`` xyxy in input pixels, ``scores [K]``,
        ``labels [K]``, after the score threshold and class-wise NMS (evaluation mode)."""
        was_training = self.training
        self.eval()
        try:
            return self.detections(self.step_outputs(images))
        finally:
            self.train(was_training)

    def detections(self, outputs: DetectionOutputs) -> list[dict[str, Tensor]]:
        """Post-processed detections of the network's outputs (see :meth:`predict`)."""
        cls, boxes, ctr, _, strides = self._flatten(outputs.head)
        level_of = torch.as_tensor(strides)
        results = []
        for b in range(cls.shape[0]):
            all_boxes, all_scores, all_labels = [], [], []
            for stride in self.strides:  # top-k candidates per level, as in FCOS
                on_level = (level_of == stride).nonzero().squeeze(1)
                probs = cls[b, on_level].sigmoid()
                keep = probs > self.score_thresh
                flat = probs[keep]
                point_idx, label_idx = keep.nonzero(as_tuple=True)
                if flat.numel() > self.topk_candidates:
                    flat, order = flat.topk(self.topk_candidates)
                    point_idx, label_idx = point_idx[order], label_idx[order]
                point_idx = on_level[point_idx]
                scores = torch.sqrt(flat * ctr[b, point_idx].sigmoid())
                all_boxes.append(boxes[b, point_idx])
                all_scores.append(scores)
                all_labels.append(label_idx)
            det_boxes = clip_boxes_to_image(torch.cat(all_boxes), outputs.image_size)
            det_scores, det_labels = torch.cat(all_scores), torch.cat(all_labels)
            keep = batched_nms(det_boxes, det_scores, det_labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            results.append(
                {"boxes": det_boxes[keep], "scores": det_scores[keep], "labels": det_labels[keep]}
            )
        return results

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        return self.predict(images_of(batch))

    # ------------------------------------------------------------------ COCO mAP
    def _map_prediction(self, prediction: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {k: prediction[k] for k in ("boxes", "scores", "labels")}

    def _map_target(self, target: Mapping[str, Tensor]) -> dict[str, Tensor]:
        return {"boxes": target["boxes"].float(), "labels": target["labels"].long()}

    def _log_map(self, stage: str) -> None:
        if self.val_map is None or not self._map_updates:  # nothing evaluated this epoch
            return
        self._map_updates = 0
        results = self.val_map.compute()
        self.val_map.reset()
        for key, value in results.items():  # map, map_50, ... (bbox_map, segm_map, ... for masks)
            if "map" in key and "per_class" not in key and value.numel() == 1:
                self.log(f"{stage}/{key}", value.float(), sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._log_map("val")

    def on_test_epoch_end(self) -> None:
        self._log_map("test")


def _mean_average_precision(iou_types: tuple[str, ...]) -> Any:
    """torchmetrics' COCO mAP (needs pycocotools or faster-coco-eval), or None."""
    try:
        from torchmetrics.detection import MeanAveragePrecision

        return MeanAveragePrecision(box_format="xyxy", iou_type=cast(Any, iou_types))
    except (ImportError, ModuleNotFoundError):
        return None

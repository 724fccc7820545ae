"""``ObjectDetector``: FCOS (FPN P3-P7, shared heads with centerness) on a timm backbone.

Training uses the registry's ``fcos`` criterion composed of the chosen classification and
regression losses. Every location not assigned to a box (center sampling inside the box and
the level's size range) is background and trained as a negative.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, batched_nms, clip_boxes_to_image
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from autotimm.losses.resolve import LossLike, ResolvedLoss, resolve_loss
from autotimm.losses.spec import LossSpec
from autotimm.models._base import (
    SchedulerName,
    TaskModel,
    check_images,
    check_num_classes,
    create_backbone,
    images_of,
)
from autotimm.models.heads import FCOSHead

__all__ = [
    "DetectionTargets",
    "ObjectDetector",
    "assign_fcos_targets",
    "fcos_locations",
    "summed_component",
]

DetectionTargets = list[dict[str, Tensor]]
"""Per-image targets: ``{"boxes": float [K, 4] xyxy pixels, "labels": long [K]}`` (+ masks)."""

CRITERION = "fcos"
"""The registry criterion that combines the detector's cls, reg and centerness losses."""


def fcos_locations(
    shapes: Sequence[tuple[int, int]], strides: Sequence[int], device: torch.device
) -> list[Tensor]:
    """Pixel centres ``[H*W, 2]`` (x, y) of every location of every pyramid level.

    Example:
        >>> fcos_locations([(1, 2)], [8], torch.device("cpu"))[0].tolist()
        [[4.0, 4.0], [12.0, 4.0]]
    """
    points = []
    for (h, w), stride in zip(shapes, strides):
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * stride
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1))
    return points


def assign_fcos_targets(
    points: Tensor,
    point_strides: Tensor,
    size_ranges: Tensor,
    boxes: Tensor,
    labels: Tensor,
    num_classes: int,
    radius: float = 1.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """FCOS targets for one image with center sampling.

    A location is positive for a box when it lies within ``radius * stride`` of the box centre
    (clipped to the box) and the box's largest distance from it is in the level's size range;
    among several such boxes the smallest wins. All other locations are background.

    Args:
        points: ``[P, 2]`` location centres; point_strides ``[P]``; size_ranges ``[P, 2]``.
        boxes: ``[G, 4]`` xyxy; labels ``[G]`` in ``0..num_classes-1``.

    Returns:
        ``cls_targets [P]`` (``num_classes`` = background), ``box_targets [P, 4]`` (xyxy of the
        assigned box, zeros for background) and ``centerness_targets [P]``.

    Example:
        >>> pts = torch.tensor([[4.0, 4.0], [12.0, 4.0]])
        >>> cls, box, ctr = assign_fcos_targets(pts, torch.tensor([8.0, 8.0]),
        ...     torch.tensor([[0.0, 64.0]] * 2), torch.tensor([[0.0, 0.0, 8.0, 8.0]]),
        ...     torch.tensor([1]), num_classes=2)
        >>> cls.tolist(), ctr.tolist()
        ([1, 2], [1.0, 0.0])
    """
    num_points = points.shape[0]
    if boxes.numel() == 0:
        return (
            torch.full((num_points,), num_classes, dtype=torch.long, device=points.device),
            points.new_zeros(num_points, 4),
            points.new_zeros(num_points),
        )
    x, y = points[:, 0:1], points[:, 1:2]  # [P, 1]
    x1, y1, x2, y2 = boxes.unbind(1)  # [G]
    ltrb = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=2)  # [P, G, 4]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    reach = point_strides[:, None] * radius  # [P, 1]
    inner = torch.stack(
        [
            x - torch.maximum(cx - reach, x1),
            y - torch.maximum(cy - reach, y1),
            torch.minimum(cx + reach, x2) - x,
            torch.minimum(cy + reach, y2) - y,
        ],
        dim=2,
    )
    in_center = inner.min(dim=2).values > 0
    largest = ltrb.max(dim=2).values
    in_range = (largest >= size_ranges[:, 0:1]) & (largest <= size_ranges[:, 1:2])
    area = ((x2 - x1) * (y2 - y1))[None].expand(num_points, -1)
    area = torch.where(in_center & in_range, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    positive = torch.isfinite(best_area)
    cls_targets = torch.where(positive, labels[best], torch.full_like(best, num_classes))
    box_targets = boxes[best] * positive[:, None]
    d = ltrb[torch.arange(num_points, device=points.device), best].clamp(min=0)
    lr = d[:, [0, 2]]
    tb = d[:, [1, 3]]
    centerness = torch.sqrt(
        (lr.min(1).values / lr.max(1).values.clamp(min=1e-6))
        * (tb.min(1).values / tb.max(1).values.clamp(min=1e-6))
    )
    return cls_targets, box_targets, centerness * positive


def summed_component(
    loss: LossLike,
    *,
    context: Mapping[str, Any],
    kwargs: Mapping[str, Any] | None,
    argument: str,
) -> ResolvedLoss:
    """Resolve a component loss of the FCOS criterion, which expects *summed* losses.

    Names and specs get ``reduction="sum"`` through ``context`` (explicit kwargs still win).
    A registry-built instance whose ``reduction`` is not ``"sum"`` is rebuilt from its spec
    with ``reduction="sum"`` (same class and other parameters); any other such instance is
    used as given, with a warning.

    Example:
        >>> summed_component("giou", context={"reduction": "sum"}, kwargs=None,
        ...                  argument="reg_loss_fn").module.reduction
        'sum'
    """
    resolved = resolve_loss(loss, context=context, kwargs=kwargs, argument=argument)
    reduction = getattr(resolved.module, "reduction", "sum")
    if reduction == "sum" or not isinstance(loss, nn.Module):
        if reduction != "sum":
            warnings.warn(
                f"{argument}: the fcos criterion expects a summed loss, but the loss is "
                f"configured with reduction={reduction!r}",
                UserWarning,
                stacklevel=3,
            )
        return resolved
    parameters = {p.name for p in resolved.entry.parameters} if resolved.entry else set()
    if resolved.spec is not None and "reduction" in parameters:
        spec = LossSpec(
            name=resolved.spec.name, params={**resolved.spec.params, "reduction": "sum"}
        )
        return resolve_loss(spec, argument=argument)
    warnings.warn(
        f"{argument}: the fcos criterion expects a loss that returns a sum, but "
        f"{type(loss).__name__} has reduction={reduction!r} and cannot be rebuilt with "
        "reduction='sum'; the loss term will be scaled down accordingly",
        UserWarning,
        stacklevel=3,
    )
    return resolved


class ObjectDetector(TaskModel):
    """FCOS object detection on a timm backbone.

    ``model(x)`` returns the raw head outputs (per-level lists ``cls_logits``,
    ``box_regression`` and ``centerness``); :meth:`predict` returns detections.

    Args:
        backbone: A timm model name with ``features_only`` support and three increasingly
            strided feature levels (used as C3-C5).
        num_classes: Number of object classes (>= 1), background excluded.
        cls_loss_fn, reg_loss_fn: Registry names or aliases, ``LossSpec`` s or ``nn.Module`` s
            for classification (default ``"focal"``) and box regression (default ``"giou"``).
        cls_loss_kwargs, reg_loss_kwargs: Arguments for losses given by name.
        cls_weight, reg_weight, centerness_weight: Context values for the ``fcos`` criterion.
        pretrained, lr, weight_decay, warmup_ratio, scheduler: As for ``ImageClassifier``.
        fpn_channels: Width of the FPN and of the heads; head_convs: convs per head tower.
        center_sampling_radius: Positive locations lie within this many strides of a centre.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: Post-processing.
        compute_map: Compute COCO mAP (torchmetrics) during validation (``val/map``).

    Batches are ``{"image": [B, 3, H, W], "boxes": [[K, 4], ...], "labels": [[K], ...]}``
    (as from :class:`autotimm.data.DetectionDataModule`) or ``(images, targets)`` with
    torchvision-style target dicts. Boxes are xyxy in input pixels.

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
        self._set_optim(lr, weight_decay, warmup_ratio, scheduler)
        for name, value in (("score_thresh", score_thresh), ("nms_thresh", nms_thresh)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
        # the fcos criterion normalises summed component losses by the number of positives
        context = {"num_classes": num_classes, "reduction": "sum"}
        self.cls_criterion = summed_component(
            cls_loss_fn, context=context, kwargs=cls_loss_kwargs, argument="cls_loss_fn"
        )
        self.reg_criterion = summed_component(
            reg_loss_fn, context=context, kwargs=reg_loss_kwargs, argument="reg_loss_fn"
        )
        self.criterion: ResolvedLoss = resolve_loss(
            CRITERION,
            context={
                "num_classes": num_classes,
                "cls_weight": cls_weight,
                "reg_weight": reg_weight,
                "centerness_weight": centerness_weight,
            },
            kwargs={"cls_loss": self.cls_criterion.module, "reg_loss": self.reg_criterion.module},
            argument="cls_loss_fn/reg_loss_fn",
        )
        self.loss = self.criterion.module

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
                "cls_loss_fn": self.cls_criterion.to_hparam(context),
                "reg_loss_fn": self.reg_criterion.to_hparam(context),
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

    def _size_ranges(self, strides: Tensor) -> Tensor:
        """``[P, 2]`` (low, high) of the largest box side distance each location may regress:
        ``(8 * previous stride, 8 * stride]``, open-ended on the last level."""
        uppers = torch.tensor(
            [8.0 * s for s in self.strides[:-1]] + [float("inf")], device=strides.device
        )
        lowers = torch.cat([uppers.new_zeros(1), uppers[:-1]])
        level = torch.bucketize(
            strides, torch.tensor(self.strides, dtype=strides.dtype, device=strides.device)
        )
        return torch.stack([lowers[level], uppers[level]], dim=1)

    # ------------------------------------------------------------------ losses
    def detection_loss(
        self, outputs: Mapping[str, list[Tensor]], targets: DetectionTargets
    ) -> Tensor:
        """The ``fcos`` criterion over all locations of all images (targets assigned here)."""
        cls, boxes, ctr, points, strides = self._flatten(outputs)
        ranges = self._size_ranges(strides)
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
        return self.loss(
            cls.reshape(-1, self.num_classes),
            boxes.reshape(-1, 4),
            ctr.reshape(-1),
            torch.cat(cls_t),
            torch.cat(box_t),
            torch.cat(ctr_t),
        )

    def compute_losses(
        self, images: Tensor, targets: DetectionTargets
    ) -> tuple[Tensor, dict[str, nn.Module | Tensor]]:
        """Total loss and what to log next to it (modules with ``last_components``, values)."""
        outputs = self(images)
        return self.detection_loss(outputs, targets), {"detection": self.loss}

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict[str, Tensor]]:
        """Detections per image: ``boxes [K, 4]`` xyxy in input pixels, ``scores [K]``,
        ``labels [K]``, after the score threshold and class-wise NMS (evaluation mode)."""
        was_training = self.training
        self.eval()
        try:
            return self._postprocess(self(images), (int(images.shape[-2]), int(images.shape[-1])))
        finally:
            self.train(was_training)

    def _postprocess(
        self, outputs: Mapping[str, list[Tensor]], image_size: tuple[int, int]
    ) -> list[dict[str, Tensor]]:
        cls, boxes, ctr, _, strides = self._flatten(outputs)
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
            det_boxes = clip_boxes_to_image(torch.cat(all_boxes), image_size)
            det_scores, det_labels = torch.cat(all_scores), torch.cat(all_labels)
            keep = batched_nms(det_boxes, det_scores, det_labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            results.append(
                {"boxes": det_boxes[keep], "scores": det_scores[keep], "labels": det_labels[keep]}
            )
        return results

    # ------------------------------------------------------------------ Lightning hooks
    def _unpack(self, batch: Any) -> tuple[Tensor, DetectionTargets]:
        if isinstance(batch, Mapping):
            images = batch["image"]
            keys = [k for k in ("boxes", "labels", "masks") if k in batch]
            targets = [{k: batch[k][i] for k in keys} for i in range(images.shape[0])]
        else:
            images, targets = batch[0], list(batch[1])
        if isinstance(images, (list, tuple)):
            images = torch.stack(list(images))
        for i, target in enumerate(targets):
            boxes, labels = target["boxes"], target["labels"]
            if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
                raise ValueError(
                    f"targets[{i}] must have boxes [K, 4] and labels [K]; got boxes "
                    f"{list(boxes.shape)} and labels {list(labels.shape)}"
                )
            if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
                raise ValueError(
                    f"targets[{i}]['labels'] must be in [0, num_classes={self.num_classes}); "
                    f"got values {labels.unique().tolist()}"
                )
        return images, targets

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        images, targets = self._unpack(batch)
        loss, logged = self.compute_losses(images, targets)
        self.log_loss("train", loss, logged, batch_size=images.shape[0])
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def _evaluate(self, batch: Any, stage: str) -> Tensor:
        images, targets = self._unpack(batch)
        loss, logged = self.compute_losses(images, targets)
        self.log_loss(stage, loss, logged, batch_size=images.shape[0])
        if self.val_map is not None:
            predictions = self.predict(images)
            self._map_updates += 1
            self.val_map.update(
                [self._map_prediction(p) for p in predictions],
                [self._map_target(t) for t in targets],
            )
        return loss

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

    def predict_step(self, batch: Any, batch_idx: int) -> list[dict[str, Tensor]]:
        images = images_of(batch)
        return self.predict(images)


def _mean_average_precision(iou_types: tuple[str, ...]) -> Any:
    """torchmetrics' COCO mAP (needs pycocotools or faster-coco-eval), or None."""
    try:
        from torchmetrics.detection import MeanAveragePrecision

        return MeanAveragePrecision(box_format="xyxy", iou_type=cast(Any, iou_types))
    except (ImportError, ModuleNotFoundError):
        return None

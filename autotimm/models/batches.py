"""What a batch holds: its images and the task's targets, unpacked and checked.

Batches come from the autotimm data modules as dicts (``{"image": ..., "label": ...}``) or
from any ``DataLoader`` as tuples (``(images, labels)``; ``(images, targets)`` with
torchvision-style target dicts for detection). Detection targets are checked here, at the
model's input, so a malformed box is an error that names the batch item and the box rather
than a location the detector silently never trains on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["DetectionTargets", "detection_batch", "images_and", "images_of"]

DetectionTargets = list[dict[str, Tensor]]
"""Per-image targets: ``{"boxes": float [K, 4] xyxy pixels, "labels": long [K]}`` (+ masks)."""

_TARGET_KEYS = ("boxes", "labels", "masks")


def images_of(batch: Any) -> Tensor:
    """The images of a batch: ``batch["image"]``, ``batch[0]`` or the batch itself.

    Example:
        >>> images_of({"image": torch.zeros(1, 3, 4, 4)}).shape
        torch.Size([1, 3, 4, 4])
    """
    if isinstance(batch, Mapping):
        return batch["image"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    return batch


def images_and(batch: Any, key: str) -> tuple[Tensor, Tensor]:
    """``(batch["image"], batch[key])`` of a dict batch, ``(batch[0], batch[1])`` of a tuple.

    Example:
        >>> images, labels = images_and((torch.zeros(2, 3, 4, 4), torch.tensor([0, 1])), "label")
        >>> labels.tolist()
        [0, 1]
    """
    if isinstance(batch, Mapping):
        if key not in batch:
            raise KeyError(f"the batch has no {key!r} entry; it has {sorted(batch)}")
        return batch["image"], batch[key]
    return batch[0], batch[1]


def detection_batch(
    batch: Any, num_classes: int, *, masks: bool = False
) -> tuple[Tensor, DetectionTargets]:
    """Images ``[B, 3, H, W]`` and one checked target dict per image.

    Every image needs ``boxes`` ``[K, 4]`` (finite ``x1, y1, x2, y2`` pixels with
    ``x1 <= x2`` and ``y1 <= y2``) and ``labels`` ``[K]`` in ``[0, num_classes)``; with
    ``masks=True`` also ``masks`` ``[K, H, W]`` at the image resolution.

    Raises:
        ValueError: naming the batch item (and the box) that breaks one of these rules.

    Example:
        >>> batch = {"image": torch.zeros(1, 3, 8, 8), "boxes": [torch.tensor([[5.0, 0, 1, 4]])],
        ...          "labels": [torch.tensor([0])]}
        >>> try:
        ...     detection_batch(batch, num_classes=2)
        ... except ValueError as error:
        ...     print(str(error).split(";")[0])
        targets[0]['boxes'][0] = [5.0, 0.0, 1.0, 4.0] (batch item 0, box 0) has x2 < x1
    """
    if isinstance(batch, Mapping):
        images = batch["image"]
        keys = [k for k in _TARGET_KEYS if k in batch]
        for key in keys:
            _check_length(batch[key], len(images), f"batch[{key!r}]")
        targets = [{k: batch[k][i] for k in keys} for i in range(len(images))]
    else:
        images, given = batch[0], batch[1]
        _check_length(given, len(images), "targets")
        targets = [dict(t) for t in given]
    if isinstance(images, (list, tuple)):
        images = torch.stack(list(images))
    for i, target in enumerate(targets):
        _check_target(i, target, num_classes)
        if masks:
            _check_masks(i, target, images.shape[-2:])
    return images, targets


def _check_length(values: Any, batch_size: int, what: str) -> None:
    if not isinstance(values, (Sequence, Tensor)) or isinstance(values, (str, bytes)):
        raise TypeError(
            f"{what} must be a list with one entry per image; got {type(values).__name__}"
        )
    if len(values) != batch_size:
        missing = f"; batch item {len(values)} has none" if len(values) < batch_size else ""
        raise ValueError(
            f"{what} has {len(values)} entries for a batch of {batch_size} images (one per "
            f"image is needed){missing}"
        )


def _check_target(i: int, target: Mapping[str, Any], num_classes: int) -> None:
    for key in ("boxes", "labels"):
        if not isinstance(target.get(key), Tensor):
            raise TypeError(
                f"targets[{i}][{key!r}] (batch item {i}) must be a tensor; got "
                f"{type(target.get(key)).__name__}"
            )
    boxes, labels = target["boxes"], target["labels"]
    if boxes.ndim != 2 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"targets[{i}] (batch item {i}) must have boxes [K, 4] and labels [K]; got boxes "
            f"{list(boxes.shape)} and labels {list(labels.shape)}"
        )
    if boxes.numel():
        finite = torch.isfinite(boxes).all(1)
        if not bool(finite.all()):
            _box_error(i, boxes, ~finite, "is not finite (NaN or inf)")
        x1, y1, x2, y2 = boxes.unbind(1)
        if bool((x2 < x1).any()):
            _box_error(i, boxes, x2 < x1, "has x2 < x1")
        if bool((y2 < y1).any()):
            _box_error(i, boxes, y2 < y1, "has y2 < y1")
    if labels.numel() and (labels.is_floating_point() or labels.is_complex()):
        raise ValueError(
            f"targets[{i}]['labels'] (batch item {i}) must be integer class indices; got "
            f"{labels.dtype}"
        )
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"targets[{i}]['labels'] must be in [0, num_classes={num_classes}); "
            f"got values {labels.unique().tolist()} (batch item {i})"
        )


def _box_error(i: int, boxes: Tensor, bad: Tensor, problem: str) -> None:
    j = int(bad.nonzero()[0, 0])
    raise ValueError(
        f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} (batch item {i}, box {j}) {problem}; "
        "boxes must be finite x1, y1, x2, y2 pixel coordinates with x1 <= x2 and y1 <= y2 "
        "(torchvision.ops.box_convert converts xywh and cxcywh boxes)"
    )


def _check_masks(i: int, target: Mapping[str, Any], image_size: Sequence[int]) -> None:
    masks = target.get("masks")
    boxes = target["boxes"]
    if (
        not isinstance(masks, Tensor)
        or masks.ndim != 3
        or masks.shape[0] != boxes.shape[0]
        or tuple(masks.shape[-2:]) != tuple(image_size)
    ):
        shape = list(masks.shape) if isinstance(masks, Tensor) else masks
        raise ValueError(
            f"targets[{i}] (batch item {i}) needs 'masks' [K, H, W] with one mask per box at "
            f"the image resolution {list(image_size)}; got {shape}"
        )

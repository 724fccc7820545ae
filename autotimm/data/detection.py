"""Object detection and instance segmentation from COCO-format annotations.

Layout::

    data_dir/
      train/<file_name>                      (file names as listed in the annotation file)
      val/<file_name>
      annotations/instances_train.json
      annotations/instances_val.json
      annotations/instances_test.json + test/ (optional; val is used when absent)

COCO ``bbox`` values are ``[x, y, width, height]``; they are converted to ``x1, y1, x2, y2``.
Category ids (any integers, e.g. ``3`` and ``7``) are mapped to contiguous labels
``0..K-1`` in increasing id order; ``class_names[i]`` / ``category_ids[i]`` give the name and
COCO id of label ``i``. Annotations with ``iscrowd`` set are skipped; images without any
annotation are kept (with ``[0, 4]`` boxes). Instance masks may be polygons, uncompressed RLE
or compressed RLE and are decoded with ``pycocotools``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import Dataset

from autotimm.data.base import BaseImageDataModule
from autotimm.data.files import load_image, require_dir, require_file, verify_input_image
from autotimm.data.transforms import DetectionTransform, image_hw

__all__ = [
    "CocoCategory",
    "CocoDataset",
    "CocoImageRecord",
    "DetectionDataModule",
    "InstanceSegmentationDataModule",
    "decode_segmentation",
    "detection_collate",
    "load_coco_split",
    "rle_counts_from_string",
]


@dataclass(frozen=True)
class CocoCategory:
    """A COCO category: its original ``id`` and ``name``."""

    id: int
    name: str


@dataclass
class CocoImageRecord:
    """One image of a COCO split with its kept (non-crowd, non-degenerate) annotations.

    ``boxes`` are ``[x1, y1, x2, y2]`` in the original image's pixels, ``labels`` contiguous
    label indices and ``segmentations`` the raw COCO segmentation of each box (instance
    segmentation only; empty otherwise).
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    segmentations: list[Any] = field(default_factory=list)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def rle_counts_from_string(counts: str | bytes) -> list[int]:
    """Decode the run lengths of a compressed COCO RLE ``counts`` string.

    The same decoding as pycocotools' ``rleFrString`` (6 bits per character from ``"0"``, 5 of
    them data, a continuation bit and a sign bit; runs from the fourth on are stored relative
    to the run two before), but checked: pycocotools accepts malformed strings and decodes
    them into garbage or fails later, without saying which annotation it was reading.

    Raises:
        ValueError: a character outside ``"0"``..``"o"``, or the string ends inside a number.

    Example:
        >>> rle_counts_from_string("52203")  # the 4x4 mask of decode_segmentation's example
        [5, 2, 2, 2, 5]
    """
    if isinstance(counts, bytes):
        try:
            counts = counts.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError(f"counts are not ASCII: {exc}") from exc
    runs: list[int] = []
    position = 0
    while position < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(counts):
                raise ValueError(f"counts end inside a number (after {len(runs)} runs)")
            code = ord(counts[position]) - 48
            if not 0 <= code < 64:
                raise ValueError(
                    f"invalid character {counts[position]!r} at position {position} of the counts"
                )
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:  # sign bit of the last group: negative number
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _check_runs(runs: Sequence[int], height: int, width: int, kind: str) -> str | None:
    if any(run < 0 for run in runs):
        return f"{kind} RLE counts hold a negative run length"
    if sum(runs) != height * width:
        return f"{kind} RLE counts sum to {sum(runs)}, expected {height}*{width} = {height * width}"
    return None


def _check_segmentation(segm: Any, height: int, width: int) -> str | None:
    """Return a description of what is wrong with a COCO segmentation, or None if it is valid."""
    if isinstance(segm, list):
        if not segm:
            return "empty polygon list"
        for poly in segm:
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                return "polygons must be lists of numbers"
            if len(poly) < 6 or len(poly) % 2:
                return f"a polygon needs an even number (>= 6) of coordinates, got {len(poly)}"
        return None
    if isinstance(segm, dict):
        if "counts" not in segm or "size" not in segm:
            return "RLE needs 'counts' and 'size'"
        size = segm["size"]
        if not isinstance(size, list) or len(size) != 2 or not all(_is_int(v) for v in size):
            return f"RLE size must be [height, width] integers, got {size!r}"
        if size != [height, width]:
            return f"RLE size {size} does not match the image size [{height}, {width}]"
        counts = segm["counts"]
        if isinstance(counts, list):
            if not all(_is_int(v) for v in counts):
                return "uncompressed RLE counts must be integers"
            return _check_runs(counts, height, width, "uncompressed")
        if isinstance(counts, str | bytes):
            try:
                runs = rle_counts_from_string(counts)
            except ValueError as exc:
                return f"malformed compressed RLE: {exc}"
            return _check_runs(runs, height, width, "compressed")
        return "RLE counts must be a list (uncompressed) or a string (compressed)"
    return f"unsupported segmentation type {type(segm).__name__}"


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO polygon / uncompressed RLE / compressed RLE into a ``uint8 [H, W]`` mask.

    Example:
        >>> decode_segmentation([[1, 1, 3, 1, 3, 3, 1, 3]], 4, 4)
        array([[0, 0, 0, 0],
               [0, 1, 1, 0],
               [0, 1, 1, 0],
               [0, 0, 0, 0]], dtype=uint8)
    """
    if isinstance(segmentation, list):  # polygons (one object may have several parts)
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:  # compressed RLE; counts may be str (JSON) or bytes
        rle = segmentation
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def _load_json(ann_file: Path) -> dict[str, Any]:
    require_file(ann_file, "COCO annotation file")
    try:
        with ann_file.open(encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"annotation file {ann_file} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"annotation file {ann_file} must hold a JSON object")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"annotation file {ann_file} needs a list under {key!r}")
    return data


def _parse_categories(data: Mapping[str, Any], ann_file: Path) -> list[CocoCategory]:
    categories: dict[int, CocoCategory] = {}
    for entry in data["categories"]:
        cat_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(cat_id, int) or isinstance(cat_id, bool):
            raise ValueError(f"category {entry!r} in {ann_file} has no integer 'id'")
        if cat_id in categories:
            raise ValueError(f"duplicate category id {cat_id} in {ann_file}")
        categories[cat_id] = CocoCategory(cat_id, str(entry.get("name", cat_id)))
    if not categories:
        raise ValueError(f"annotation file {ann_file} defines no categories")
    return [categories[i] for i in sorted(categories)]


def load_coco_split(
    ann_file: Path,
    image_dir: Path,
    *,
    with_masks: bool = False,
    categories: Sequence[CocoCategory] | None = None,
    verify_images: bool = True,
) -> tuple[list[CocoCategory], list[CocoImageRecord]]:
    """Read and validate one COCO annotation file against the images in ``image_dir``.

    Args:
        ann_file: ``instances_<split>.json``.
        image_dir: folder the ``file_name`` entries are relative to.
        with_masks: require a valid ``segmentation`` on every kept annotation.
        categories: if given (e.g. from the train split), the file's categories must be equal.
        verify_images: open and verify every image with PIL (sizes are checked either way
            when the JSON gives ``width``/``height``).

    Returns:
        The categories sorted by id (label ``i`` = ``categories[i]``) and one record per image.

    Raises:
        FileNotFoundError: missing annotation file, image folder or image file.
        ValueError: invalid JSON or structure, unknown image/category id, corrupt image, image
            size differing from the JSON, malformed bbox or segmentation.

    Example:
        >>> cats, records = load_coco_split(  # doctest: +SKIP
        ...     Path("data/annotations/instances_val.json"), Path("data/val"), with_masks=True)
    """
    require_dir(image_dir, "image directory")
    data = _load_json(ann_file)
    file_categories = _parse_categories(data, ann_file)
    if categories is not None and list(categories) != file_categories:
        raise ValueError(
            f"categories of {ann_file} ({[(c.id, c.name) for c in file_categories]}) differ "
            f"from the train split's ({[(c.id, c.name) for c in categories]})"
        )
    label_of = {cat.id: label for label, cat in enumerate(file_categories)}

    records: dict[int, CocoImageRecord] = {}
    for entry in data["images"]:
        if not isinstance(entry, dict):
            raise ValueError(f"image entry {entry!r} in {ann_file} is not an object")
        image_id, file_name = entry.get("id"), entry.get("file_name")
        if not isinstance(image_id, int) or not isinstance(file_name, str):
            raise ValueError(f"image entry {entry!r} in {ann_file} needs 'id' and 'file_name'")
        if image_id in records:
            raise ValueError(f"duplicate image id {image_id} in {ann_file}")
        path = image_dir / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"image file {path} listed in {ann_file} (id {image_id}) not found"
            )
        json_w, json_h = entry.get("width"), entry.get("height")
        has_json_size = _is_number(json_w) and _is_number(json_h)
        if verify_images or not has_json_size:
            info = verify_input_image(path)
            width, height = info.width, info.height
            if has_json_size and (json_w, json_h) != (width, height):
                raise ValueError(
                    f"image file {path} is {width}x{height} but {ann_file} says {json_w}x{json_h}"
                )
        else:  # trust the JSON size without opening the file
            width, height = int(json_w), int(json_h)  # type: ignore[arg-type]
        records[image_id] = CocoImageRecord(image_id, path, width, height)
    if not records:
        raise ValueError(f"annotation file {ann_file} lists no images")

    for ann in data["annotations"]:
        ann_id = ann.get("id") if isinstance(ann, dict) else None
        where = f"annotation {ann_id} in {ann_file}"
        if not isinstance(ann, dict):
            raise ValueError(f"annotation entry {ann!r} in {ann_file} is not an object")
        record = records.get(ann.get("image_id"))  # type: ignore[arg-type]
        if record is None:
            raise ValueError(f"{where} refers to image id {ann.get('image_id')}, not in 'images'")
        if ann.get("category_id") not in label_of:
            raise ValueError(
                f"{where} has category_id {ann.get('category_id')} not in 'categories' "
                f"{sorted(label_of)}"
            )
        if ann.get("iscrowd", 0):
            continue
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
            raise ValueError(f"{where} has an invalid bbox {bbox!r}; expected [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise ValueError(
                f"{where} has a negative bbox width or height {bbox!r}; expected [x, y, w, h]"
            )
        x1, y1 = min(max(x, 0.0), record.width), min(max(y, 0.0), record.height)
        x2, y2 = min(max(x + w, 0.0), record.width), min(max(y + h, 0.0), record.height)
        if x2 <= x1 or y2 <= y1:  # degenerate (zero-size or fully outside the image)
            continue
        if with_masks:
            segm = ann.get("segmentation")
            problem = _check_segmentation(segm, record.height, record.width)
            if problem is not None:
                raise ValueError(f"{where} has an invalid segmentation: {problem}")
            record.segmentations.append(segm)
        record.boxes.append([x1, y1, x2, y2])
        record.labels.append(label_of[ann["category_id"]])
    return file_categories, list(records.values())


class CocoDataset(Dataset[dict[str, Any]]):
    """COCO records -> ``{"image", "boxes", "labels", "image_id"}`` (+ ``"masks"``).

    ``boxes`` are ``float [K, 4]`` xyxy pixels of the transformed image, ``labels``
    ``long [K]`` and ``masks`` ``uint8 [K, H, W]`` (when ``with_masks``).

    Example:
        >>> ds = CocoDataset([], DetectionTransform(32, train=False))
        >>> len(ds)
        0
    """

    def __init__(
        self,
        records: Sequence[CocoImageRecord],
        transform: DetectionTransform,
        *,
        with_masks: bool = False,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.with_masks = with_masks

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        image = load_image(record.path)
        height, width = image_hw(image)
        if (width, height) != (record.width, record.height):
            raise ValueError(
                f"image file {record.path} is {width}x{height}, expected "
                f"{record.width}x{record.height}"
            )
        boxes = torch.tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor(record.labels, dtype=torch.long)
        masks = None
        if self.with_masks:
            if record.segmentations:
                masks = torch.from_numpy(
                    np.stack(
                        [
                            decode_segmentation(s, record.height, record.width)
                            for s in record.segmentations
                        ]
                    )
                )
            else:
                masks = torch.zeros((0, record.height, record.width), dtype=torch.uint8)
        sample: dict[str, Any] = dict(self.transform(image, boxes, labels, masks))
        sample["image_id"] = record.image_id
        return sample


def detection_collate(batch: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack images; keep per-image targets (``boxes``, ``labels``, ``masks``) as lists.

    Example:
        >>> b = detection_collate([
        ...     {"image": torch.zeros(3, 8, 8), "boxes": torch.zeros(0, 4),
        ...      "labels": torch.zeros(0, dtype=torch.long), "image_id": 7}])
        >>> b["image"].shape, b["boxes"], b["image_id"]
        (torch.Size([1, 3, 8, 8]), [tensor([], size=(0, 4))], tensor([7]))
    """
    if not batch:
        raise ValueError("cannot collate an empty batch")
    out: dict[str, Any] = {"image": torch.stack([sample["image"] for sample in batch])}
    for key in batch[0]:
        if key == "image":
            continue
        values = [sample[key] for sample in batch]
        out[key] = torch.tensor(values, dtype=torch.long) if key == "image_id" else values
    return out


class DetectionDataModule(BaseImageDataModule):
    """COCO object-detection data module.

    Batches are ``{"image": float [B, 3, S, S], "boxes": list of float [K, 4] (xyxy pixels of
    the resized image), "labels": list of long [K], "image_id": long [B]}``. After ``setup()``,
    ``class_names``, ``category_ids`` (label -> COCO id) and ``num_classes`` describe the
    contiguous label space. Every listed image is checked at ``setup()``.

    Example:
        >>> import tempfile
        >>> from autotimm.data.synthetic import make_detection_dataset
        >>> root = make_detection_dataset(tempfile.mkdtemp(), num_classes=2, category_ids=[3, 7])
        >>> dm = DetectionDataModule(root, image_size=64, batch_size=2, num_workers=0)
        >>> dm.setup("fit"); dm.class_names, dm.category_ids
        (['rectangle', 'ellipse'], [3, 7])
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["image"].shape, len(batch["boxes"])
        (torch.Size([2, 3, 64, 64]), 2)
    """

    with_masks: bool = False

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        image_size: int | Sequence[int] = 640,
        batch_size: int = 8,
        num_workers: int | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip_prob: float = 0.5,
        min_box_size: float = 1.0,
        pin_memory: bool | None = None,
        verify_images: bool = True,
    ) -> None:
        if min_box_size < 1:
            raise ValueError(f"min_box_size must be >= 1 pixel, got {min_box_size}")
        super().__init__()  # reads, checks and stores the shared arguments above
        self.min_box_size = min_box_size
        self.collate_fn = detection_collate
        self._categories: list[CocoCategory] | None = None

    @property
    def categories(self) -> list[CocoCategory]:
        """The COCO categories in label order (available after ``setup()``)."""
        if self._categories is None:
            raise RuntimeError("categories are only known after setup()")
        return list(self._categories)

    @property
    def class_names(self) -> list[str]:
        """Category names in label order (available after ``setup()``)."""
        return [c.name for c in self.categories]

    @property
    def category_ids(self) -> list[int]:
        """COCO category id of each label (available after ``setup()``)."""
        return [c.id for c in self.categories]

    @property
    def num_classes(self) -> int:
        """Number of categories (available after ``setup()``)."""
        return len(self.categories)

    def annotation_file(self, split: str) -> Path:
        """Path of the COCO annotation file of ``split``.

        Example:
            >>> DetectionDataModule("data").annotation_file("val")
            PosixPath('data/annotations/instances_val.json')
        """
        return self.data_dir / "annotations" / f"instances_{split}.json"

    def _has_split(self, split: str) -> bool:
        return self.annotation_file(split).is_file()

    def _build_split(self, split: str, *, train: bool) -> CocoDataset:
        image_dir = require_dir(self.data_dir / split, f"{split} split directory")
        categories, records = load_coco_split(
            self.annotation_file(split),
            image_dir,
            with_masks=self.with_masks,
            categories=self._categories,
            verify_images=self.verify_images,
        )
        if self._categories is None:
            self._categories = categories
        transform = DetectionTransform(
            self.image_size,
            train=train,
            mean=self.mean,
            std=self.std,
            hflip_prob=self.hflip_prob,
            min_box_size=self.min_box_size,
        )
        return CocoDataset(records, transform, with_masks=self.with_masks)


class InstanceSegmentationDataModule(DetectionDataModule):
    """COCO instance-segmentation data module: detection batches plus ``"masks"``.

    ``masks`` is a list of ``uint8 [K, S, S]`` binary masks aligned with ``boxes``/``labels``,
    decoded from polygon or RLE segmentations (every kept annotation must have one; this is
    validated at ``setup()``).

    Example:
        >>> import tempfile
        >>> from autotimm.data.synthetic import make_instance_segmentation_dataset
        >>> root = make_instance_segmentation_dataset(tempfile.mkdtemp())
        >>> dm = InstanceSegmentationDataModule(root, image_size=64, batch_size=2, num_workers=0)
        >>> dm.setup("fit")
        >>> next(iter(dm.train_dataloader()))["masks"][0].shape[1:]
        torch.Size([64, 64])
    """

    with_masks = True

"""Write small synthetic datasets of coloured shapes in the formats the data modules read.

Every class has its own shape (rectangle / ellipse / triangle, cycling) and a distinct
saturated colour on a grey, optionally noisy, background, so that small models can overfit
them quickly. Everything is deterministic given ``seed``.

Shapes are rasterised once as exact pixel masks (via ``pycocotools``' polygon rasteriser);
image pixels, semantic masks, COCO boxes and COCO segmentations are all derived from that one
mask, so a decoded annotation covers exactly the pixels painted in the image.

Images are written in the real on-disk formats of :data:`IMAGE_FORMATS`: 8-bit colour PNG and
JPEG, and greyscale 16-bit PNG/TIFF, 32-bit integer TIFF and 32-bit float TIFF (microscopy and
medical data). A high-bit-depth image holds the 8-bit grey level ``g`` of the shape image
(Pillow's ``L`` conversion) as ``g * 257`` (16/32-bit integer; 255 -> 65535) or ``g / 255``
(float), so it loads to the same values as its 8-bit grey version. :func:`save_image` writes any
array in these formats, and segmentation masks can be 16-bit PNGs (class ids above 255).

Example:
    >>> import tempfile
    >>> root = make_detection_dataset(tempfile.mkdtemp(), num_classes=2, seed=0)
    >>> sorted(p.name for p in (root / "annotations").iterdir())
    ['instances_train.json', 'instances_val.json']
"""

from __future__ import annotations

import colorsys
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = [
    "IMAGE_FORMATS",
    "SHAPES",
    "class_colors",
    "make_classification_dataset",
    "make_detection_dataset",
    "make_instance_segmentation_dataset",
    "make_segmentation_dataset",
    "save_image",
]

SHAPES: tuple[str, ...] = ("rectangle", "ellipse", "triangle")
"""Shape of class ``k`` is ``SHAPES[k % 3]``."""

Background = Literal["plain", "noisy"]
ImageFormat = Literal["png", "jpg", "png16", "tif16", "tif32", "tif32f"]

IMAGE_FORMATS: dict[str, tuple[str, str]] = {
    "png": (".png", "uint8"),
    "jpg": (".jpg", "uint8"),
    "png16": (".png", "uint16"),
    "tif16": (".tif", "uint16"),
    "tif32": (".tif", "int32"),
    "tif32f": (".tif", "float32"),
}
"""``image_format`` -> (file suffix, numpy dtype of the pixels :func:`save_image` takes).

``png``/``jpg`` are 8-bit, greyscale ``[H, W]`` or colour ``[H, W, 3]``; the others are
greyscale ``[H, W]``: 16-bit PNG and TIFF (PIL mode ``I;16``), 32-bit signed integer TIFF
(``I``) and 32-bit float TIFF (``F``).
"""

_ELLIPSE_VERTICES = 24


def class_colors(num_classes: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """Distinct saturated RGB colours, hues evenly spread from a seed-dependent offset.

    Example:
        >>> len(class_colors(4, seed=1)), class_colors(4, seed=1) == class_colors(4, seed=1)
        (4, True)
    """
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    offset = float(np.random.default_rng(seed).random())
    colors = []
    for k in range(num_classes):
        hue = (offset + k / num_classes) % 1.0
        value = 0.95 if k % 2 == 0 or num_classes <= 6 else 0.6  # vary brightness if many hues
        r, g, b = colorsys.hsv_to_rgb(hue, 0.9, value)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


# -- rasterisation ----------------------------------------------------------------------------
@dataclass
class _Shape:
    """A rasterised shape: polygon (pixel-edge coordinates) and its exact pixel mask."""

    polygon: list[float]
    mask: np.ndarray  # bool [H, W]


def _polygon(kind: str, x0: float, y0: float, x1: float, y1: float) -> list[float]:
    if kind == "rectangle":
        pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    elif kind == "triangle":
        pts = [(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)]
    elif kind == "ellipse":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        pts = [
            (
                cx + rx * math.cos(2 * math.pi * i / _ELLIPSE_VERTICES),
                cy + ry * math.sin(2 * math.pi * i / _ELLIPSE_VERTICES),
            )
            for i in range(_ELLIPSE_VERTICES)
        ]
    else:
        raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPES}")
    return [round(float(v), 2) for p in pts for v in p]


def _rasterize(polygon: list[float], height: int, width: int) -> np.ndarray:
    polygons: Any = [polygon]  # the pycocotools stubs only admit int coordinates
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def _random_shape(
    rng: np.random.Generator,
    kind: str,
    size: int,
    min_frac: float,
    max_frac: float,
    avoid: Sequence[tuple[float, float, float, float]] = (),
    tries: int = 50,
) -> tuple[_Shape, tuple[float, float, float, float]] | None:
    """A random shape of ``kind`` whose box does not overlap any box in ``avoid``."""
    for _ in range(tries):
        w = float(rng.uniform(min_frac, max_frac) * size)
        h = float(rng.uniform(min_frac, max_frac) * size)
        x0 = float(rng.uniform(1, size - w - 1))
        y0 = float(rng.uniform(1, size - h - 1))
        box = (x0, y0, x0 + w, y0 + h)
        if any(
            box[0] < b[2] + 1 and b[0] < box[2] + 1 and box[1] < b[3] + 1 and b[1] < box[3] + 1
            for b in avoid
        ):
            continue
        polygon = _polygon(kind, *box)
        mask = _rasterize(polygon, size, size)
        if mask.sum() >= 4:
            return _Shape(polygon, mask), box
    return None


def _background(rng: np.random.Generator, size: int, background: Background) -> np.ndarray:
    base = int(rng.integers(100, 156))
    image = np.full((size, size, 3), base, dtype=np.int16)
    if background == "noisy":
        image += rng.integers(-12, 13, size=(size, size, 3), dtype=np.int16)
    elif background != "plain":
        raise ValueError(f"background must be 'plain' or 'noisy', got {background!r}")
    return image


def _paint(
    image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], rng: np.random.Generator
) -> None:
    jitter = rng.integers(-8, 9, size=3)
    image[mask] = np.clip(np.asarray(color) + jitter, 0, 255)


def save_image(path: str | os.PathLike[str], pixels: np.ndarray, image_format: ImageFormat) -> Path:
    """Write ``pixels`` exactly (JPEG: at quality 95) as ``path`` in ``image_format``.

    ``pixels`` must have the dtype and shape :data:`IMAGE_FORMATS` gives for the format, and
    ``path`` its suffix; nothing is converted or clipped.

    Example:
        >>> import tempfile
        >>> ramp = np.linspace(0, 65535, 64 * 64).astype(np.uint16).reshape(64, 64)
        >>> path = save_image(Path(tempfile.mkdtemp()) / "ramp.png", ramp, "png16")
        >>> with Image.open(path) as image:
        ...     image.mode, np.array_equal(np.asarray(image), ramp)
        ('I;16', True)
    """
    path = Path(path)
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}"
        )
    suffix, dtype = IMAGE_FORMATS[image_format]
    if path.suffix.lower() != suffix:
        raise ValueError(f"a {image_format!r} image needs the suffix {suffix!r}, got {path}")
    greyscale_only = dtype != "uint8"
    if pixels.dtype != np.dtype(dtype) or not (
        pixels.ndim == 2 or (not greyscale_only and pixels.ndim == 3 and pixels.shape[2] == 3)
    ):
        shape = "[H, W]" if greyscale_only else "[H, W] or [H, W, 3]"
        raise ValueError(
            f"{image_format!r} pixels must be {dtype} {shape}, got {pixels.dtype} "
            f"{list(pixels.shape)}"
        )
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if image_format == "jpg":
        image.save(path, quality=95)
    else:
        image.save(path)
    return path


def _write_shape_image(image: np.ndarray, path: Path, image_format: ImageFormat) -> None:
    """Write a painted ``[H, W, 3]`` shape image in ``image_format`` (see the module doc)."""
    rgb = np.clip(image, 0, 255).astype(np.uint8)
    if IMAGE_FORMATS[image_format][1] == "uint8":
        save_image(path, rgb, image_format)
        return
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    dtype = IMAGE_FORMATS[image_format][1]
    if dtype == "float32":
        pixels = grey.astype(np.float32) / np.float32(255)
    else:  # 255 * 257 = 65535: the 8-bit range stretched onto the 16-bit one
        pixels = grey.astype(dtype) * 257
    save_image(path, pixels, image_format)


def _check_common(num_classes: int, image_size: int, image_format: str) -> str:
    """Check the shared arguments; return the image files' suffix (with its dot)."""
    if num_classes <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if image_format not in IMAGE_FORMATS:
        raise ValueError(
            f"image_format must be one of {sorted(IMAGE_FORMATS)}, got {image_format!r}"
        )
    return IMAGE_FORMATS[image_format][0]


# -- classification ---------------------------------------------------------------------------
def make_classification_dataset(
    root: str | os.PathLike[str],
    num_classes: int = 3,
    images_per_class: int = 8,
    image_size: int = 64,
    seed: int = 0,
    *,
    val_images_per_class: int | None = None,
    background: Background = "noisy",
    image_format: ImageFormat = "png",
) -> Path:
    """Write ``root/{train,val}/<class_name>/*.png`` with one shape per image.

    Class ``k`` is named ``class_<k>_<shape>`` (zero-padded, so folder order = ``k``) and drawn
    in its own colour. ``val_images_per_class`` defaults to ``max(1, images_per_class // 4)``.

    Example:
        >>> import tempfile
        >>> root = make_classification_dataset(tempfile.mkdtemp(), num_classes=3)
        >>> sorted(p.name for p in (root / "train").iterdir())
        ['class_00_rectangle', 'class_01_ellipse', 'class_02_triangle']
    """
    suffix = _check_common(num_classes, image_size, image_format)
    if images_per_class <= 0:
        raise ValueError(f"images_per_class must be positive, got {images_per_class}")
    n_val = max(1, images_per_class // 4) if val_images_per_class is None else val_images_per_class
    root = Path(root)
    rng = np.random.default_rng(seed)
    colors = class_colors(num_classes, seed)
    for split, count in (("train", images_per_class), ("val", n_val)):
        for k in range(num_classes):
            kind = SHAPES[k % len(SHAPES)]
            folder = root / split / f"class_{k:02d}_{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = _background(rng, image_size, background)
                placed = _random_shape(rng, kind, image_size, 0.35, 0.7)
                assert placed is not None  # a single shape always fits
                _paint(image, placed[0].mask, colors[k], rng)
                _write_shape_image(image, folder / f"{i:04d}{suffix}", image_format)
    return root


# -- semantic segmentation --------------------------------------------------------------------
def _outer_ring(mask: np.ndarray) -> np.ndarray:
    """Pixels 4-adjacent to ``mask`` but outside it."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown & ~mask


def make_segmentation_dataset(
    root: str | os.PathLike[str],
    num_classes: int = 3,
    num_train: int = 16,
    num_val: int = 4,
    image_size: int = 64,
    seed: int = 0,
    ignore_border: bool = True,
    *,
    max_shapes: int = 3,
    ignore_index: int = 255,
    background: Background = "noisy",
    image_format: ImageFormat = "png",
    mask_bits: Literal[8, 16] = 8,
) -> Path:
    """Write ``root/{train,val}/images/<stem>.png`` + ``masks/<stem>.png``.

    ``num_classes`` counts the background: class ``0`` is background and shapes use classes
    ``1..num_classes-1`` (class ``k`` has shape ``SHAPES[(k - 1) % 3]``). Each image holds
    ``1..max_shapes`` shapes. With ``ignore_border`` a 1-pixel ring around every shape is
    labelled ``ignore_index`` (255). Masks are 8-bit PNGs (mode ``L``), or with
    ``mask_bits=16`` 16-bit PNGs (mode ``I;16``), which hold class ids and an ``ignore_index``
    up to 65535.

    Example:
        >>> import tempfile
        >>> root = make_segmentation_dataset(tempfile.mkdtemp(), num_classes=3)
        >>> mask = np.asarray(Image.open(root / "train/masks/0000.png"))
        >>> {0, 255} <= set(np.unique(mask).tolist()) <= {0, 1, 2, 255}
        True
    """
    suffix = _check_common(num_classes, image_size, image_format)
    if num_classes < 2:
        raise ValueError(
            f"num_classes must be >= 2 (background + 1 shape class), got {num_classes}"
        )
    if mask_bits not in (8, 16):
        raise ValueError(f"mask_bits must be 8 or 16, got {mask_bits!r}")
    max_label = 2**mask_bits - 1
    if not num_classes <= ignore_index <= max_label:
        raise ValueError(
            f"ignore_index must be in [num_classes, {max_label}] for {mask_bits}-bit masks, "
            f"got {ignore_index}"
        )
    if max_shapes <= 0:
        raise ValueError(f"max_shapes must be positive, got {max_shapes}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    colors = class_colors(num_classes - 1, seed)
    for split, count in (("train", num_train), ("val", num_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = _background(rng, image_size, background)
            mask = np.zeros(
                (image_size, image_size), dtype=np.uint8 if mask_bits == 8 else np.uint16
            )
            for _ in range(int(rng.integers(1, max_shapes + 1))):
                cls = int(rng.integers(1, num_classes))
                placed = _random_shape(rng, SHAPES[(cls - 1) % len(SHAPES)], image_size, 0.2, 0.5)
                assert placed is not None
                shape = placed[0]
                _paint(image, shape.mask, colors[cls - 1], rng)
                if ignore_border:
                    mask[_outer_ring(shape.mask)] = ignore_index
                mask[shape.mask] = cls
            _write_shape_image(image, root / split / "images" / f"{i:04d}{suffix}", image_format)
            Image.fromarray(mask).save(root / split / "masks" / f"{i:04d}.png")  # L or I;16
    return root


# -- COCO detection / instance segmentation ---------------------------------------------------
def _write_coco(
    root: Path,
    *,
    num_classes: int,
    splits: Sequence[tuple[str, int]],
    image_size: int,
    min_objects: int,
    max_objects: int,
    seed: int,
    category_ids: Sequence[int] | None,
    background: Background,
    image_format: ImageFormat,
    rle_every: int | None,
) -> Path:
    if not 0 <= min_objects <= max_objects or max_objects <= 0:
        raise ValueError(
            f"need 0 <= min_objects <= max_objects and max_objects > 0, "
            f"got {min_objects}, {max_objects}"
        )
    ids = (
        list(range(1, num_classes + 1)) if category_ids is None else [int(c) for c in category_ids]
    )
    if len(ids) != num_classes or len(set(ids)) != num_classes:
        raise ValueError(f"category_ids must be {num_classes} distinct ints, got {category_ids}")
    rng = np.random.default_rng(seed)
    colors = class_colors(num_classes, seed)
    names = [
        SHAPES[k % len(SHAPES)] + ("" if k < len(SHAPES) else f"_{k // len(SHAPES)}")
        for k in range(num_classes)
    ]
    categories = [
        {"id": ids[k], "name": names[k], "supercategory": "shape"} for k in range(num_classes)
    ]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    suffix = IMAGE_FORMATS[image_format][0]
    ann_id = 1
    for split, count in splits:
        (root / split).mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for i in range(count):
            image_id = i + 1
            file_name = f"{i:05d}{suffix}"
            image = _background(rng, image_size, background)
            boxes: list[tuple[float, float, float, float]] = []
            for _ in range(int(rng.integers(min_objects, max_objects + 1))):
                k = int(rng.integers(0, num_classes))
                placed = _random_shape(
                    rng, SHAPES[k % len(SHAPES)], image_size, 0.2, 0.4, avoid=boxes
                )
                if placed is None:  # no free room left in this image
                    break
                shape, box = placed
                boxes.append(box)
                _paint(image, shape.mask, colors[k], rng)
                rle = mask_utils.encode(np.asfortranarray(shape.mask.astype(np.uint8)))
                x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
                segmentation: Any
                if rle_every is not None and ann_id % rle_every == 0:
                    counts: Any = rle["counts"]  # bytes at runtime; JSON needs str
                    segmentation = {"size": rle["size"], "counts": counts.decode("ascii")}
                else:
                    segmentation = [shape.polygon]
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": ids[k],
                        "bbox": [x, y, w, h],
                        "area": float(shape.mask.sum()),
                        "iscrowd": 0,
                        "segmentation": segmentation,
                    }
                )
                ann_id += 1
            _write_shape_image(image, root / split / file_name, image_format)
            images.append(
                {"id": image_id, "file_name": file_name, "width": image_size, "height": image_size}
            )
        coco = {
            "info": {"description": "autotimm synthetic shapes", "version": "1.0"},
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
        with (root / "annotations" / f"instances_{split}.json").open("w", encoding="utf-8") as f:
            json.dump(coco, f, indent=1)
    return root


def make_detection_dataset(
    root: str | os.PathLike[str],
    num_classes: int = 2,
    num_train: int = 16,
    num_val: int = 4,
    image_size: int = 64,
    max_objects: int = 3,
    seed: int = 0,
    *,
    min_objects: int = 1,
    category_ids: Sequence[int] | None = None,
    background: Background = "noisy",
    image_format: ImageFormat = "png",
) -> Path:
    """Write a COCO detection dataset: ``root/{train,val}/*.png`` + ``annotations/*.json``.

    Each image holds ``min_objects..max_objects`` non-overlapping shapes; ``bbox`` is the tight
    ``[x, y, w, h]`` of the painted pixels and ``segmentation`` its polygon. Category ``k`` has
    COCO id ``category_ids[k]`` (default ``k + 1``) and is named after its shape.

    Example:
        >>> import tempfile
        >>> root = make_detection_dataset(tempfile.mkdtemp(), category_ids=[3, 7])
        >>> json.loads((root / "annotations/instances_val.json").read_text())["categories"][1]
        {'id': 7, 'name': 'ellipse', 'supercategory': 'shape'}
    """
    _check_common(num_classes, image_size, image_format)
    return _write_coco(
        Path(root),
        num_classes=num_classes,
        splits=(("train", num_train), ("val", num_val)),
        image_size=image_size,
        min_objects=min_objects,
        max_objects=max_objects,
        seed=seed,
        category_ids=category_ids,
        background=background,
        image_format=image_format,
        rle_every=None,
    )


def make_instance_segmentation_dataset(
    root: str | os.PathLike[str],
    num_classes: int = 2,
    num_train: int = 16,
    num_val: int = 4,
    image_size: int = 64,
    max_objects: int = 3,
    seed: int = 0,
    *,
    min_objects: int = 1,
    category_ids: Sequence[int] | None = None,
    background: Background = "noisy",
    image_format: ImageFormat = "png",
) -> Path:
    """Like :func:`make_detection_dataset`, with every second annotation's segmentation stored
    as compressed RLE (``pycocotools.mask.encode``) and the others as polygons.

    Example:
        >>> import tempfile
        >>> root = make_instance_segmentation_dataset(tempfile.mkdtemp())
        >>> coco = json.loads((root / "annotations/instances_train.json").read_text())
        >>> sorted({type(a["segmentation"]).__name__ for a in coco["annotations"]})
        ['dict', 'list']
    """
    _check_common(num_classes, image_size, image_format)
    return _write_coco(
        Path(root),
        num_classes=num_classes,
        splits=(("train", num_train), ("val", num_val)),
        image_size=image_size,
        min_objects=min_objects,
        max_objects=max_objects,
        seed=seed,
        category_ids=category_ids,
        background=background,
        image_format=image_format,
        rle_every=2,
    )

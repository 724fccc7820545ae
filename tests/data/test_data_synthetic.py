"""Tests of the synthetic coloured-shape dataset writers (autotimm.data.synthetic)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from autotimm.data import decode_segmentation
from autotimm.data.synthetic import (
    IMAGE_FORMATS,
    SHAPES,
    class_colors,
    make_classification_dataset,
    make_detection_dataset,
    make_instance_segmentation_dataset,
    make_segmentation_dataset,
    save_image,
)

# pycocotools itself triggers a numpy-2 DeprecationWarning inside mask.decode.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

# Painted shape pixels are the class colour plus a per-object jitter in [-8, 8].
JITTER = 8


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _near(pixels: np.ndarray, color: tuple[int, int, int], tol: int = JITTER) -> bool:
    return bool(np.all(np.abs(pixels - np.asarray(color)) <= tol))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


WRITERS = {
    "classification": lambda root, seed: make_classification_dataset(
        root, num_classes=3, images_per_class=3, image_size=32, seed=seed
    ),
    "segmentation": lambda root, seed: make_segmentation_dataset(
        root, num_classes=3, num_train=3, num_val=2, image_size=32, seed=seed
    ),
    "detection": lambda root, seed: make_detection_dataset(
        root, num_classes=2, num_train=3, num_val=2, image_size=48, seed=seed
    ),
    "instance": lambda root, seed: make_instance_segmentation_dataset(
        root, num_classes=3, num_train=3, num_val=2, image_size=48, seed=seed
    ),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_writers_are_deterministic_given_seed(tmp_path: Path, kind: str) -> None:
    write = WRITERS[kind]
    a = _tree_bytes(write(tmp_path / "a", 5))
    b = _tree_bytes(write(tmp_path / "b", 5))
    c = _tree_bytes(write(tmp_path / "c", 6))
    assert a and a == b
    assert a.keys() == c.keys()
    assert a != c


def test_class_colors_are_distinct_and_seeded() -> None:
    colors = class_colors(6, seed=3)
    assert len(set(colors)) == 6
    assert colors == class_colors(6, seed=3)
    assert colors != class_colors(6, seed=4)
    # Far apart from each other, and saturated (far from the grey background).
    arr = np.asarray(colors, dtype=float)
    dists = np.linalg.norm(arr[:, None] - arr[None], axis=-1)
    assert dists[~np.eye(6, dtype=bool)].min() > 60
    assert (arr.max(1) - arr.min(1)).min() > 100
    with pytest.raises(ValueError):
        class_colors(0)


def test_classification_layout_and_colours(tmp_path: Path) -> None:
    root = make_classification_dataset(
        tmp_path, num_classes=4, images_per_class=5, image_size=40, seed=1, val_images_per_class=2
    )
    assert root == tmp_path
    colors = class_colors(4, seed=1)
    for split, count in (("train", 5), ("val", 2)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == [f"class_{k:02d}_{SHAPES[k % 3]}" for k in range(4)]
        for k, name in enumerate(folders):
            files = sorted((root / split / name).iterdir())
            assert [f.suffix for f in files] == [".png"] * count
            for f in files:
                image = _rgb(f)
                assert image.shape == (40, 40, 3)
                # A sizeable blob of the class colour is present (shape covers >= ~5%).
                close = np.all(np.abs(image - np.asarray(colors[k])) <= JITTER * 2, axis=-1)
                assert close.sum() >= 0.05 * 40 * 40


def test_classification_jpeg_format(tmp_path: Path) -> None:
    root = make_classification_dataset(
        tmp_path, num_classes=2, images_per_class=2, image_size=32, image_format="jpg"
    )
    files = sorted((root / "train").rglob("*.*"))
    assert files and all(f.suffix == ".jpg" for f in files)
    assert Image.open(files[0]).format == "JPEG"


def test_segmentation_masks_match_painted_pixels(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, num_classes=4, num_train=6, num_val=2, image_size=48, seed=2
    )
    colors = class_colors(3, seed=2)
    seen: set[int] = set()
    for split, count in (("train", 6), ("val", 2)):
        masks = sorted((root / split / "masks").iterdir())
        images = sorted((root / split / "images").iterdir())
        assert [m.stem for m in masks] == [i.stem for i in images]
        assert len(masks) == count
        for image_path, mask_path in zip(images, masks):
            mask_img = Image.open(mask_path)
            assert mask_img.mode == "L"
            mask = np.asarray(mask_img)
            image = _rgb(image_path)
            values = set(np.unique(mask).tolist())
            assert values <= {0, 1, 2, 3, 255}
            assert 255 in values  # the ignore ring exists around every shape
            seen |= values
            for cls in values - {0, 255}:
                assert _near(image[mask == cls], colors[cls - 1], tol=2 * JITTER)
    assert {1, 2, 3} <= seen


def test_ignore_border_is_the_one_pixel_ring_around_a_single_shape(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, num_classes=2, num_train=5, num_val=1, image_size=32, max_shapes=1
    )
    for mask_path in (root / "train" / "masks").iterdir():
        mask = np.asarray(Image.open(mask_path))
        shape = mask == 1
        grown = shape.copy()
        grown[1:] |= shape[:-1]
        grown[:-1] |= shape[1:]
        grown[:, 1:] |= shape[:, :-1]
        grown[:, :-1] |= shape[:, 1:]
        np.testing.assert_array_equal(mask == 255, grown & ~shape)
        assert shape.sum() > 0


def test_segmentation_without_ignore_border(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, num_classes=2, num_train=4, num_val=1, image_size=32, ignore_border=False
    )
    for mask_path in (root / "train" / "masks").iterdir():
        assert set(np.unique(np.asarray(Image.open(mask_path))).tolist()) <= {0, 1}


def test_segmentation_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        make_segmentation_dataset(tmp_path, num_classes=1)
    with pytest.raises(ValueError, match="image_format"):
        make_segmentation_dataset(tmp_path, image_format="gif")  # type: ignore[arg-type]


def test_detection_json_is_valid_coco(tmp_path: Path) -> None:
    root = make_detection_dataset(
        tmp_path,
        num_classes=2,
        num_train=8,
        num_val=3,
        image_size=64,
        max_objects=3,
        seed=4,
        category_ids=[3, 7],
    )
    colors = class_colors(2, seed=4)
    for split, count in (("train", 8), ("val", 3)):
        coco = _load(root / "annotations" / f"instances_{split}.json")
        assert coco["categories"] == [
            {"id": 3, "name": "rectangle", "supercategory": "shape"},
            {"id": 7, "name": "ellipse", "supercategory": "shape"},
        ]
        assert len(coco["images"]) == count
        assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"])
        per_image = {im["id"]: 0 for im in coco["images"]}
        for ann in coco["annotations"]:
            per_image[ann["image_id"]] += 1
            assert ann["category_id"] in (3, 7) and ann["iscrowd"] == 0
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 64 and y + h <= 64
            mask = decode_segmentation(ann["segmentation"], 64, 64)
            ys, xs = np.nonzero(mask)
            # bbox is the tight box of the polygon's pixels, area its pixel count.
            assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == [
                x,
                y,
                w,
                h,
            ]
            assert ann["area"] == mask.sum()
            image = _rgb(root / split / f"{ann['image_id'] - 1:05d}.png")
            k = (3, 7).index(ann["category_id"])
            assert _near(image[mask.astype(bool)], colors[k])
        assert all(1 <= n <= 3 for n in per_image.values())


def test_detection_objects_do_not_overlap_and_min_objects_zero(tmp_path: Path) -> None:
    root = make_detection_dataset(
        tmp_path, num_train=12, num_val=1, image_size=48, min_objects=0, max_objects=4, seed=1
    )
    coco = _load(root / "annotations" / "instances_train.json")
    counts = {im["id"]: [] for im in coco["images"]}
    for ann in coco["annotations"]:
        counts[ann["image_id"]].append(decode_segmentation(ann["segmentation"], 48, 48))
    assert any(len(m) == 0 for m in counts.values())  # some images have no objects
    for masks in counts.values():
        if masks:
            assert np.stack(masks).sum(0).max() <= 1


def test_instance_dataset_has_polygons_and_rle(tmp_path: Path) -> None:
    root = make_instance_segmentation_dataset(
        tmp_path, num_classes=3, num_train=6, num_val=2, image_size=48, seed=3
    )
    colors = class_colors(3, seed=3)
    kinds = set()
    for split in ("train", "val"):
        coco = _load(root / "annotations" / f"instances_{split}.json")
        for ann in coco["annotations"]:
            segm = ann["segmentation"]
            kinds.add("rle" if isinstance(segm, dict) else "polygon")
            if isinstance(segm, dict):
                assert segm["size"] == [48, 48] and isinstance(segm["counts"], str)
            mask = decode_segmentation(segm, 48, 48).astype(bool)
            assert mask.sum() == ann["area"]
            image = _rgb(root / split / f"{ann['image_id'] - 1:05d}.png")
            assert _near(image[mask], colors[ann["category_id"] - 1])
    assert kinds == {"rle", "polygon"}


def test_detection_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="category_ids"):
        make_detection_dataset(tmp_path, num_classes=2, category_ids=[1, 1])
    with pytest.raises(ValueError, match="min_objects"):
        make_detection_dataset(tmp_path, min_objects=3, max_objects=2)


PIL_MODES = {
    "png": ("PNG", "RGB"),
    "jpg": ("JPEG", "RGB"),
    "png16": ("PNG", "I;16"),
    "tif16": ("TIFF", "I;16"),
    "tif32": ("TIFF", "I"),
    "tif32f": ("TIFF", "F"),
}


@pytest.mark.parametrize("image_format", sorted(IMAGE_FORMATS))
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_image_formats_are_the_real_file_formats(
    tmp_path: Path, kind: str, image_format: str
) -> None:
    write = {
        "classification": make_classification_dataset,
        "segmentation": make_segmentation_dataset,
        "detection": make_detection_dataset,
        "instance": make_instance_segmentation_dataset,
    }[kind]
    root = write(tmp_path, image_size=24, image_format=image_format)  # type: ignore[operator]
    suffix = IMAGE_FORMATS[image_format][0]
    images = [p for p in root.rglob("*") if p.is_file() and "masks" not in p.parts]
    images = [p for p in images if p.suffix != ".json"]
    assert images and all(p.suffix == suffix for p in images)
    for path in images:
        with Image.open(path) as image:
            assert (image.format, image.mode) == PIL_MODES[image_format]
            pixels = np.asarray(image)
        if image_format in ("png16", "tif16", "tif32"):
            assert np.all(pixels % 257 == 0)  # grey level g stored as g * 257
        if image_format == "tif32f":
            assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    if kind == "detection":
        coco = _load(root / "annotations" / "instances_train.json")
        assert all(entry["file_name"].endswith(suffix) for entry in coco["images"])


def test_save_image_writes_exactly_what_it_is_given(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {
        "png": rng.integers(0, 256, (5, 7, 3), dtype=np.uint8),
        "png16": rng.integers(0, 65536, (5, 7), dtype=np.uint16),
        "tif16": rng.integers(0, 65536, (5, 7), dtype=np.uint16),
        "tif32": rng.integers(-(2**31), 2**31 - 1, (5, 7), dtype=np.int32),
        "tif32f": rng.standard_normal((5, 7)).astype(np.float32),
    }
    for image_format, pixels in arrays.items():
        path = save_image(
            tmp_path / f"{image_format}{IMAGE_FORMATS[image_format][0]}",
            pixels,
            image_format,  # type: ignore[arg-type]
        )
        with Image.open(path) as image:
            assert np.array_equal(np.asarray(image), pixels), image_format


def test_save_image_argument_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'png16' pixels must be uint16 \[H, W\], got uint8"):
        save_image(tmp_path / "a.png", np.zeros((4, 4), np.uint8), "png16")
    with pytest.raises(
        ValueError, match=r"'tif32f' pixels must be float32 \[H, W\], got float32 \[4, 4, 3\]"
    ):
        save_image(tmp_path / "a.tif", np.zeros((4, 4, 3), np.float32), "tif32f")
    with pytest.raises(ValueError, match=r"'tif16' image needs the suffix '.tif'"):
        save_image(tmp_path / "a.png", np.zeros((4, 4), np.uint16), "tif16")
    with pytest.raises(ValueError, match="image_format must be one of"):
        save_image(tmp_path / "a.bmp", np.zeros((4, 4), np.uint8), "bmp")  # type: ignore[arg-type]
    assert not any(tmp_path.iterdir())


def test_16_bit_masks_and_their_argument_checks(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, 400, 3, 1, 32, seed=1, mask_bits=16, ignore_index=1000
    )
    for path in (root / "train" / "masks").iterdir():
        with Image.open(path) as mask:
            assert mask.mode == "I;16"
            assert set(np.unique(np.asarray(mask)).tolist()) <= {*range(400), 1000}
    with pytest.raises(ValueError, match=r"ignore_index must be in \[num_classes, 255\]"):
        make_segmentation_dataset(tmp_path / "b", 300)
    with pytest.raises(ValueError, match=r"ignore_index must be in \[num_classes, 65535\]"):
        make_segmentation_dataset(tmp_path / "c", 3, mask_bits=16, ignore_index=70000)
    with pytest.raises(ValueError, match="mask_bits must be 8 or 16"):
        make_segmentation_dataset(tmp_path / "d", 3, mask_bits=12)  # type: ignore[arg-type]

"""Tests of DetectionDataModule / InstanceSegmentationDataModule (COCO json)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from autotimm.data import (
    DetectionDataModule,
    InstanceSegmentationDataModule,
    decode_segmentation,
    detection_collate,
    make_detection_dataset,
    make_instance_segmentation_dataset,
)
from autotimm.data.detection import rle_counts_from_string

# pycocotools warns inside mask.decode under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = 64  # generated image size


@pytest.fixture(scope="module")
def det_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_detection_dataset(
        tmp_path_factory.mktemp("det"),
        num_classes=2,
        num_train=6,
        num_val=4,
        image_size=SIZE,
        max_objects=3,
        seed=0,
        category_ids=[3, 7],  # non-contiguous COCO ids
    )


@pytest.fixture(scope="module")
def inst_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_instance_segmentation_dataset(
        tmp_path_factory.mktemp("inst"), num_classes=3, num_train=6, num_val=4, image_size=SIZE
    )


@pytest.fixture
def det_copy(det_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(det_root, tmp_path / "data"))


@pytest.fixture
def inst_copy(inst_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(inst_root, tmp_path / "data"))


def _det(root: Path, **kwargs: Any) -> DetectionDataModule:
    return DetectionDataModule(
        root, **{"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    )


def _inst(root: Path, **kwargs: Any) -> InstanceSegmentationDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    return InstanceSegmentationDataModule(root, **kwargs)


def _ann_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _edit(root: Path, split: str, fn: Callable[[dict[str, Any]], None]) -> Path:
    path = _ann_file(root, split)
    coco = json.loads(path.read_text())
    fn(coco)
    path.write_text(json.dumps(coco))
    return path


def _xyxy(bbox: list[float]) -> list[float]:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


# -- detection ---------------------------------------------------------------------------------
def test_detection_batches(det_root: Path) -> None:
    dm = _det(det_root)
    dm.setup("fit")
    assert dm.class_names == ["rectangle", "ellipse"]
    assert dm.category_ids == [3, 7] and dm.num_classes == 2
    n_images = 0
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            assert set(batch) == {"image", "boxes", "labels", "image_id"}
            b = batch["image"].shape[0]
            n_images += b
            assert batch["image"].shape == (b, 3, 32, 32) and batch["image"].dtype == torch.float32
            assert isinstance(batch["boxes"], list) and len(batch["boxes"]) == b
            assert batch["image_id"].dtype == torch.long and batch["image_id"].shape == (b,)
            for boxes, labels in zip(batch["boxes"], batch["labels"]):
                assert boxes.dtype == torch.float32 and boxes.shape == (len(labels), 4)
                assert labels.dtype == torch.long
                assert set(labels.tolist()) <= {0, 1}
                assert bool((boxes >= 0).all() and (boxes <= 32).all())
                assert bool((boxes[:, 2:] > boxes[:, :2]).all())
    assert n_images == 10


def test_boxes_and_labels_follow_the_json(det_root: Path) -> None:
    dm = _det(det_root, image_size=48)
    dm.setup("validate")
    coco = json.loads(_ann_file(det_root, "val").read_text())
    label_of = {3: 0, 7: 1}
    scale = 48 / SIZE
    ds = dm.val_dataset
    assert ds is not None
    for i in range(len(ds)):  # type: ignore[arg-type]
        sample = ds[i]
        anns = [a for a in coco["annotations"] if a["image_id"] == sample["image_id"]]
        expected = torch.tensor([_xyxy(a["bbox"]) for a in anns]) * scale
        torch.testing.assert_close(sample["boxes"], expected)
        assert sample["labels"].tolist() == [label_of[a["category_id"]] for a in anns]


def test_train_flip_moves_boxes_with_the_image(det_root: Path) -> None:
    dm = _det(det_root, hflip_prob=1.0)
    dm.setup("fit")
    train_ds, val_ds = dm.train_dataset, dm.val_dataset
    assert train_ds is not None and val_ds is not None
    for i in range(3):
        flipped = train_ds[i]
        record = train_ds.records[i]  # type: ignore[attr-defined]
        plain = val_ds.transform(  # type: ignore[attr-defined]
            Image.open(record.path).convert("RGB"),
            torch.tensor(record.boxes),
            torch.tensor(record.labels),
        )
        torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
        x1, y1, x2, y2 = plain["boxes"].unbind(-1)
        mirrored = torch.stack([32 - x2, y1, 32 - x1, y2], dim=-1)
        torch.testing.assert_close(flipped["boxes"], mirrored)
        assert torch.equal(flipped["labels"], plain["labels"])


def test_iscrowd_annotations_are_skipped(det_copy: Path) -> None:
    def add_crowd(coco: dict[str, Any]) -> None:
        coco["annotations"].append(
            {
                "id": 999,
                "image_id": 1,
                "category_id": 7,
                "bbox": [1, 1, 30, 30],
                "iscrowd": 1,
                "area": 900,
                "segmentation": {"size": [SIZE, SIZE], "counts": [0, SIZE * SIZE]},
            }
        )

    before = _det(det_copy, image_size=SIZE)
    before.setup("validate")
    n_before = len(before.val_dataset[0]["boxes"])  # type: ignore[index]
    _edit(det_copy, "val", add_crowd)
    after = _det(det_copy, image_size=SIZE)
    after.setup("validate")
    boxes = after.val_dataset[0]["boxes"]  # type: ignore[index]
    assert len(boxes) == n_before
    assert not any(b.tolist() == [1.0, 1.0, 31.0, 31.0] for b in boxes)


def test_images_without_annotations_give_empty_targets(det_copy: Path) -> None:
    _edit(det_copy, "val", lambda c: c.update(annotations=[]))
    dm = _det(det_copy)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)
    assert all(b.shape == (0, 4) and b.dtype == torch.float32 for b in batch["boxes"])
    assert all(lab.shape == (0,) and lab.dtype == torch.long for lab in batch["labels"])


def test_degenerate_and_out_of_image_boxes(det_copy: Path) -> None:
    def edit(coco: dict[str, Any]) -> None:
        coco["annotations"] = [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 0, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 3, "bbox": [70, 5, 10, 10], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [-4, 50, 20, 30], "iscrowd": 0},
            {"id": 4, "image_id": 1, "category_id": 7, "bbox": [10, 10, 0.5, 20], "iscrowd": 0},
        ]

    _edit(det_copy, "val", edit)
    dm = _det(det_copy)
    dm.setup("validate")
    sample = dm.val_dataset[0]  # type: ignore[index]
    # Zero-width and fully-outside boxes go at parse time, the 0.5 px one (0.25 px after the
    # resize) in the transform; the partly-outside one is clamped to the image.
    torch.testing.assert_close(sample["boxes"], torch.tensor([[0.0, 25.0, 8.0, 32.0]]))
    assert sample["labels"].tolist() == [1]


def test_detection_collate() -> None:
    samples = [
        {
            "image": torch.zeros(3, 4, 4),
            "boxes": torch.zeros(k, 4),
            "labels": torch.zeros(k, dtype=torch.long),
            "image_id": k,
        }
        for k in (0, 2)
    ]
    batch = detection_collate(samples)
    assert batch["image"].shape == (2, 3, 4, 4)
    assert [b.shape[0] for b in batch["boxes"]] == [0, 2]
    assert batch["image_id"].tolist() == [0, 2]
    with pytest.raises(ValueError):
        detection_collate([])


def test_test_split_is_used_when_present(det_copy: Path) -> None:
    dm = _det(det_copy)
    dm.setup("test")
    assert dm.test_dataset is dm.val_dataset
    shutil.copytree(det_copy / "train", det_copy / "test")
    shutil.copy(_ann_file(det_copy, "train"), _ann_file(det_copy, "test"))
    dm2 = _det(det_copy)
    dm2.setup("test")
    assert len(dm2.test_dataset) == 6  # type: ignore[arg-type]
    assert sum(len(b["boxes"]) for b in dm2.test_dataloader()) == 6


def test_jpeg_images(tmp_path: Path) -> None:
    root = make_detection_dataset(
        tmp_path, num_train=2, num_val=1, image_size=32, image_format="jpg"
    )
    dm = _det(root)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["image"].shape == (2, 3, 32, 32)


# -- detection errors (at setup, naming the file) ----------------------------------------------
def test_missing_annotation_file(det_copy: Path) -> None:
    _ann_file(det_copy, "val").unlink()
    with pytest.raises(FileNotFoundError, match=r"instances_val\.json"):
        _det(det_copy).setup("fit")


def test_missing_split_directory(det_copy: Path) -> None:
    shutil.rmtree(det_copy / "train")
    with pytest.raises(FileNotFoundError, match=str(det_copy / "train")):
        _det(det_copy).setup("fit")


def test_annotation_points_at_missing_image_file(det_copy: Path) -> None:
    (det_copy / "val" / "00002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"00002\.png.*instances_val\.json"):
        _det(det_copy).setup("fit")


def test_annotation_points_at_unknown_image_id(det_copy: Path) -> None:
    _edit(det_copy, "train", lambda c: c["annotations"][0].update(image_id=4242))
    with pytest.raises(ValueError, match=r"instances_train\.json refers to image id 4242"):
        _det(det_copy).setup("fit")


def test_unknown_category(det_copy: Path) -> None:
    _edit(det_copy, "train", lambda c: c["annotations"][0].update(category_id=5))
    with pytest.raises(ValueError, match=r"category_id 5 not in 'categories' \[3, 7\]"):
        _det(det_copy).setup("fit")


def test_invalid_json(det_copy: Path) -> None:
    _ann_file(det_copy, "train").write_text("{not json")
    with pytest.raises(ValueError, match=r"instances_train\.json is not valid JSON"):
        _det(det_copy).setup("fit")


def test_missing_top_level_key(det_copy: Path) -> None:
    _edit(det_copy, "val", lambda c: c.pop("categories"))
    with pytest.raises(ValueError, match=r"instances_val\.json needs a list under 'categories'"):
        _det(det_copy).setup("fit")


def test_corrupt_image(det_copy: Path) -> None:
    bad = det_copy / "train" / "00001.png"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(ValueError, match=str(bad)):
        _det(det_copy).setup("fit")


def test_image_size_differs_from_json(det_copy: Path) -> None:
    path = det_copy / "val" / "00000.png"
    Image.open(path).resize((40, 64)).save(path)
    with pytest.raises(ValueError, match=r"00000\.png is 40x64 but .*says 64x64"):
        _det(det_copy).setup("fit")


def test_categories_must_match_across_splits(det_copy: Path) -> None:
    _edit(det_copy, "val", lambda c: c["categories"][1].update(id=8))
    with pytest.raises(ValueError, match=r"categories of .*instances_val\.json"):
        _det(det_copy).setup("fit")


def test_invalid_bbox(det_copy: Path) -> None:
    _edit(det_copy, "val", lambda c: c["annotations"][0].update(bbox=[1, 2, 3]))
    with pytest.raises(ValueError, match=r"invalid bbox"):
        _det(det_copy).setup("fit")


def test_no_images(det_copy: Path) -> None:
    _edit(det_copy, "val", lambda c: c.update(images=[], annotations=[]))
    with pytest.raises(ValueError, match=r"instances_val\.json lists no images"):
        _det(det_copy).setup("fit")


def test_properties_before_setup(det_root: Path) -> None:
    with pytest.raises(RuntimeError, match="setup"):
        _ = _det(det_root).class_names


# -- instance segmentation ---------------------------------------------------------------------
def test_instance_batches_and_mask_alignment(inst_root: Path) -> None:
    dm = _inst(inst_root, image_size=48)
    dm.setup("fit")
    assert dm.num_classes == 3
    for batch in dm.train_dataloader():
        assert set(batch) == {"image", "boxes", "labels", "masks", "image_id"}
        for boxes, labels, masks in zip(batch["boxes"], batch["labels"], batch["masks"]):
            assert masks.dtype == torch.uint8 and masks.shape == (len(labels), 48, 48)
            assert set(masks.unique().tolist()) <= {0, 1}
            for box, mask in zip(boxes, masks):
                ys, xs = torch.nonzero(mask, as_tuple=True)
                assert len(xs) > 0
                # The mask's pixels lie inside its box (1 px slack for rounding).
                assert xs.min() >= box[0] - 1 and xs.max() + 1 <= box[2] + 1
                assert ys.min() >= box[1] - 1 and ys.max() + 1 <= box[3] + 1


def test_instance_masks_at_native_size_equal_the_annotations(inst_root: Path) -> None:
    dm = _inst(inst_root, image_size=SIZE)
    dm.setup("validate")
    coco = json.loads(_ann_file(inst_root, "val").read_text())
    kinds = set()
    ds = dm.val_dataset
    assert ds is not None
    for i in range(len(ds)):  # type: ignore[arg-type]
        sample = ds[i]
        anns = [a for a in coco["annotations"] if a["image_id"] == sample["image_id"]]
        kinds |= {type(a["segmentation"]).__name__ for a in anns}
        expected = np.stack([decode_segmentation(a["segmentation"], SIZE, SIZE) for a in anns])
        np.testing.assert_array_equal(sample["masks"].numpy(), expected)
        assert [int(m.sum()) for m in sample["masks"]] == [a["area"] for a in anns]
    assert kinds == {"list", "dict"}  # both polygon and RLE paths were exercised


def test_polygon_compressed_and_uncompressed_rle_decode_alike(inst_copy: Path) -> None:
    polygon = [[10.0, 10.0, 40.0, 12.0, 30.0, 50.0, 12.0, 35.0]]
    binary = decode_segmentation(polygon, SIZE, SIZE)
    compressed = mask_utils.encode(np.asfortranarray(binary))
    flat = binary.flatten(order="F")  # COCO RLE runs go column by column, starting with 0s
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    uncompressed = {"size": [SIZE, SIZE], "counts": ([0] if flat[0] else []) + runs}
    segms = [polygon, {"size": [SIZE, SIZE], "counts": compressed["counts"].decode()}, uncompressed]

    def edit(coco: dict[str, Any]) -> None:
        coco["annotations"] = [
            {
                "id": i + 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 30, 40],
                "iscrowd": 0,
                "segmentation": s,
            }
            for i, s in enumerate(segms)
        ]

    _edit(inst_copy, "val", edit)
    dm = _inst(inst_copy, image_size=SIZE)
    dm.setup("validate")
    masks = dm.val_dataset[0]["masks"]  # type: ignore[index]
    assert masks.shape == (3, SIZE, SIZE) and binary.sum() > 300
    for m in masks:
        np.testing.assert_array_equal(m.numpy(), binary)


def test_instance_empty_images(inst_copy: Path) -> None:
    _edit(inst_copy, "val", lambda c: c.update(annotations=[]))
    dm = _inst(inst_copy)
    dm.setup("validate")
    batch = next(iter(dm.val_dataloader()))
    assert all(m.shape == (0, 32, 32) for m in batch["masks"])
    assert all(b.shape == (0, 4) for b in batch["boxes"])


def test_instance_flip_moves_masks(inst_root: Path) -> None:
    dm = _inst(inst_root, hflip_prob=1.0)
    dm.setup("fit")
    train_ds, val_ds = dm.train_dataset, dm.val_dataset
    assert train_ds is not None and val_ds is not None
    record = train_ds.records[0]  # type: ignore[attr-defined]
    masks = torch.from_numpy(
        np.stack([decode_segmentation(s, SIZE, SIZE) for s in record.segmentations])
    )
    plain = val_ds.transform(  # type: ignore[attr-defined]
        Image.open(record.path).convert("RGB"),
        torch.tensor(record.boxes),
        torch.tensor(record.labels),
        masks,
    )
    assert torch.equal(train_ds[0]["masks"], plain["masks"].flip(-1))


def test_instance_loading_in_a_worker_process(inst_root: Path) -> None:
    dm = _inst(inst_root, num_workers=1, batch_size=2)
    dm.setup("validate")
    batches = list(dm.val_dataloader())
    assert len(batches) == 2
    assert all(len(b["masks"]) == 2 for b in batches)


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [
        (None, "unsupported segmentation type NoneType"),
        ([], "empty polygon list"),
        ([[1, 2, 3, 4, 5]], "even number"),
        ({"size": [10, 10], "counts": "abc"}, r"RLE size \[10, 10\] does not match"),
        ({"size": [SIZE, SIZE], "counts": [5, 6]}, "counts sum to 11"),
        ({"size": "64x64", "counts": "abc"}, r"RLE size must be \[height, width\] integers"),
        # Compressed RLE strings that pycocotools decodes into garbage (or rejects mid-epoch):
        ({"size": [SIZE, SIZE], "counts": "zzzz"}, r"invalid character 'z' at position 0"),
        ({"size": [SIZE, SIZE], "counts": "é"}, "invalid character 'é'"),
        ({"size": [SIZE, SIZE], "counts": "abc"}, "counts end inside a number"),
        ({"size": [SIZE, SIZE], "counts": "@"}, "negative run length"),
        ({"size": [SIZE, SIZE], "counts": ""}, rf"counts sum to 0, expected {SIZE}\*{SIZE}"),
        ({"size": [SIZE, SIZE], "counts": "52203"}, "compressed RLE counts sum to 16"),
    ],
)
def test_invalid_segmentations_are_named(inst_copy: Path, segmentation: Any, message: str) -> None:
    def edit(coco: dict[str, Any]) -> None:
        ann = coco["annotations"][1]
        ann["segmentation"] = segmentation
        ann["id"] = 4321

    _edit(inst_copy, "train", edit)
    with pytest.raises(ValueError, match=rf"annotation 4321 in .*instances_train\.json.*{message}"):
        _inst(inst_copy).setup("fit")


def test_detection_module_ignores_segmentations(inst_copy: Path) -> None:
    _edit(inst_copy, "train", lambda c: c["annotations"][0].pop("segmentation"))
    dm = _det(inst_copy)
    dm.setup("fit")
    assert "masks" not in next(iter(dm.train_dataloader()))
    with pytest.raises(ValueError, match="segmentation"):
        _inst(inst_copy).setup("fit")


def test_unverified_sizes_come_from_the_json(det_copy: Path) -> None:
    bad = det_copy / "val" / "00001.png"
    bad.write_bytes(b"junk")
    dm = _det(det_copy, verify_images=False)
    dm.setup("validate")
    assert dm.val_dataset.records[1].width == SIZE  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=str(bad)):
        dm.val_dataset[1]  # type: ignore[index]


def _compressed_counts(mask: np.ndarray) -> str:
    counts: Any = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]
    return str(counts.decode("ascii"))


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda c: c[:-1], "end inside a number|compressed RLE counts sum to"),  # truncated
        (lambda c: c[: len(c) // 2], "compressed RLE counts sum to|end inside a number"),
        (lambda c: c + "3", "compressed RLE counts sum to"),  # one run too many
        (lambda c: c[:2] + "~" + c[3:], "invalid character '~' at position 2"),
    ],
)
def test_malformed_compressed_rle_fails_at_setup_naming_file_and_annotation(
    inst_copy: Path, mangle: Callable[[str], str], message: str
) -> None:
    """Issue 10 h: pycocotools used to fail (or decode garbage) mid-epoch, naming nothing."""
    mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
    mask[10:30, 5:25] = 1
    mask[40:50, 40:60] = 1

    def edit(coco: dict[str, Any]) -> None:
        ann = coco["annotations"][1]
        ann.update(
            id=987, segmentation={"size": [SIZE, SIZE], "counts": mangle(_compressed_counts(mask))}
        )

    path = _edit(inst_copy, "train", edit)
    with pytest.raises(ValueError, match=rf"annotation 987 in {path}.*({message})"):
        _inst(inst_copy).setup("fit")
    # the same file without the damage sets up
    _edit(
        inst_copy,
        "train",
        lambda c: c["annotations"][1].update(
            segmentation={"size": [SIZE, SIZE], "counts": _compressed_counts(mask)}
        ),
    )
    _inst(inst_copy).setup("fit")


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    density=st.floats(0.0, 1.0),
)
def test_rle_counts_from_string_agrees_with_pycocotools(
    height: int, width: int, seed: int, density: float
) -> None:
    mask = np.random.default_rng(seed).random((height, width)) < density
    counts = _compressed_counts(mask)
    runs = rle_counts_from_string(counts)
    # The run lengths of the column-major mask, starting with a (possibly empty) run of zeros.
    flat = mask.T.reshape(-1).astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    expected = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0] == 1:
        expected = [0, *expected]
    assert runs == expected
    assert rle_counts_from_string(counts.encode("ascii")) == runs
    decoded = decode_segmentation({"size": [height, width], "counts": counts}, height, width)
    assert np.array_equal(decoded, mask.astype(np.uint8))


def test_rle_counts_from_bytes() -> None:
    """pycocotools hands out bytes; JSON gives str. Both decode; non-ASCII bytes are named."""
    assert rle_counts_from_string(b"52203") == rle_counts_from_string("52203") == [5, 2, 2, 2, 5]
    with pytest.raises(ValueError, match="counts are not ASCII"):
        rle_counts_from_string(b"\xff")


def test_negative_bbox_size_is_named(det_copy: Path) -> None:
    def edit(coco: dict[str, Any]) -> None:
        coco["annotations"][0].update(id=55, bbox=[20, 20, -5, 10])

    path = _edit(det_copy, "val", edit)
    with pytest.raises(ValueError, match=rf"annotation 55 in {path} has a negative bbox width"):
        _det(det_copy).setup("fit")

"""Tests of the joint image / mask / box transforms (autotimm.data.transforms)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from autotimm.data.transforms import (
    ClassificationTransform,
    DetectionTransform,
    SegmentationTransform,
    resolve_image_size,
    resolve_mean_std,
)

HYPOTHESIS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NO_NORM = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def _random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=g)


@st.composite
def boxes_in_canvas(draw: st.DrawFn) -> tuple[int, int, torch.Tensor]:
    """A canvas (h, w) and up to 6 xyxy boxes inside it (some may be tiny)."""
    height = draw(st.integers(8, 80))
    width = draw(st.integers(8, 80))
    n = draw(st.integers(0, 6))
    boxes = []
    for _ in range(n):
        x1 = draw(st.floats(0, width - 1, allow_nan=False))
        y1 = draw(st.floats(0, height - 1, allow_nan=False))
        x2 = draw(st.floats(x1 + 0.05, width, allow_nan=False))
        y2 = draw(st.floats(y1 + 0.05, height, allow_nan=False))
        boxes.append([x1, y1, x2, y2])
    return height, width, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


sizes = st.tuples(st.integers(8, 80), st.integers(8, 80))


@HYPOTHESIS
@given(canvas=boxes_in_canvas(), out_size=sizes)
def test_resize_scales_boxes_and_keeps_them_inside(
    canvas: tuple[int, int, torch.Tensor], out_size: tuple[int, int]
) -> None:
    height, width, boxes = canvas
    out_h, out_w = out_size
    scale = torch.tensor([out_w / width, out_h / height] * 2)
    expected = boxes * scale
    ew, eh = expected[:, 2] - expected[:, 0], expected[:, 3] - expected[:, 1]
    # Stay away from the min_box_size=1 threshold where float rounding could go either way.
    assume(bool(((ew - 1).abs() > 1e-3).all() and ((eh - 1).abs() > 1e-3).all()))
    keep = (ew >= 1) & (eh >= 1)
    labels = torch.arange(len(boxes))

    out = DetectionTransform(out_size, train=False)(_random_image(height, width), boxes, labels)

    assert out["image"].shape == (3, out_h, out_w)
    assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.long
    got = out["boxes"]
    assert torch.equal(out["labels"], labels[keep])  # labels follow their boxes
    torch.testing.assert_close(got, expected[keep], atol=1e-3, rtol=1e-4)
    assert bool((got[:, 0] >= 0).all() and (got[:, 1] >= 0).all())
    assert bool((got[:, 2] <= out_w).all() and (got[:, 3] <= out_h).all())
    assert bool((got[:, 2] - got[:, 0] >= 1).all() and (got[:, 3] - got[:, 1] >= 1).all())


@HYPOTHESIS
@given(canvas=boxes_in_canvas(), out_size=sizes)
def test_flip_mirrors_boxes_and_image(
    canvas: tuple[int, int, torch.Tensor], out_size: tuple[int, int]
) -> None:
    height, width, boxes = canvas
    image = _random_image(height, width)
    labels = torch.arange(len(boxes))
    plain = DetectionTransform(out_size, train=False)(image, boxes, labels)
    flipped = DetectionTransform(out_size, train=True, hflip_prob=1.0)(image, boxes, labels)
    out_w = out_size[1]

    torch.testing.assert_close(flipped["image"], plain["image"].flip(-1))
    assert torch.equal(flipped["labels"], plain["labels"])
    mirrored = plain["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor(
        [out_w, 0, out_w, 0]
    )
    torch.testing.assert_close(flipped["boxes"], mirrored, atol=1e-4, rtol=0)


@HYPOTHESIS
@given(canvas=boxes_in_canvas(), out_size=sizes)
def test_resize_round_trip_restores_boxes(
    canvas: tuple[int, int, torch.Tensor], out_size: tuple[int, int]
) -> None:
    height, width, boxes = canvas
    out_h, out_w = out_size
    # Only boxes that survive both directions (>= 1 px in both sizes) are comparable.
    big = boxes[
        ((boxes[:, 2] - boxes[:, 0]) * min(1, out_w / width) >= 1.01)
        & ((boxes[:, 3] - boxes[:, 1]) * min(1, out_h / height) >= 1.01)
    ]
    there = DetectionTransform(out_size, train=False, **NO_NORM)(
        _random_image(height, width), big, torch.zeros(len(big), dtype=torch.long)
    )
    back = DetectionTransform((height, width), train=False, **NO_NORM)(
        there["image"], there["boxes"], there["labels"]
    )
    torch.testing.assert_close(back["boxes"], big, atol=1e-3, rtol=1e-4)


def test_degenerate_boxes_are_dropped_with_labels_and_masks() -> None:
    image = _random_image(64, 64)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [10.0, 10.0, 11.0, 40.0], [5, 5, 60, 7]])
    labels = torch.tensor([4, 5, 6])
    masks = torch.zeros(3, 64, 64, dtype=torch.uint8)
    masks[0, :32, :32] = 1
    masks[1, 10:40, 10:11] = 1
    masks[2, 5:7, 5:60] = 1
    out = DetectionTransform(16, train=False)(image, boxes, labels, masks)
    # 64 -> 16 makes box 1 0.25 px wide and box 2 0.5 px tall: both are dropped.
    assert out["labels"].tolist() == [4]
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 0.0, 8.0, 8.0]]))
    assert out["masks"].shape == (1, 16, 16) and out["masks"].dtype == torch.uint8
    assert out["masks"][0, :8, :8].all() and out["masks"][0].sum() == 64


def test_empty_targets_pass_through() -> None:
    out = DetectionTransform(24, train=True, hflip_prob=1.0)(
        Image.new("RGB", (40, 30)),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 30, 40, dtype=torch.uint8),
    )
    assert out["image"].shape == (3, 24, 24)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)
    assert out["masks"].shape == (0, 24, 24)


def test_detection_transform_argument_checks() -> None:
    t = DetectionTransform(16, train=False)
    with pytest.raises(ValueError, match="labels"):
        t(_random_image(8, 8), torch.zeros(2, 4), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="masks"):
        t(_random_image(8, 8), torch.zeros(1, 4), torch.zeros(1), torch.zeros(2, 8, 8))


@HYPOTHESIS
@given(
    in_size=sizes,
    out_size=sizes,
    values=st.lists(st.sampled_from([0, 1, 3, 7, 255]), min_size=1, max_size=5, unique=True),
    seed=st.integers(0, 1000),
)
def test_segmentation_mask_values_survive_resize(
    in_size: tuple[int, int], out_size: tuple[int, int], values: list[int], seed: int
) -> None:
    g = torch.Generator().manual_seed(seed)
    lut = torch.tensor(values, dtype=torch.uint8)
    mask = lut[torch.randint(0, len(values), in_size, generator=g)]
    image, out = SegmentationTransform(out_size, train=True, hflip_prob=0.5)(
        _random_image(*in_size, seed), mask
    )
    assert image.shape == (3, *out_size) and image.dtype == torch.float32
    assert out.shape == out_size and out.dtype == torch.long
    assert set(out.unique().tolist()) <= set(values)


def test_segmentation_mask_uses_nearest_exact_sampling() -> None:
    # Downscaling 4x, NEAREST_EXACT samples the source pixel at 4*i + 2 (the cell centre).
    mask = torch.arange(64, dtype=torch.uint8).repeat(64, 1)  # value = column index
    _, out = SegmentationTransform(16, train=False)(_random_image(64, 64), mask)
    assert out[0].tolist() == [4 * i + 2 for i in range(16)]


def test_segmentation_flip_is_joint() -> None:
    image = _random_image(20, 30)
    mask = torch.zeros(20, 30, dtype=torch.uint8)
    mask[:, :5] = 1  # left strip
    img_plain, mask_plain = SegmentationTransform(20, train=False)(image, mask)
    img_flip, mask_flip = SegmentationTransform(20, train=True, hflip_prob=1.0)(image, mask)
    assert torch.equal(mask_flip, mask_plain.flip(-1))
    torch.testing.assert_close(img_flip, img_plain.flip(-1))
    assert mask_flip[:, -1].eq(1).all() and mask_flip[:, 0].eq(0).all()
    # Evaluation transforms never flip.
    for _ in range(5):
        assert torch.equal(SegmentationTransform(20, train=False)(image, mask)[1], mask_plain)


def test_segmentation_rejects_non_2d_masks() -> None:
    with pytest.raises(ValueError, match="mask"):
        SegmentationTransform(8, train=False)(_random_image(8, 8), torch.zeros(1, 8, 8))


def test_classification_normalises_with_imagenet_defaults() -> None:
    mean_rgb = tuple(round(m * 255) for m in IMAGENET_DEFAULT_MEAN)
    out = ClassificationTransform(16, train=False)(Image.new("RGB", (40, 20), mean_rgb))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert out.abs().max() < 0.01  # the mean colour maps to ~0
    white = ClassificationTransform(16, train=False)(Image.new("RGB", (8, 8), (255, 255, 255)))
    expected = (1 - torch.tensor(IMAGENET_DEFAULT_MEAN)) / torch.tensor(IMAGENET_DEFAULT_STD)
    torch.testing.assert_close(white[:, 0, 0], expected)


def test_classification_custom_mean_std_and_flip() -> None:
    image = _random_image(16, 16)
    plain = ClassificationTransform(16, train=False, **NO_NORM)(image)
    torch.testing.assert_close(plain, image.float() / 255)
    flipped = ClassificationTransform(16, train=True, hflip_prob=1.0, **NO_NORM)(image)
    torch.testing.assert_close(flipped, plain.flip(-1))
    halves = ClassificationTransform(16, train=False, mean=(0.5,) * 3, std=(0.5,) * 3)(image)
    torch.testing.assert_close(halves, plain * 2 - 1)


def test_argument_validation() -> None:
    assert resolve_image_size(32) == (32, 32)
    assert resolve_image_size((24, 48)) == (24, 48)
    for bad_size in (0, (3, 0), (1, 2, 3)):
        with pytest.raises(ValueError, match="image_size"):
            resolve_image_size(bad_size)
    with pytest.raises(ValueError, match="3 values"):
        resolve_mean_std((0.5, 0.5), None)
    with pytest.raises(ValueError, match="positive"):
        resolve_mean_std(None, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="hflip_prob"):
        ClassificationTransform(8, train=True, hflip_prob=1.5)

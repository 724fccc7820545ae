"""Images above 8 bits (issue 10 g): 16-bit PNG/TIFF, 32-bit integer and float TIFF.

Each is written in its real on-disk format by ``autotimm.data.synthetic`` and read through the
real data modules. ``convert("RGB")`` used to clip them to {0, 255} (99.6 % of a ramp white);
now they are rescaled by the full range of the stored type, or refused naming the file.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from autotimm.data import (
    ClassificationTransform,
    DetectionDataModule,
    ImageDataModule,
    InstanceSegmentationDataModule,
    SegmentationDataModule,
    make_classification_dataset,
    make_detection_dataset,
    make_instance_segmentation_dataset,
    make_segmentation_dataset,
)
from autotimm.data.base import BaseImageDataModule
from autotimm.data.files import load_image
from autotimm.data.synthetic import IMAGE_FORMATS, save_image

# The shape generator rasterises with pycocotools, which warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SIZE = 32
HIGH_DEPTH = ["png16", "tif16", "tif32", "tif32f"]
MODULES = ["classification", "segmentation", "detection", "instance_segmentation"]
IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}  # batch values = [0, 1] input


def _dataset(kind: str, root: Path, image_format: str) -> BaseImageDataModule:
    """A small dataset of ``kind`` in ``image_format`` and its data module (native size, no
    flip, identity normalisation)."""
    settings: dict[str, Any] = {
        "image_size": SIZE,
        "batch_size": 2,
        "num_workers": 0,
        "hflip_prob": 0.0,
        **IDENTITY,
    }
    fmt: Any = image_format
    if kind == "classification":
        make_classification_dataset(root, 2, 2, SIZE, image_format=fmt)
        return ImageDataModule(root, **settings)
    if kind == "segmentation":
        make_segmentation_dataset(root, 3, 2, 1, SIZE, image_format=fmt)
        return SegmentationDataModule(root, **settings)
    if kind == "detection":
        make_detection_dataset(root, 2, 2, 1, SIZE, image_format=fmt)
        return DetectionDataModule(root, **settings)
    make_instance_segmentation_dataset(root, 2, 2, 1, SIZE, image_format=fmt)
    return InstanceSegmentationDataModule(root, **settings)


def _image_paths(dm: BaseImageDataModule) -> list[Path]:
    """The image file of every train sample, in dataset order."""
    ds: Any = dm.train_dataset
    if isinstance(dm, ImageDataModule):
        return [path for path, _ in ds.samples]
    if isinstance(dm, SegmentationDataModule):
        return [image for image, _ in ds.pairs]
    return [record.path for record in ds.records]


def _train_image(dm: BaseImageDataModule, index: int) -> torch.Tensor:
    ds: Any = dm.train_dataset
    image: torch.Tensor = ds[index]["image"]
    return image


def _ramp(image_format: str) -> np.ndarray:
    """Every value of the type's range, left to right and top to bottom, strictly increasing."""
    ramp = np.linspace(0, 65535, SIZE * SIZE).round().reshape(SIZE, SIZE)
    dtype = IMAGE_FORMATS[image_format][1]
    return (ramp / 65535).astype(np.float32) if dtype == "float32" else ramp.astype(dtype)


@pytest.mark.parametrize("image_format", HIGH_DEPTH)
@pytest.mark.parametrize("kind", MODULES)
def test_a_ramp_keeps_its_order_and_range(tmp_path: Path, kind: str, image_format: str) -> None:
    dm = _dataset(kind, tmp_path, image_format)
    first = _image_paths(_set_up(dm))[0]
    save_image(first, _ramp(image_format), image_format)  # type: ignore[arg-type]
    image = _train_image(dm, 0)
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32
    assert torch.equal(image[0], image[1]) and torch.equal(image[0], image[2])  # grey -> RGB
    values = image[0].flatten()
    assert bool((values[1:] > values[:-1]).all()), "the ramp lost its order (clipped?)"
    assert values[0].item() == 0.0 and values[-1].item() == 1.0
    expected = torch.from_numpy(np.linspace(0, 65535, SIZE * SIZE).round() / 65535).float()
    torch.testing.assert_close(values, expected, atol=1e-6, rtol=0)


def _set_up(dm: BaseImageDataModule) -> BaseImageDataModule:
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("image_format", ["png", "jpg"])
@pytest.mark.parametrize("kind", MODULES)
def test_8_bit_images_load_exactly_as_before(tmp_path: Path, kind: str, image_format: str) -> None:
    dm = _set_up(_dataset(kind, tmp_path, image_format))
    before = ClassificationTransform(SIZE, train=False, **IDENTITY)
    for index, path in enumerate(_image_paths(dm)):
        with Image.open(path) as file:
            assert file.mode == "RGB"
            expected = before(file.convert("RGB"))
        assert torch.equal(_train_image(dm, index), expected)


@pytest.mark.parametrize("image_format", HIGH_DEPTH)
@pytest.mark.parametrize("kind", MODULES)
def test_synthetic_high_depth_images_load_as_their_8_bit_grey_version(
    tmp_path: Path, kind: str, image_format: str
) -> None:
    """The generator stores grey level g as g * 257 (or g / 255): the same input as g / 255."""
    deep = _set_up(_dataset(kind, tmp_path / "deep", image_format))
    plain = _set_up(_dataset(kind, tmp_path / "plain", "png"))
    grey = ClassificationTransform(SIZE, train=False, **IDENTITY)
    for index, path in enumerate(_image_paths(plain)):
        with Image.open(path) as file:
            expected = grey(file.convert("L").convert("RGB"))
        torch.testing.assert_close(_train_image(deep, index), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("image_format", "pixels", "message"),
    [
        ("tif32", lambda a: a.astype(np.int32) * 2, r"32-bit integer .* values in \[0, 131070\]"),
        ("tif32", lambda a: a.astype(np.int32) - 1, r"32-bit integer .* values in \[-1, 65534\]"),
        ("tif32f", lambda a: a.astype(np.float32) / 30000, r"32-bit float .* expected \[0, 1\]"),
        (
            "tif32f",
            lambda a: (a.astype(np.float32) / 65535) - 0.5,
            r"32-bit float .* values in \[-0\.5, 0\.5\]",
        ),
        (
            "tif32f",
            lambda a: np.where(a > 100, np.nan, a / 65535).astype(np.float32),
            r"32-bit float .* nan",
        ),
    ],
)
@pytest.mark.parametrize("kind", MODULES)
def test_out_of_range_32_bit_images_are_refused_naming_the_file(
    tmp_path: Path,
    kind: str,
    image_format: str,
    pixels: Callable[[np.ndarray], np.ndarray],
    message: str,
) -> None:
    dm = _set_up(_dataset(kind, tmp_path, image_format))
    bad = _image_paths(dm)[1]
    save_image(bad, pixels(_ramp("png16")), image_format)  # type: ignore[arg-type]
    # Checked at setup() ...
    fresh = _dataset_module_like(dm)
    with pytest.raises(ValueError, match=rf"image file {bad} is {message}"):
        fresh.setup("fit")
    # ... and when loading, for data modules that skip the up-front check.
    unverified = _dataset_module_like(dm, verify_images=False)
    unverified.setup("fit")
    _train_image(unverified, 0)  # the other images load
    with pytest.raises(ValueError, match=rf"image file {bad} is {message}"):
        _train_image(unverified, 1)


def _dataset_module_like(dm: BaseImageDataModule, **changes: Any) -> BaseImageDataModule:
    arguments = {**dict(dm.hparams), **changes}
    return type(dm)(**arguments)


def test_16_bit_masks_keep_class_ids_above_255(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, 300, 4, 3, SIZE, seed=2, mask_bits=16, ignore_index=65535
    )
    masks = sorted((root / "val" / "masks").iterdir())
    with Image.open(masks[0]) as file:
        assert file.mode == "I;16"
    stored = np.stack([np.asarray(Image.open(path)) for path in masks]).astype(np.int64)
    assert stored.max() == 65535 and stored[stored != 65535].max() > 255
    dm = SegmentationDataModule(root, SIZE, 3, ignore_index=65535, num_workers=0, num_classes=300)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert torch.equal(batch["mask"], torch.from_numpy(stored))
    resized = SegmentationDataModule(root, 20, 3, 65535, 0, num_classes=300)
    resized.setup("fit")
    values = set(next(iter(resized.val_dataloader()))["mask"].unique().tolist())
    assert values <= set(np.unique(stored).tolist()) and max(values - {65535}) > 255


@settings(max_examples=25, deadline=None)
@given(
    pixels=hnp.arrays(np.uint16, hnp.array_shapes(min_dims=2, max_dims=2, max_side=9)),
    image_format=st.sampled_from(["png16", "tif16", "tif32"]),
)
def test_integer_images_load_as_value_over_65535(
    tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray, image_format: str
) -> None:
    path = tmp_path_factory.mktemp("px") / f"image{IMAGE_FORMATS[image_format][0]}"
    stored = pixels.astype(IMAGE_FORMATS[image_format][1])
    loaded = load_image(save_image(path, stored, image_format))  # type: ignore[arg-type]
    assert isinstance(loaded, torch.Tensor)
    expected = torch.from_numpy(pixels.astype(np.float32) / np.float32(65535))
    assert torch.equal(loaded, expected.expand(3, -1, -1))


@settings(max_examples=25, deadline=None)
@given(
    pixels=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=2, max_dims=2, max_side=9),
        elements=st.floats(0.0, 1.0, width=32),
    )
)
def test_float_images_in_unit_range_load_unchanged(
    tmp_path_factory: pytest.TempPathFactory, pixels: np.ndarray
) -> None:
    path = tmp_path_factory.mktemp("px") / "image.tif"
    loaded = load_image(save_image(path, pixels, "tif32f"))
    assert isinstance(loaded, torch.Tensor)
    assert torch.equal(loaded, torch.from_numpy(pixels).expand(3, -1, -1))


def _write_rgb16_png(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit-per-channel colour PNG (Pillow cannot write one): the format, by hand."""
    height, width, _ = pixels.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)  # 16 bits, truecolour
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16_bit_colour_png_keeps_its_high_byte(tmp_path: Path) -> None:
    """Pillow reads 48-bit PNGs as 8-bit RGB by their high byte: rescaled, not clipped."""
    ramp = _ramp("png16")
    pixels = np.stack([ramp, 65535 - ramp, np.full_like(ramp, 300)], axis=-1)
    path = tmp_path / "rgb16.png"
    _write_rgb16_png(path, pixels)
    loaded = load_image(path)
    assert isinstance(loaded, Image.Image) and loaded.mode == "RGB"
    assert np.array_equal(np.asarray(loaded), (pixels >> 8).astype(np.uint8))

"""Tests of SegmentationDataModule (paired image / PNG mask folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm.data import SegmentationDataModule, make_segmentation_dataset

# The shape generator rasterises with pycocotools, which warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_segmentation_dataset(
        tmp_path_factory.mktemp("seg"), num_classes=3, num_train=6, num_val=3, image_size=64
    )


@pytest.fixture
def seg_copy(seg_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(seg_root, tmp_path / "data"))


def _dm(root: Path, **kwargs: object) -> SegmentationDataModule:
    kwargs = {"image_size": 32, "batch_size": 3, "num_workers": 0, **kwargs}
    return SegmentationDataModule(root, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [24, 48, 97])
def test_batches_and_mask_values_after_resize(seg_root: Path, size: int) -> None:
    dm = _dm(seg_root, image_size=size, num_classes=3)
    dm.setup("fit")
    assert dm.ignore_index == 255 and dm.num_classes == 3
    seen: set[int] = set()
    for loader in (dm.train_dataloader(), dm.val_dataloader()):
        for batch in loader:
            assert set(batch) == {"image", "mask"}
            assert batch["image"].shape[1:] == (3, size, size)
            assert batch["image"].dtype == torch.float32
            assert batch["mask"].shape[1:] == (size, size) and batch["mask"].dtype == torch.long
            values = set(batch["mask"].unique().tolist())
            assert values <= {0, 1, 2, 255}  # never blended into in-between ids
            seen |= values
    assert seen == {0, 1, 2, 255}


def test_masks_stay_aligned_with_images(seg_root: Path) -> None:
    """At the native size, shape pixels of the normalised image keep the mask's classes."""
    dm = _dm(seg_root, image_size=64, mean=(0, 0, 0), std=(1, 1, 1))
    dm.setup("validate")
    ds = dm.val_dataset
    assert ds is not None
    for i in range(len(ds)):  # type: ignore[arg-type]
        sample = ds[i]
        image_path, mask_path = ds.pairs[i]  # type: ignore[attr-defined]
        raw_mask = np.asarray(Image.open(mask_path))
        np.testing.assert_array_equal(sample["mask"].numpy(), raw_mask)
        raw = np.asarray(Image.open(image_path).convert("RGB"), dtype=np.float32) / 255
        np.testing.assert_allclose(sample["image"].permute(1, 2, 0).numpy(), raw, atol=1e-6)


def test_train_flip_is_joint(seg_root: Path) -> None:
    dm = _dm(seg_root, hflip_prob=1.0)
    dm.setup("fit")
    train_ds, val_ds = dm.train_dataset, dm.val_dataset
    assert train_ds is not None and val_ds is not None
    image_path, mask_path = train_ds.pairs[0]  # type: ignore[attr-defined]
    flipped = train_ds[0]
    image = Image.open(image_path).convert("RGB")
    mask = torch.from_numpy(np.array(Image.open(mask_path)))
    plain_image, plain_mask = val_ds.transform(image, mask)  # type: ignore[attr-defined]
    assert torch.equal(flipped["mask"], plain_mask.flip(-1))
    torch.testing.assert_close(flipped["image"], plain_image.flip(-1))


def test_jpeg_images_with_png_masks(tmp_path: Path) -> None:
    root = make_segmentation_dataset(
        tmp_path, num_classes=2, num_train=2, num_val=1, image_size=32, image_format="jpg"
    )
    assert (root / "train" / "images" / "0000.jpg").is_file()
    dm = _dm(root, batch_size=2)
    dm.setup("fit")
    assert next(iter(dm.train_dataloader()))["mask"].shape == (2, 32, 32)


def test_palette_masks_are_read_as_indices(seg_copy: Path) -> None:
    mask_path = seg_copy / "train" / "masks" / "0000.png"
    values = np.asarray(Image.open(mask_path))
    palette_mask = Image.fromarray(values, mode="L").convert("P")
    palette_mask.putpalette([v for i in range(256) for v in (i, 255 - i, 0)])
    palette_mask.save(mask_path)
    assert Image.open(mask_path).mode == "P"
    dm = _dm(seg_copy, image_size=64, hflip_prob=0.0)
    dm.setup("fit")
    np.testing.assert_array_equal(dm.train_dataset[0]["mask"].numpy(), values)  # type: ignore[index]


def test_num_classes_checks_mask_values(seg_copy: Path) -> None:
    mask_path = seg_copy / "train" / "masks" / "0002.png"
    values = np.asarray(Image.open(mask_path)).copy()
    values[0, 0] = 9
    Image.fromarray(values, mode="L").save(mask_path)
    dm = _dm(seg_copy, num_classes=3)
    dm.setup("fit")
    with pytest.raises(ValueError, match=r"0002\.png.*\[9\]"):
        dm.train_dataset[2]  # type: ignore[index]
    # Without num_classes the module does not police values.
    lenient = _dm(seg_copy, image_size=64, hflip_prob=0.0)
    lenient.setup("fit")
    assert lenient.train_dataset[2]["mask"][0, 0] == 9  # type: ignore[index]


def test_test_split_falls_back_to_val(seg_root: Path) -> None:
    dm = _dm(seg_root)
    dm.setup("test")
    assert dm.test_dataset is dm.val_dataset
    assert sum(len(b["mask"]) for b in dm.test_dataloader()) == 3


# -- errors raised at setup(), naming the offending path ---------------------------------------
def test_mask_without_image(seg_copy: Path) -> None:
    orphan = seg_copy / "train" / "masks" / "9999.png"
    shutil.copy(seg_copy / "train" / "masks" / "0000.png", orphan)
    with pytest.raises(ValueError, match=r"9999\.png has no matching image"):
        _dm(seg_copy).setup("fit")


def test_image_without_mask(seg_copy: Path) -> None:
    (seg_copy / "val" / "masks" / "0001.png").unlink()
    with pytest.raises(ValueError, match=r"images/0001\.png has no matching mask"):
        _dm(seg_copy).setup("fit")


def test_jpeg_mask_is_rejected(seg_copy: Path) -> None:
    mask_path = seg_copy / "train" / "masks" / "0000.png"
    Image.open(mask_path).save(mask_path.with_suffix(".jpg"))
    mask_path.unlink()
    with pytest.raises(ValueError, match=r"0000\.jpg is not a PNG"):
        _dm(seg_copy).setup("fit")


def test_corrupt_mask(seg_copy: Path) -> None:
    bad = seg_copy / "train" / "masks" / "0003.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match=str(bad)):
        _dm(seg_copy).setup("fit")


def test_corrupt_image(seg_copy: Path) -> None:
    bad = seg_copy / "val" / "images" / "0002.png"
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match=str(bad)):
        _dm(seg_copy).setup("fit")


def test_rgb_mask_is_rejected(seg_copy: Path) -> None:
    mask_path = seg_copy / "train" / "masks" / "0001.png"
    Image.open(mask_path).convert("RGB").save(mask_path)
    with pytest.raises(ValueError, match=r"0001\.png has mode 'RGB'"):
        _dm(seg_copy).setup("fit")


def test_mask_size_mismatch(seg_copy: Path) -> None:
    mask_path = seg_copy / "train" / "masks" / "0004.png"
    Image.open(mask_path).resize((32, 32), Image.Resampling.NEAREST).save(mask_path)
    with pytest.raises(ValueError, match=r"0004\.png is 32x32 but image .*0004\.png is 64x64"):
        _dm(seg_copy).setup("fit")


@pytest.mark.parametrize("missing", ["train", "val/masks", "val/images"])
def test_missing_directories(seg_copy: Path, missing: str) -> None:
    shutil.rmtree(seg_copy / missing)
    with pytest.raises(FileNotFoundError, match=str(seg_copy / missing)):
        _dm(seg_copy).setup("fit")


def test_zero_images(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / split / "images").mkdir(parents=True)
        (tmp_path / split / "masks").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no images"):
        _dm(tmp_path).setup("fit")


def test_duplicate_stems(seg_copy: Path) -> None:
    image = seg_copy / "train" / "images" / "0000.png"
    Image.open(image).save(image.with_suffix(".jpg"))
    with pytest.raises(ValueError, match=r"share the stem '0000'"):
        _dm(seg_copy).setup("fit")


def test_constructor_checks(seg_root: Path) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationDataModule(seg_root, num_classes=0)


def test_hyperparameters_are_plain_data_for_weights_only_checkpoints(tmp_path: Path) -> None:
    root = make_segmentation_dataset(tmp_path, num_train=2, num_val=1, image_size=32)
    assert isinstance(root, Path)
    data = SegmentationDataModule(root, image_size=32)
    assert data.hparams["data_dir"] == str(root)
    assert "num_classes" not in data.hparams  # unset: must not clash with the model's
    path = tmp_path / "hp.pt"
    torch.save(dict(data.hparams), path)
    assert torch.load(path, weights_only=True)["data_dir"] == str(root)

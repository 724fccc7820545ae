"""Tests of ImageDataModule (folder-per-class classification) and the shared module plumbing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from autotimm.data import ImageDataModule, default_num_workers, make_classification_dataset

# The shape generator rasterises with pycocotools, which warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def cls_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_classification_dataset(
        tmp_path_factory.mktemp("cls"), num_classes=3, images_per_class=6, image_size=48, seed=0
    )


@pytest.fixture
def cls_copy(cls_root: Path, tmp_path: Path) -> Path:
    """A private copy of the dataset that a test may break."""
    return Path(shutil.copytree(cls_root, tmp_path / "data"))


def _dm(root: Path, **kwargs: object) -> ImageDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    return ImageDataModule(root, **kwargs)  # type: ignore[arg-type]


def test_batches_have_the_documented_shapes(cls_root: Path) -> None:
    dm = _dm(cls_root)
    dm.setup("fit")
    assert dm.class_names == ["class_00_rectangle", "class_01_ellipse", "class_02_triangle"]
    assert dm.num_classes == 3
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (4, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4,) and batch["label"].dtype == torch.long
    labels = torch.cat([b["label"] for b in dm.val_dataloader()])
    # val has images_per_class // 4 = 1 image per class, in folder (= label) order.
    assert labels.tolist() == [0, 1, 2]
    assert len(dm.train_dataset) == 18  # type: ignore[arg-type]


def test_labels_follow_folders(cls_root: Path) -> None:
    dm = _dm(cls_root)
    dm.setup("fit")
    ds = dm.train_dataset
    assert ds is not None
    for path, label in ds.samples:  # type: ignore[attr-defined]
        assert path.parent.name == dm.class_names[label]


def test_val_is_deterministic_and_train_is_augmented(cls_root: Path) -> None:
    dm = _dm(cls_root, hflip_prob=1.0)
    dm.setup("fit")
    train_ds, val_ds = dm.train_dataset, dm.val_dataset
    assert train_ds is not None and val_ds is not None
    # The same file through the train transform (always flipped) vs the eval transform.
    path, _ = train_ds.samples[0]  # type: ignore[attr-defined]
    flipped = train_ds.transform(Image.open(path).convert("RGB"))  # type: ignore[attr-defined]
    plain = val_ds.transform(Image.open(path).convert("RGB"))  # type: ignore[attr-defined]
    torch.testing.assert_close(flipped, plain.flip(-1))
    first = next(iter(dm.val_dataloader()))["image"]
    assert torch.equal(first, next(iter(dm.val_dataloader()))["image"])


def test_test_dataloader_falls_back_to_val_then_uses_test_split(cls_copy: Path) -> None:
    dm = _dm(cls_copy)
    dm.setup("test")
    assert dm.test_dataset is dm.val_dataset
    assert len(list(dm.test_dataloader())) == 1
    shutil.copytree(cls_copy / "train", cls_copy / "test")
    dm2 = _dm(cls_copy)
    dm2.setup("test")
    assert dm2.test_dataset is not dm2.val_dataset
    assert len(dm2.test_dataset) == 18  # type: ignore[arg-type]


def test_jpeg_images_are_read(tmp_path: Path) -> None:
    root = make_classification_dataset(
        tmp_path, num_classes=2, images_per_class=2, image_size=40, image_format="jpg"
    )
    (root / "train" / "class_00_rectangle" / "0000.jpg").rename(
        root / "train" / "class_00_rectangle" / "0000.JPEG"
    )
    dm = _dm(root, batch_size=8)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (4, 3, 32, 32)


def test_non_image_files_are_ignored(cls_copy: Path) -> None:
    (cls_copy / "train" / "class_00_rectangle" / "notes.txt").write_text("hello")
    (cls_copy / "train" / ".DS_Store").write_text("x")
    dm = _dm(cls_copy)
    dm.setup("fit")
    assert len(dm.train_dataset) == 18  # type: ignore[arg-type]


def test_loader_settings_and_defaults(cls_root: Path) -> None:
    dm = _dm(cls_root)
    dm.setup("fit")
    assert not dm.train_dataloader().persistent_workers
    dm_workers = _dm(cls_root, num_workers=1)
    dm_workers.setup("fit")
    loader = dm_workers.val_dataloader()
    assert loader.persistent_workers and loader.num_workers == 1
    assert ImageDataModule(cls_root).num_workers == default_num_workers()
    assert default_num_workers() == max(1, min(4, __import__("os").cpu_count() or 1))
    assert dm.hparams["image_size"] == 32 and dm.hparams["batch_size"] == 4


def test_worker_process_loading(cls_root: Path) -> None:
    dm = _dm(cls_root, num_workers=1)
    dm.setup("validate")
    labels = torch.cat([b["label"] for b in dm.val_dataloader()])
    assert labels.tolist() == [0, 1, 2]


def test_properties_before_setup_raise(cls_root: Path) -> None:
    dm = _dm(cls_root)
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.class_names
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()


def test_constructor_argument_checks(cls_root: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ImageDataModule(cls_root, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        ImageDataModule(cls_root, num_workers=-1)
    with pytest.raises(ValueError, match="hflip_prob"):
        ImageDataModule(cls_root, hflip_prob=2.0)
    with pytest.raises(ValueError, match="image_size"):
        ImageDataModule(cls_root, image_size=0)


# -- errors raised at setup(), naming the offending path ---------------------------------------
def test_missing_data_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        _dm(missing).setup("fit")


@pytest.mark.parametrize("split", ["train", "val"])
def test_missing_split_directory(cls_copy: Path, split: str) -> None:
    shutil.rmtree(cls_copy / split)
    with pytest.raises(FileNotFoundError, match=str(cls_copy / split)):
        _dm(cls_copy).setup("fit")


def test_corrupt_image_is_named(cls_copy: Path) -> None:
    bad = cls_copy / "val" / "class_01_ellipse" / "0000.png"
    bad.write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match=r"corrupt.*0000\.png"):
        _dm(cls_copy).setup("fit")


def test_truncated_png_is_named(cls_copy: Path) -> None:
    bad = cls_copy / "train" / "class_02_triangle" / "0003.png"
    bad.write_bytes(bad.read_bytes()[:60])
    with pytest.raises(ValueError, match=str(bad)):
        _dm(cls_copy).setup("fit")


def test_image_with_wrong_content_for_its_extension(cls_copy: Path) -> None:
    bad = cls_copy / "train" / "class_00_rectangle" / "0001.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=str(bad)):
        _dm(cls_copy).setup("fit")


def test_empty_class_folder(cls_copy: Path) -> None:
    (cls_copy / "train" / "empty_class").mkdir()
    with pytest.raises(ValueError, match=r"empty_class.*no images"):
        _dm(cls_copy).setup("fit")


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match=r"no class folders"):
        _dm(tmp_path).setup("fit")


def test_images_outside_class_folders(cls_copy: Path) -> None:
    shutil.copy(cls_copy / "train" / "class_00_rectangle" / "0000.png", cls_copy / "val" / "x.png")
    with pytest.raises(ValueError, match=r"x\.png.*directly in"):
        _dm(cls_copy).setup("fit")


def test_val_class_unknown_to_train(cls_copy: Path) -> None:
    (cls_copy / "val" / "class_01_ellipse").rename(cls_copy / "val" / "zebra")
    with pytest.raises(ValueError, match=r"zebra.*train"):
        _dm(cls_copy).setup("fit")


def test_val_may_miss_a_class(cls_copy: Path) -> None:
    shutil.rmtree(cls_copy / "val" / "class_01_ellipse")
    dm = _dm(cls_copy)
    dm.setup("fit")
    assert dm.num_classes == 3
    assert torch.cat([b["label"] for b in dm.val_dataloader()]).tolist() == [0, 2]


def test_corrupt_image_without_verification_fails_on_load(cls_copy: Path) -> None:
    bad = cls_copy / "val" / "class_00_rectangle" / "0000.png"
    bad.write_bytes(b"not an image")
    dm = _dm(cls_copy, verify_images=False)
    dm.setup("fit")  # the opt-out skips decoding at setup; presence is still checked
    with pytest.raises(ValueError, match=str(bad)):
        dm.val_dataset[0]  # type: ignore[index]


def test_trainer_fit_with_the_data_module(cls_root: Path, tmp_path: Path) -> None:
    import lightning.pytorch as pl
    import torch.nn.functional as F

    class Tiny(pl.LightningModule):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.head = torch.nn.Linear(3, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(x.mean(dim=(2, 3)))

        def training_step(self, batch: dict[str, torch.Tensor], _: int) -> torch.Tensor:
            return F.cross_entropy(self(batch["image"]), batch["label"])

        def validation_step(self, batch: dict[str, torch.Tensor], _: int) -> None:
            self.log("val_loss", F.cross_entropy(self(batch["image"]), batch["label"]))

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _dm(cls_root)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    dm.setup("fit")
    trainer.fit(Tiny(dm.num_classes), datamodule=dm)
    assert trainer.global_step == 5  # ceil(18 / 4) batches
    assert "val_loss" in trainer.callback_metrics

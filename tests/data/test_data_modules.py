"""What the four data modules share: explicit signatures over one argument store (base), and
training loaders that never end an epoch on a batch of one image (issue 10 j)."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import jsonargparse
import pytest
import torch
from helpers import BACKBONE
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import BatchSampler, DistributedSampler, SequentialSampler

from autotimm import (
    AutoTrainer,
    ImageClassifier,
    InstanceSegmentor,
    ObjectDetector,
    SemanticSegmentor,
)
from autotimm.data import (
    BaseImageDataModule,
    DetectionDataModule,
    ImageDataModule,
    InstanceSegmentationDataModule,
    SegmentationDataModule,
    make_classification_dataset,
    make_detection_dataset,
    make_instance_segmentation_dataset,
    make_segmentation_dataset,
)
from autotimm.data.base import SHARED_ARGUMENTS, DropSingleLastBatchSampler

# The shape generator rasterises with pycocotools, which warns under numpy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

DATA_MODULES = [
    ImageDataModule,
    SegmentationDataModule,
    DetectionDataModule,
    InstanceSegmentationDataModule,
]


# -- explicit signatures, shared arguments stored once ------------------------------------------
@pytest.mark.parametrize("module", DATA_MODULES, ids=lambda m: m.__name__)
def test_every_data_module_has_an_explicit_typed_signature(module: type) -> None:
    parameters = list(inspect.signature(module.__init__).parameters.values())[1:]
    kinds = {p.kind for p in parameters}
    assert (
        inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    )
    assert all(p.annotation is not inspect.Parameter.empty for p in parameters)
    assert set(SHARED_ARGUMENTS) <= {p.name for p in parameters}


@pytest.mark.parametrize("module", DATA_MODULES, ids=lambda m: m.__name__)
def test_a_config_parser_reads_the_signature_and_builds_the_module(
    module: type[BaseImageDataModule], tmp_path: Path
) -> None:
    """What LightningCLI does with a data module: jsonargparse reads ``__init__``."""
    parser = jsonargparse.ArgumentParser()
    parser.add_class_arguments(module, "data")
    config = parser.parse_args(
        [
            "--data.data_dir",
            str(tmp_path),
            "--data.image_size",
            "[48, 64]",
            "--data.batch_size",
            "3",
        ]
    )
    data = parser.instantiate(config).data
    assert type(data) is module
    assert data.data_dir == tmp_path and data.image_size == (48, 64) and data.batch_size == 3
    defaults = {
        name: p.default
        for name, p in inspect.signature(module.__init__).parameters.items()
        if name not in ("self", "data_dir", "image_size", "batch_size")
    }
    assert {name: data.hparams[name] for name in defaults if name in data.hparams} == {
        name: value for name, value in defaults.items() if name in data.hparams
    }


@pytest.mark.parametrize("module", DATA_MODULES, ids=lambda m: m.__name__)
def test_shared_arguments_are_stored_and_checked_once(module: type, tmp_path: Path) -> None:
    data = module(tmp_path, (40, 30), 5, num_workers=0, mean=(0.5, 0.5, 0.5), hflip_prob=0.0)
    assert data.data_dir == tmp_path and data.hparams["data_dir"] == os.fspath(tmp_path)
    assert (data.image_size, data.batch_size, data.num_workers) == ((40, 30), 5, 0)
    assert data.mean == (0.5, 0.5, 0.5) and data.hflip_prob == 0.0 and data.verify_images
    assert "hparams_ignore" not in data.hparams
    torch.save(dict(data.hparams), tmp_path / "hp.pt")  # plain data: weights_only loads
    assert torch.load(tmp_path / "hp.pt", weights_only=True)["data_dir"] == os.fspath(tmp_path)
    for bad, message in [
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"num_workers": -1}, "num_workers must be >= 0"),
        ({"hflip_prob": 1.5}, r"hflip_prob must be in \[0, 1\]"),
        ({"image_size": 0}, "image_size must be positive"),
        ({"std": (1.0, 0.0, 1.0)}, "std values must be positive"),
    ]:
        with pytest.raises(ValueError, match=message):
            module(tmp_path, **bad)


def test_a_subclass_that_leaves_out_a_shared_argument_is_told_which(tmp_path: Path) -> None:
    class Partial(ImageDataModule):
        def __init__(self, data_dir: str, batch_size: int = 2) -> None:  # no image_size, ...
            BaseImageDataModule.__init__(self)

    with pytest.raises(TypeError, match=r"Partial.__init__ must declare .*'image_size'"):
        Partial(str(tmp_path))


# -- no training batch of one (issue 10 j) -------------------------------------------------------
@given(size=st.integers(0, 40), batch_size=st.integers(1, 9), drop_last=st.booleans())
def test_only_a_lone_last_batch_is_left_out(size: int, batch_size: int, drop_last: bool) -> None:
    sampler = DropSingleLastBatchSampler(
        SequentialSampler(range(size)), batch_size=batch_size, drop_last=drop_last
    )
    batches = list(sampler)
    plain = list(BatchSampler(SequentialSampler(range(size)), batch_size, drop_last))
    assert len(batches) == len(sampler)
    lone_last = not drop_last and batch_size > 1 and size > 1 and size % batch_size == 1
    assert batches == (plain[:-1] if lone_last else plain)
    if size > 1 and batch_size > 1:
        assert all(len(batch) > 1 for batch in batches)
    left_out = size - sum(len(batch) for batch in batches)
    assert left_out <= (batch_size - 1 if drop_last else 1)


def test_each_process_leaves_out_its_own_lone_last_sample() -> None:
    """Under DDP Lightning re-creates the batch sampler around a DistributedSampler."""
    for rank in (0, 1):
        shard = DistributedSampler(range(9), num_replicas=2, rank=rank, shuffle=False)  # type: ignore[arg-type]
        batches = list(DropSingleLastBatchSampler(shard, batch_size=4, drop_last=False))
        assert [len(batch) for batch in batches] == [4]  # 5 samples each: the fifth is left out


def _five_train_images(kind: str, root: Path) -> tuple[BaseImageDataModule, Any]:
    """5 train / 5 val images at 32 px, ``batch_size=4``: the setup that crashed epoch 1."""
    common: dict[str, Any] = {"image_size": 32, "batch_size": 4, "num_workers": 0}
    if kind == "classification":  # 5 classes x 1 image
        make_classification_dataset(root, 5, 1, 32, val_images_per_class=1)
        return ImageDataModule(root, **common), ImageClassifier(
            BACKBONE, num_classes=5, pretrained=False
        )
    if kind == "segmentation":
        make_segmentation_dataset(root, 3, 5, 5, 32)
        return SegmentationDataModule(root, num_classes=3, **common), SemanticSegmentor(
            BACKBONE, num_classes=3, pretrained=False
        )
    if kind == "detection":
        make_detection_dataset(root, 2, 5, 5, 32)
        return DetectionDataModule(root, **common), ObjectDetector(
            BACKBONE, num_classes=2, pretrained=False
        )
    make_instance_segmentation_dataset(root, 2, 5, 5, 32)
    return InstanceSegmentationDataModule(root, **common), InstanceSegmentor(
        BACKBONE, num_classes=2, pretrained=False
    )


KINDS = ["classification", "segmentation", "detection", "instance_segmentation"]


@pytest.mark.parametrize("kind", KINDS)
def test_training_batches_never_hold_a_single_image(kind: str, tmp_path: Path) -> None:
    data, _ = _five_train_images(kind, tmp_path)
    data.setup("fit")
    train = [len(batch["image"]) for batch in data.train_dataloader()]
    val = [len(batch["image"]) for batch in data.val_dataloader()]
    assert train == [4] and len(data.train_dataloader()) == 1
    assert val == [4, 1]  # evaluation keeps every image (BatchNorm is in eval mode)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_32px_five_images_batch_four_trains_an_epoch(kind: str, tmp_path: Path) -> None:
    """Issue 10 j: BatchNorm on a last batch of one 1x1 map crashed at the end of epoch 1."""
    data, model = _five_train_images(kind, tmp_path / "data")
    trainer = AutoTrainer(
        max_epochs=1,
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.state.finished and trainer.current_epoch == 1
    assert trainer.global_step == 1  # one batch of 4; the lone fifth image is left out
    assert torch.isfinite(trainer.callback_metrics["train/loss"]).item()

"""AutoTrainer: a lightning.Trainer whose defaults fill only what the user left unset."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import (
    EarlyStopping,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
)
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from autotimm import AutoTrainer, ImageClassifier, SemanticSegmentor
from autotimm.data import (
    ImageDataModule,
    SegmentationDataModule,
    make_classification_dataset,
    make_segmentation_dataset,
)
from autotimm.trainer import DEFAULT_ROOT_DIR


def _of(trainer: Trainer, kind: type) -> list[Any]:
    return [c for c in trainer.callbacks if isinstance(c, kind)]


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    trainer = AutoTrainer(max_epochs=2)
    assert isinstance(trainer, Trainer) and trainer.max_epochs == 2
    assert Path(trainer.default_root_dir).resolve() == (tmp_path / DEFAULT_ROOT_DIR).resolve()
    assert isinstance(trainer.logger, TensorBoardLogger)
    assert Path(trainer.logger.save_dir) == Path(DEFAULT_ROOT_DIR)
    (checkpoint,) = _of(trainer, ModelCheckpoint)
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.save_last) == ("val/loss", "min", True)
    assert len(_of(trainer, LearningRateMonitor)) == 1
    assert len(_of(trainer, ProgressBar)) == 1


def test_csv_logger_without_tensorboard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without_tensorboard(name: str, *args: Any) -> Any:
        return None if name.startswith("tensorboard") else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_tensorboard)
    assert isinstance(AutoTrainer(default_root_dir=tmp_path).logger, CSVLogger)


def test_user_values_win(tmp_path: Path) -> None:
    trainer = AutoTrainer(default_root_dir=tmp_path, logger=False, enable_checkpointing=False)
    assert trainer.logger is None
    assert not _of(trainer, ModelCheckpoint) and not _of(trainer, LearningRateMonitor)

    mine = ModelCheckpoint(monitor="val/acc", mode="max")
    stop = EarlyStopping(monitor="val/loss")
    csv = CSVLogger(tmp_path / "csv")
    trainer = AutoTrainer(default_root_dir=tmp_path, callbacks=[mine, stop], logger=csv)
    assert trainer.logger is csv
    assert _of(trainer, ModelCheckpoint) == [mine] and _of(trainer, EarlyStopping) == [stop]

    single = AutoTrainer(default_root_dir=tmp_path, callbacks=stop, checkpoint_monitor=None)
    assert _of(single, EarlyStopping) == [stop]
    assert [c.monitor for c in _of(single, ModelCheckpoint)] == [None]  # Lightning's own default

    passthrough = AutoTrainer(
        default_root_dir=tmp_path,
        accumulate_grad_batches=3,
        gradient_clip_val=1.0,
        precision="bf16-mixed",
        enable_progress_bar=False,
    )
    assert passthrough.accumulate_grad_batches == 3 and passthrough.gradient_clip_val == 1.0
    assert passthrough.progress_bar_callback is None


def test_environment_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PL_TRAINER_MAX_EPOCHS", "3")
    monkeypatch.setenv("PL_TRAINER_LIMIT_VAL_BATCHES", "0.5")
    monkeypatch.setenv("PL_AUTOTRAINER_MAX_STEPS", "7")
    trainer = AutoTrainer(default_root_dir=tmp_path, max_epochs=5)
    assert trainer.max_epochs == 5  # an explicit value beats the environment
    assert trainer.limit_val_batches == 0.5 and trainer.max_steps == 7
    monkeypatch.setenv("PL_TRAINER_FAST_DEV_RUN", "1")
    assert AutoTrainer(default_root_dir=tmp_path).fast_dev_run == 1


def test_no_hidden_tuning(tmp_path: Path) -> None:
    """No learning-rate or batch-size finder runs behind the user's back."""
    from lightning.pytorch.callbacks import BatchSizeFinder, LearningRateFinder

    trainer = AutoTrainer(default_root_dir=tmp_path)
    assert not _of(trainer, LearningRateFinder) and not _of(trainer, BatchSizeFinder)


def test_fit_with_defaults_logs_and_checkpoints(tmp_path: Path) -> None:
    """A real run: data module, TensorBoard logs, val metrics, a weights_only-safe checkpoint."""
    root = make_classification_dataset(
        tmp_path / "data", num_classes=2, images_per_class=2, image_size=32
    )
    # data_dir as str: a Path in the data module's hparams is not weights_only-loadable
    data = ImageDataModule(str(root), image_size=32, batch_size=4, num_workers=0)
    model = ImageClassifier("resnet10t", num_classes=2, pretrained=False)
    trainer = AutoTrainer(
        default_root_dir=tmp_path / "runs", max_epochs=1, enable_model_summary=False
    )
    trainer.fit(model, datamodule=data)
    assert {"train/loss", "val/loss", "val/acc"} <= set(trainer.logged_metrics)
    best = Path(trainer.checkpoint_callback.best_model_path)
    assert best.is_file() and (best.parent / "last.ckpt").is_file()
    assert best.is_relative_to(tmp_path / "runs")
    checkpoint = torch.load(best, weights_only=True)
    assert checkpoint["hyper_parameters"]["loss_fn"]["name"] == "cross_entropy"
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*"))


def test_segmentor_and_data_module_log_together(tmp_path: Path) -> None:
    """Model and data module hyperparameters are merged for the logger without a clash."""
    root = make_segmentation_dataset(tmp_path / "data", num_classes=3, num_train=2, num_val=1)
    data = SegmentationDataModule(root, image_size=32, batch_size=2, num_workers=0)
    model = SemanticSegmentor("resnet10t", num_classes=3, pretrained=False, decoder_channels=32)
    trainer = AutoTrainer(
        default_root_dir=tmp_path / "runs", max_steps=1, enable_model_summary=False
    )
    trainer.fit(model, datamodule=data)
    assert {"val/loss", "val/miou", "val/pixel_acc", "train/loss_ce", "train/loss_dice"} <= set(
        trainer.logged_metrics
    )

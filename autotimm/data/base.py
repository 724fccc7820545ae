"""Shared LightningDataModule plumbing: argument checks, stage -> split resolution, loaders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from autotimm.data.transforms import resolve_image_size, resolve_mean_std

__all__ = ["BaseImageDataModule", "default_num_workers"]


def default_num_workers() -> int:
    """``min(4, os.cpu_count())``: the default number of DataLoader worker processes.

    Example:
        >>> 1 <= default_num_workers() <= 4
        True
    """
    return max(1, min(4, os.cpu_count() or 1))


class BaseImageDataModule(LightningDataModule):
    """Common base of the autotimm data modules (not used directly).

    Subclasses implement :meth:`_build_split` (validate and build the dataset of one split) and
    :meth:`_has_split`. ``setup(stage)`` builds what the stage needs: ``fit`` (and ``None``) ->
    train + val, ``validate`` -> val, ``test``/``predict`` -> the ``test`` split if present,
    otherwise val.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        image_size: int | Sequence[int],
        batch_size: int,
        num_workers: int | None,
        mean: Sequence[float] | None,
        std: Sequence[float] | None,
        hflip_prob: float,
        pin_memory: bool | None,
        verify_images: bool,
    ) -> None:
        super().__init__()
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if num_workers is not None and num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= hflip_prob <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
        self.data_dir = Path(data_dir)
        self.image_size = resolve_image_size(image_size)
        self.batch_size = batch_size
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.mean, self.std = resolve_mean_std(mean, std)
        self.hflip_prob = hflip_prob
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.verify_images = verify_images
        self.collate_fn: Callable[[list[Any]], Any] | None = None
        self.train_dataset: Dataset[Any] | None = None
        self.val_dataset: Dataset[Any] | None = None
        self.test_dataset: Dataset[Any] | None = None

    # -- to implement -------------------------------------------------------------------------
    def _has_split(self, split: str) -> bool:
        raise NotImplementedError

    def _build_split(self, split: str, *, train: bool) -> Dataset[Any]:
        raise NotImplementedError

    # -- Lightning hooks ----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Validate the files of the splits ``stage`` needs and build their datasets.

        Raises ``FileNotFoundError`` / ``ValueError`` naming the offending file or directory.
        """
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"data_dir not found: {self.data_dir}")
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._build_split("train", train=True)
        if stage in (None, "fit", "validate") and self.val_dataset is None:
            self.val_dataset = self._build_split("val", train=False)
        if stage in ("test", "predict") and self.test_dataset is None:
            if self._has_split("test"):
                self.test_dataset = self._build_split("test", train=False)
            else:
                if self.val_dataset is None:
                    self.val_dataset = self._build_split("val", train=False)
                self.test_dataset = self.val_dataset

    def train_dataloader(self) -> DataLoader[Any]:
        """Shuffled loader over the train split (after ``setup("fit")``).

        Example:
            >>> batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        """
        return self._loader(self._require(self.train_dataset, "train"), shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        """Loader over the val split, in file order (after ``setup("fit")``/``"validate"``)."""
        return self._loader(self._require(self.val_dataset, "val"), shuffle=False)

    def test_dataloader(self) -> DataLoader[Any]:
        """Loader over the ``test`` split, or over val when there is no test split."""
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self._require(self.test_dataset, "test"), shuffle=False)

    def predict_dataloader(self) -> DataLoader[Any]:
        """Same as :meth:`test_dataloader`."""
        return self.test_dataloader()

    # -- helpers ------------------------------------------------------------------------------
    def _require(self, dataset: Dataset[Any] | None, split: str) -> Dataset[Any]:
        if dataset is None:
            raise RuntimeError(
                f"the {split} dataset is not set up; call setup() first "
                f"(setup('fit') builds train and val)"
            )
        return dataset

    def _loader(self, dataset: Dataset[Any], *, shuffle: bool) -> DataLoader[Any]:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

"""Shared LightningDataModule plumbing: argument checks, stage -> split resolution, loaders."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from autotimm.data.transforms import resolve_image_size, resolve_mean_std

__all__ = [
    "SHARED_ARGUMENTS",
    "BaseImageDataModule",
    "DropSingleLastBatchSampler",
    "default_num_workers",
]

SHARED_ARGUMENTS: tuple[str, ...] = (
    "data_dir",
    "image_size",
    "batch_size",
    "num_workers",
    "mean",
    "std",
    "hflip_prob",
    "pin_memory",
    "verify_images",
)
"""Arguments every data module's ``__init__`` declares; :class:`BaseImageDataModule` reads them."""


def default_num_workers() -> int:
    """``min(4, os.cpu_count())``: the default number of DataLoader worker processes.

    Example:
        >>> 1 <= default_num_workers() <= 4
        True
    """
    return max(1, min(4, os.cpu_count() or 1))


class DropSingleLastBatchSampler(BatchSampler):
    """A ``BatchSampler`` that leaves out a last batch of exactly one sample.

    BatchNorm in training mode needs more than one value per channel. A last batch of one image
    whose feature map has shrunk to 1x1 (32 px into a ResNet: 5 images with ``batch_size=4``)
    has one, and crashes the epoch. Only that lone sample is left out (a different one each
    epoch when shuffled). A last batch of two or more is kept, and so are the only batch of a
    one-sample dataset and every batch of ``batch_size=1``. With ``drop_last=True`` it is a plain
    ``BatchSampler``. Lightning re-creates it around its ``DistributedSampler`` under DDP, so
    the rule applies to each process's share.

    Example:
        >>> [len(b) for b in DropSingleLastBatchSampler(range(5), batch_size=4, drop_last=False)]
        [4]
        >>> [len(b) for b in DropSingleLastBatchSampler(range(6), batch_size=4, drop_last=False)]
        [4, 2]
    """

    def _drops_last(self) -> bool:
        size = len(self.sampler)  # type: ignore[arg-type]  # map-style datasets: sized samplers
        return (
            not self.drop_last and self.batch_size > 1 and size > 1 and size % self.batch_size == 1
        )

    def __len__(self) -> int:
        return super().__len__() - int(self._drops_last())

    def __iter__(self) -> Iterator[list[int]]:
        batches = super().__iter__()
        if not self._drops_last():
            yield from batches
            return
        for _, batch in zip(range(len(self)), batches):
            yield batch


class BaseImageDataModule(LightningDataModule):
    """Common base of the autotimm data modules (not used directly).

    Subclasses implement :meth:`_build_split` (validate and build the dataset of one split) and
    :meth:`_has_split`. ``setup(stage)`` builds what the stage needs: ``fit`` (and ``None``) ->
    train + val, ``validate`` -> val, ``test``/``predict`` -> the ``test`` split if present,
    otherwise val.
    """

    def __init__(self, *, hparams_ignore: Sequence[str] = ()) -> None:
        """Store and check the settings every data module shares, from the subclass's arguments.

        Each data module declares all of its arguments in its own explicit, typed ``__init__``
        (IDEs and LightningCLI read that signature) and calls ``super().__init__()``. Lightning's
        ``save_hyperparameters()`` collects the arguments of that call chain from the caller's
        frame, so the shared ones (:data:`SHARED_ARGUMENTS`) are read, checked and stored here,
        once, instead of being passed through by every subclass.

        Args:
            hparams_ignore: arguments to leave out of ``hparams`` (e.g. an unset
                ``num_classes`` that would clash with the model's when Lightning logs both).
        """
        super().__init__()
        self.save_hyperparameters(ignore=[*hparams_ignore, "hparams_ignore"])
        missing = [name for name in SHARED_ARGUMENTS if name not in self.hparams]
        if missing:
            raise TypeError(
                f"{type(self).__name__}.__init__ must declare the shared data module arguments "
                f"{missing} (autotimm.data.base.SHARED_ARGUMENTS)"
            )
        args = self.hparams
        if args["batch_size"] <= 0:
            raise ValueError(f"batch_size must be positive, got {args['batch_size']}")
        if args["num_workers"] is not None and args["num_workers"] < 0:
            raise ValueError(f"num_workers must be >= 0, got {args['num_workers']}")
        if not 0.0 <= args["hflip_prob"] <= 1.0:
            raise ValueError(f"hflip_prob must be in [0, 1], got {args['hflip_prob']}")
        self.data_dir = Path(args["data_dir"])
        self.hparams["data_dir"] = os.fspath(args["data_dir"])  # plain data: weights_only loads
        self.image_size = resolve_image_size(args["image_size"])
        self.batch_size: int = args["batch_size"]
        num_workers: int | None = args["num_workers"]
        self.num_workers = default_num_workers() if num_workers is None else num_workers
        self.mean, self.std = resolve_mean_std(args["mean"], args["std"])
        self.hflip_prob: float = args["hflip_prob"]
        pin_memory: bool | None = args["pin_memory"]
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.verify_images: bool = args["verify_images"]
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

        A last batch of a single image is left out (:class:`DropSingleLastBatchSampler`):
        BatchNorm cannot train on it when the feature map is 1x1.

        Example:
            >>> batch = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        """
        return self._loader(self._require(self.train_dataset, "train"), train=True)

    def val_dataloader(self) -> DataLoader[Any]:
        """Loader over the val split, in file order (after ``setup("fit")``/``"validate"``)."""
        return self._loader(self._require(self.val_dataset, "val"), train=False)

    def test_dataloader(self) -> DataLoader[Any]:
        """Loader over the ``test`` split, or over val when there is no test split."""
        if self.test_dataset is None:
            self.setup("test")
        return self._loader(self._require(self.test_dataset, "test"), train=False)

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

    def _loader(self, dataset: Dataset[Any], *, train: bool) -> DataLoader[Any]:
        order = RandomSampler(dataset) if train else SequentialSampler(dataset)  # type: ignore[arg-type]
        return DataLoader(
            dataset,
            batch_sampler=(
                DropSingleLastBatchSampler(order, batch_size=self.batch_size, drop_last=False)
                if train
                else BatchSampler(order, batch_size=self.batch_size, drop_last=False)
            ),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=self.collate_fn,
        )

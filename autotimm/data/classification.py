"""Image classification from a folder-per-class layout.

Layout::

    data_dir/
      train/<class_name>/*.{png,jpg,jpeg,tif,tiff}
      val/<class_name>/*.{png,jpg,jpeg,tif,tiff}
      test/<class_name>/...            (optional; val is used when absent)

Class names are the sorted folder names of ``train`` (label ``i`` = ``class_names[i]``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from autotimm.data.base import BaseImageDataModule
from autotimm.data.files import (
    IMAGE_EXTENSIONS,
    is_image_file,
    list_images,
    load_image,
    require_dir,
    verify_input_image,
)
from autotimm.data.transforms import ClassificationTransform

__all__ = ["ClassificationDataset", "ImageDataModule", "scan_class_folders"]


def scan_class_folders(split_dir: Path) -> dict[str, list[Path]]:
    """Map each class folder name of ``split_dir`` to its sorted image files.

    Raises:
        FileNotFoundError: ``split_dir`` does not exist.
        ValueError: no class folders, an empty class folder, or images lying directly in
            ``split_dir`` (outside any class folder).

    Example:
        >>> scan_class_folders(Path("data/train"))  # doctest: +SKIP
        {'cat': [PosixPath('data/train/cat/0.png')], 'dog': [PosixPath('data/train/dog/0.png')]}
    """
    require_dir(split_dir, "split directory")
    loose = sorted(p for p in split_dir.iterdir() if p.is_file() and is_image_file(p))
    if loose:
        raise ValueError(
            f"found image file {loose[0]} directly in {split_dir}; expected the layout "
            f"{split_dir}/<class_name>/<image>"
        )
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(f"no class folders found in {split_dir}; expected <class_name>/ dirs")
    classes: dict[str, list[Path]] = {}
    for folder in folders:
        images = list_images(folder)
        if not images:
            raise ValueError(
                f"class folder {folder} contains no images ({'/'.join(IMAGE_EXTENSIONS)})"
            )
        classes[folder.name] = images
    return classes


class ClassificationDataset(Dataset[dict[str, torch.Tensor]]):
    """``(path, label)`` samples -> ``{"image": float [3, H, W], "label": long []}``.

    Example:
        >>> tf = ClassificationTransform(32, train=False)
        >>> ds = ClassificationDataset([(Path("a.png"), 0)], tf)
        >>> len(ds)
        1
    """

    def __init__(
        self,
        samples: Sequence[tuple[Path, int]],
        transform: Callable[[Any], torch.Tensor],
    ) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        path, label = self.samples[index]
        image = self.transform(load_image(path))
        return {"image": image, "label": torch.tensor(label, dtype=torch.long)}


class ImageDataModule(BaseImageDataModule):
    """Classification data module over ``data_dir/{train,val}/<class_name>/<image>``.

    Batches are ``{"image": float [B, 3, S, S], "label": long [B]}``. ``class_names`` and
    ``num_classes`` are available after ``setup()``. Every image is opened and verified with
    PIL at ``setup()`` (disable with ``verify_images=False`` for very large datasets).

    Example:
        >>> import tempfile
        >>> from autotimm.data.synthetic import make_classification_dataset
        >>> root = make_classification_dataset(tempfile.mkdtemp(), num_classes=3)
        >>> dm = ImageDataModule(root, image_size=32, batch_size=4, num_workers=0)
        >>> dm.setup("fit"); dm.num_classes
        3
        >>> next(iter(dm.train_dataloader()))["image"].shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        image_size: int | Sequence[int] = 224,
        batch_size: int = 32,
        num_workers: int | None = None,
        *,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip_prob: float = 0.5,
        pin_memory: bool | None = None,
        verify_images: bool = True,
    ) -> None:
        super().__init__()  # reads, checks and stores the shared arguments above
        self._class_names: list[str] | None = None

    @property
    def class_names(self) -> list[str]:
        """Sorted class folder names of the train split (available after ``setup()``)."""
        if self._class_names is None:
            raise RuntimeError("class_names is only known after setup()")
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        """Number of classes (available after ``setup()``)."""
        return len(self.class_names)

    def _has_split(self, split: str) -> bool:
        return (self.data_dir / split).is_dir()

    def _ensure_classes(self, fallback_split: str) -> list[str]:
        if self._class_names is None:
            # The train split defines the label order; evaluation-only use falls back to the split.
            source = "train" if self._has_split("train") else fallback_split
            self._class_names = sorted(scan_class_folders(self.data_dir / source))
        return self._class_names

    def _build_split(self, split: str, *, train: bool) -> ClassificationDataset:
        split_dir = self.data_dir / split
        require_dir(split_dir, f"{split} split directory")
        class_names = self._ensure_classes(split)
        folders = scan_class_folders(split_dir)
        unknown = sorted(set(folders) - set(class_names))
        if unknown:
            raise ValueError(
                f"class folder {split_dir / unknown[0]} does not exist in the train split; "
                f"known classes: {class_names}"
            )
        index = {name: i for i, name in enumerate(class_names)}
        samples = [(path, index[name]) for name, paths in folders.items() for path in paths]
        if self.verify_images:
            for path, _ in samples:
                verify_input_image(path)
        transform = ClassificationTransform(
            self.image_size, train=train, mean=self.mean, std=self.std, hflip_prob=self.hflip_prob
        )
        return ClassificationDataset(samples, transform)

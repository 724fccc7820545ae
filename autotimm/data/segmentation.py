"""Semantic segmentation from paired image / PNG mask folders.

Layout::

    data_dir/
      train/images/<stem>.{png,jpg,jpeg,tif,tiff}    train/masks/<stem>.png
      val/images/<stem>.{png,jpg,jpeg,tif,tiff}      val/masks/<stem>.png
      test/...                              (optional; val is used when absent)

Masks are single-channel PNGs of class indices; ``ignore_index`` (default 255) marks pixels
that carry no label. Masks are resized with nearest-neighbour interpolation only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from autotimm.data.base import BaseImageDataModule
from autotimm.data.files import (
    IMAGE_EXTENSIONS,
    MASK_MODES,
    list_images,
    load_image,
    load_mask,
    require_dir,
    verify_image,
    verify_input_image,
)
from autotimm.data.transforms import SegmentationTransform, image_hw

__all__ = ["SegmentationDataModule", "SegmentationDataset", "pair_images_and_masks"]


def pair_images_and_masks(split_dir: Path) -> list[tuple[Path, Path]]:
    """Pair ``split_dir/images/<stem>.*`` with ``split_dir/masks/<stem>.png`` by file stem.

    Raises:
        FileNotFoundError: ``split_dir``, ``images/`` or ``masks/`` is missing.
        ValueError: no images, a mask without an image, an image without a mask, two images
            with the same stem, or a mask that is not a PNG.

    Example:
        >>> pair_images_and_masks(Path("data/train"))  # doctest: +SKIP
        [(PosixPath('data/train/images/0001.jpg'), PosixPath('data/train/masks/0001.png'))]
    """
    require_dir(split_dir, "split directory")
    images_dir = require_dir(split_dir / "images", "images directory")
    masks_dir = require_dir(split_dir / "masks", "masks directory")

    images: dict[str, Path] = {}
    for path in list_images(images_dir):
        if path.stem in images:
            raise ValueError(
                f"two images share the stem {path.stem!r}: {images[path.stem]}, {path}"
            )
        images[path.stem] = path
    masks: dict[str, Path] = {}
    for path in list_images(masks_dir):
        if path.suffix.lower() != ".png":
            raise ValueError(f"mask {path} is not a PNG; masks must be lossless .png files")
        masks[path.stem] = path

    for stem, mask_path in masks.items():
        if stem not in images:
            raise ValueError(
                f"mask {mask_path} has no matching image {images_dir / stem}"
                f"({'|'.join(IMAGE_EXTENSIONS)})"
            )
    for stem, image_path in images.items():
        if stem not in masks:
            raise ValueError(f"image {image_path} has no matching mask {masks_dir / stem}.png")
    if not images:
        raise ValueError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found in {images_dir}")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


class SegmentationDataset(Dataset[dict[str, torch.Tensor]]):
    """``(image, mask)`` path pairs -> ``{"image": float [3, H, W], "mask": long [H, W]}``.

    When ``num_classes`` is given, mask values outside ``[0, num_classes)`` that are not
    ``ignore_index`` raise ``ValueError`` naming the mask file.

    Example:
        >>> ds = SegmentationDataset([], SegmentationTransform(32, train=False))
        >>> len(ds)
        0
    """

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        transform: Callable[..., tuple[torch.Tensor, torch.Tensor]],
        *,
        num_classes: int | None = None,
        ignore_index: int = 255,
    ) -> None:
        self.pairs = list(pairs)
        self.transform = transform
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = load_image(image_path)
        mask = load_mask(mask_path)
        height, width = image_hw(image)
        if mask.shape != (height, width):
            raise ValueError(
                f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but image {image_path} "
                f"is {width}x{height}"
            )
        if self.num_classes is not None:
            self._check_values(mask, mask_path)
        image_t, mask_t = self.transform(image, torch.from_numpy(np.ascontiguousarray(mask)))
        return {"image": image_t, "mask": mask_t}

    def _check_values(self, mask: np.ndarray, mask_path: Path) -> None:
        assert self.num_classes is not None
        values = np.unique(mask)
        bad = values[(values != self.ignore_index) & ((values < 0) | (values >= self.num_classes))]
        if bad.size:
            raise ValueError(
                f"mask {mask_path} contains class ids {bad.tolist()[:10]} outside "
                f"[0, {self.num_classes}) that are not ignore_index={self.ignore_index}"
            )


class SegmentationDataModule(BaseImageDataModule):
    """Semantic segmentation data module over ``data_dir/{train,val}/{images,masks}/``.

    Batches are ``{"image": float [B, 3, S, S], "mask": long [B, S, S]}``; masks keep their
    class ids and ``ignore_index`` exactly (nearest-neighbour resize). Every image/mask pair is
    checked at ``setup()``: both files exist and open with PIL, masks are single-channel and
    the same size as their image.

    Args:
        num_classes: optional; when given, out-of-range mask values raise ``ValueError``.
        ignore_index: label value of unlabelled pixels (exposed for the loss/metrics).

    Example:
        >>> import tempfile
        >>> from autotimm.data.synthetic import make_segmentation_dataset
        >>> root = make_segmentation_dataset(tempfile.mkdtemp(), num_classes=3)
        >>> dm = SegmentationDataModule(root, image_size=32, batch_size=2, num_workers=0)
        >>> dm.setup("fit")
        >>> next(iter(dm.train_dataloader()))["mask"].shape
        torch.Size([2, 32, 32])
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        image_size: int | Sequence[int] = 512,
        batch_size: int = 8,
        ignore_index: int = 255,
        num_workers: int | None = None,
        *,
        num_classes: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip_prob: float = 0.5,
        pin_memory: bool | None = None,
        verify_images: bool = True,
    ) -> None:
        if num_classes is not None and num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        # Reads, checks and stores the shared arguments. Lightning refuses to log a model and a
        # data module whose shared hparams differ; an unset num_classes must not clash.
        super().__init__(hparams_ignore=["num_classes"] if num_classes is None else [])
        self.ignore_index = ignore_index
        self.num_classes = num_classes

    def _has_split(self, split: str) -> bool:
        return (self.data_dir / split).is_dir()

    def _build_split(self, split: str, *, train: bool) -> SegmentationDataset:
        pairs = pair_images_and_masks(self.data_dir / split)
        if self.verify_images:
            for image_path, mask_path in pairs:
                image_info = verify_input_image(image_path)
                mask_info = verify_image(mask_path)
                if mask_info.mode not in MASK_MODES:
                    raise ValueError(
                        f"mask {mask_path} has mode {mask_info.mode!r}; expected a "
                        f"single-channel class-index PNG (one of {sorted(MASK_MODES)})"
                    )
                if (mask_info.width, mask_info.height) != (image_info.width, image_info.height):
                    raise ValueError(
                        f"mask {mask_path} is {mask_info.width}x{mask_info.height} but image "
                        f"{image_path} is {image_info.width}x{image_info.height}"
                    )
        transform = SegmentationTransform(
            self.image_size, train=train, mean=self.mean, std=self.std, hflip_prob=self.hflip_prob
        )
        return SegmentationDataset(
            pairs, transform, num_classes=self.num_classes, ignore_index=self.ignore_index
        )

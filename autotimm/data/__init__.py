"""Data modules (Lightning) for classification, segmentation, detection and instance masks.

Every batch is a dict with an ``"image"`` key (``float [B, 3, S, S]``, normalised):

- :class:`ImageDataModule`: ``+ "label": long [B]`` (folder per class).
- :class:`SegmentationDataModule`: ``+ "mask": long [B, S, S]`` (PNG class-index masks).
- :class:`DetectionDataModule`: ``+ "boxes"``/``"labels"`` lists (COCO json).
- :class:`InstanceSegmentationDataModule`: ``+ "masks"`` list of ``uint8 [K, S, S]``.

:mod:`autotimm.data.synthetic` writes small coloured-shape datasets in all four layouts.

Example:
    >>> import tempfile
    >>> from autotimm.data import ImageDataModule, make_classification_dataset
    >>> root = make_classification_dataset(tempfile.mkdtemp(), num_classes=3)
    >>> dm = ImageDataModule(root, image_size=32, batch_size=8, num_workers=0)
    >>> dm.setup("fit")
    >>> next(iter(dm.train_dataloader()))["label"].shape
    torch.Size([8])
"""

from autotimm.data.base import BaseImageDataModule, default_num_workers
from autotimm.data.classification import ClassificationDataset, ImageDataModule
from autotimm.data.detection import (
    CocoDataset,
    DetectionDataModule,
    InstanceSegmentationDataModule,
    decode_segmentation,
    detection_collate,
    load_coco_split,
)
from autotimm.data.segmentation import SegmentationDataModule, SegmentationDataset
from autotimm.data.synthetic import (
    SHAPES,
    class_colors,
    make_classification_dataset,
    make_detection_dataset,
    make_instance_segmentation_dataset,
    make_segmentation_dataset,
)
from autotimm.data.transforms import (
    ClassificationTransform,
    DetectionTransform,
    SegmentationTransform,
)

__all__ = [
    "SHAPES",
    "BaseImageDataModule",
    "ClassificationDataset",
    "ClassificationTransform",
    "CocoDataset",
    "DetectionDataModule",
    "DetectionTransform",
    "ImageDataModule",
    "InstanceSegmentationDataModule",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationTransform",
    "class_colors",
    "decode_segmentation",
    "default_num_workers",
    "detection_collate",
    "load_coco_split",
    "make_classification_dataset",
    "make_detection_dataset",
    "make_instance_segmentation_dataset",
    "make_segmentation_dataset",
]

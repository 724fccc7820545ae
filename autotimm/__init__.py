"""autotimm: computer-vision training on timm backbones and Lightning.

The heart of the package is a typed, validated loss registry (:mod:`autotimm.losses`).
Models, the trainer and data modules are imported lazily so that ``import autotimm.losses``
stays as cheap as ``import torch`` plus ``import pydantic``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> submodule that defines it; resolved on first attribute access (PEP 562).
_LAZY_EXPORTS: dict[str, str] = {
    "ImageClassifier": "autotimm.models",
    "SemanticSegmentor": "autotimm.models",
    "ObjectDetector": "autotimm.models",
    "InstanceSegmentor": "autotimm.models",
    "AutoTrainer": "autotimm.trainer",
    "ImageDataModule": "autotimm.data",
    "SegmentationDataModule": "autotimm.data",
    "DetectionDataModule": "autotimm.data",
    "InstanceSegmentationDataModule": "autotimm.data",
    "LossSpec": "autotimm.losses",
    "get_loss_registry": "autotimm.losses",
    "list_available_losses": "autotimm.losses",
    "register_custom_loss": "autotimm.losses",
    "register_loss": "autotimm.losses",
}

__all__ = [
    "AutoTrainer",
    "DetectionDataModule",
    "ImageClassifier",
    "ImageDataModule",
    "InstanceSegmentationDataModule",
    "InstanceSegmentor",
    "LossSpec",
    "ObjectDetector",
    "SegmentationDataModule",
    "SemanticSegmentor",
    "__version__",
    "get_loss_registry",
    "list_available_losses",
    "register_custom_loss",
    "register_loss",
]

if TYPE_CHECKING:
    from autotimm.data import (
        DetectionDataModule,
        ImageDataModule,
        InstanceSegmentationDataModule,
        SegmentationDataModule,
    )
    from autotimm.losses import (
        LossSpec,
        get_loss_registry,
        list_available_losses,
        register_custom_loss,
        register_loss,
    )
    from autotimm.models import (
        ImageClassifier,
        InstanceSegmentor,
        ObjectDetector,
        SemanticSegmentor,
    )
    from autotimm.trainer import AutoTrainer


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'autotimm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS))

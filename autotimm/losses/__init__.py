"""Losses for classification, detection and segmentation, behind a typed, validated registry.

Every built-in loss registers itself with :func:`register_loss`; get one by name with
validated arguments, list them by task, or register your own::

    from autotimm.losses import get_loss_registry, list_available_losses

    list_available_losses(task="segmentation")
    dice = get_loss_registry().get_loss("dice", num_classes=10, smooth=1.0)

``import autotimm.losses`` imports neither timm nor lightning.
"""

from autotimm.losses._entry import LossEntry
from autotimm.losses._parameters import ParameterInfo
from autotimm.losses._typed_lookups import BuiltinLossName
from autotimm.losses._types import ClassDim, InputKind, Reduction, TargetKind, Task
from autotimm.losses.classification import (
    AsymmetricLoss,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    NLLLoss,
    Poly1Loss,
    SoftmaxFocalLoss,
)
from autotimm.losses.detection import (
    CenternessLoss,
    CIoULoss,
    DIoULoss,
    DistributionFocalLoss,
    FCOSLoss,
    FocalLoss,
    GIoULoss,
    IoULoss,
    L1Loss,
    QualityFocalLoss,
    SmoothL1Loss,
    VarifocalLoss,
)
from autotimm.losses.errors import (
    ArgumentProblem,
    LossConfigError,
    LossMismatchError,
    LossRegistrationError,
    LossTaskWarning,
    UnknownLossError,
)
from autotimm.losses.registry import (
    LossRegistry,
    describe,
    get_entry,
    get_loss,
    get_loss_class,
    get_loss_registry,
    get_schema,
    list_available_losses,
    register_custom_loss,
    register_loss,
)
from autotimm.losses.segmentation import (
    CombinedSegmentationLoss,
    DiceLoss,
    FocalPixelwiseLoss,
    JaccardLoss,
    LovaszLoss,
    MaskLoss,
    OhemCrossEntropyLoss,
    TverskyLoss,
)
from autotimm.losses.spec import LossSpec
from autotimm.losses.terms import LossTerm
from autotimm.losses.weighted_sum import WeightedSumLoss

__all__ = [
    "ArgumentProblem",
    "AsymmetricLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BuiltinLossName",
    "CIoULoss",
    "CenternessLoss",
    "ClassDim",
    "CombinedSegmentationLoss",
    "CrossEntropyLoss",
    "DIoULoss",
    "DiceLoss",
    "DistributionFocalLoss",
    "FCOSLoss",
    "FocalLoss",
    "FocalPixelwiseLoss",
    "GIoULoss",
    "InputKind",
    "IoULoss",
    "JaccardLoss",
    "L1Loss",
    "LossConfigError",
    "LossEntry",
    "LossMismatchError",
    "LossRegistrationError",
    "LossRegistry",
    "LossSpec",
    "LossTaskWarning",
    "LossTerm",
    "LovaszLoss",
    "MSELoss",
    "MaskLoss",
    "NLLLoss",
    "OhemCrossEntropyLoss",
    "ParameterInfo",
    "Poly1Loss",
    "QualityFocalLoss",
    "Reduction",
    "SmoothL1Loss",
    "SoftmaxFocalLoss",
    "TargetKind",
    "Task",
    "TverskyLoss",
    "UnknownLossError",
    "VarifocalLoss",
    "WeightedSumLoss",
    "describe",
    "get_entry",
    "get_loss",
    "get_loss_class",
    "get_loss_registry",
    "get_schema",
    "list_available_losses",
    "register_custom_loss",
    "register_loss",
]

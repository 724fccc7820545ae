"""Pure functional cores of the built-in losses, one module per family (as torchvision's ``ops``).

Every built-in loss module is a thin wrapper around one function here. The functions:

- compute in float32 when given float16/bfloat16 inputs (and return float32),
- never produce NaN for empty inputs or all-ignored batches (a ``"mean"`` over nothing is 0,
  still connected to the graph so ``backward`` works),
- reject an unknown ``reduction`` with a ``ValueError``,
- assume validated inputs: the check for the target kind (``functional.checks``) runs first
  (the modules do this) and turns bad labels and shapes into a ``ValueError`` instead of an
  index error from inside torch.

Nothing here imports torchvision, timm or lightning.
"""

from autotimm.losses.functional import checks
from autotimm.losses.functional._utils import (
    as_float_tensor,
    inner_reduction,
    reduce_loss,
    weighted_reduce,
)
from autotimm.losses.functional.asymmetric import asymmetric_loss
from autotimm.losses.functional.box_iou import BoxLossKind, IoUMode, box_iou_loss, iou_loss
from autotimm.losses.functional.classification import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    binary_targets,
    cross_entropy,
    mse_loss,
    nll_loss,
    poly1_cross_entropy,
)
from autotimm.losses.functional.focal import (
    focal_pixelwise_loss,
    sigmoid_focal_loss,
    sigmoid_focal_loss_with_indices,
    softmax_focal_loss,
)
from autotimm.losses.functional.lovasz import lovasz_hinge_loss, lovasz_softmax_loss
from autotimm.losses.functional.ohem import ohem_cross_entropy
from autotimm.losses.functional.quality import (
    distribution_focal_loss,
    quality_focal_loss,
    varifocal_loss,
)
from autotimm.losses.functional.region import (
    dice_loss,
    segmentation_counts,
    tversky_loss,
)
from autotimm.losses.functional.regression import l1_loss, smooth_l1_loss

__all__ = [
    "BoxLossKind",
    "IoUMode",
    "as_float_tensor",
    "asymmetric_loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "binary_targets",
    "box_iou_loss",
    "checks",
    "cross_entropy",
    "dice_loss",
    "distribution_focal_loss",
    "focal_pixelwise_loss",
    "inner_reduction",
    "iou_loss",
    "l1_loss",
    "lovasz_hinge_loss",
    "lovasz_softmax_loss",
    "mse_loss",
    "nll_loss",
    "ohem_cross_entropy",
    "poly1_cross_entropy",
    "quality_focal_loss",
    "reduce_loss",
    "segmentation_counts",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_indices",
    "smooth_l1_loss",
    "softmax_focal_loss",
    "tversky_loss",
    "varifocal_loss",
    "weighted_reduce",
]

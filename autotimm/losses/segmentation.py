"""Segmentation losses on logits ``[B, C, H, W]`` and integer targets ``[B, H, W]``.

Pixels labelled ``ignore_index`` (255 by default) count in no sum, neither as prediction nor as
target. Every loss takes an optional ``num_classes`` that is checked against the logits. The
softmax losses refuse logits with a single channel (a softmax over one channel is constant):
binary segmentation takes two classes, or a binary loss such as ``bce_with_logits``. Each
class is a thin, registered wrapper around a function of :mod:`autotimm.losses.functional`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from autotimm.losses import functional as LF
from autotimm.losses._types import (
    NonNegative,
    NonNegativeTensor,
    NumClasses,
    Probability,
    Reduction,
)
from autotimm.losses.registry import register_loss

__all__ = [
    "CombinedSegmentationLoss",
    "DiceLoss",
    "FocalPixelwiseLoss",
    "JaccardLoss",
    "LovaszLoss",
    "MaskLoss",
    "TverskyLoss",
]


def _check(
    logits: Tensor,
    target: Tensor,
    num_classes: int | None,
    ignore_index: int,
    name: str,
    class_weights: Tensor | None = None,
) -> tuple[int, int] | None:
    """Check softmax logits ``[B, C >= 2, *]`` and labels ``[B, *]``; their ``(min, max)``."""
    LF.checks.check_softmax_channels(logits, name=name)
    return LF.checks.check_class_indices(
        logits,
        target,
        name=name,
        num_classes=num_classes,
        ignore_index=ignore_index,
        class_weights=class_weights,
    )


class _RegionOverlapLoss(nn.Module):
    """What dice, Tversky and Jaccard share: all three are ``1 - `` a Tversky index
    ``(TP + s) / (TP + alpha FP + beta FN + s)`` per (sample, class); each subclass only says
    which ``alpha``, ``beta`` and ``s`` its own parameters stand for."""

    loss_name: ClassVar[str]

    def __init__(
        self, *, num_classes: int | None, smooth: float, ignore_index: int, reduction: Reduction
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.smooth = smooth
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def tversky_weights(self) -> tuple[float, float, float]:
        """``(alpha, beta, smooth)`` of the Tversky index this loss computes."""
        raise NotImplementedError

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits [B, C, *]`` against labels ``[B, *]``."""
        labels = _check(logits, target, self.num_classes, self.ignore_index, self.loss_name)
        alpha, beta, smooth = self.tversky_weights()
        return LF.tversky_loss(
            logits,
            target,
            alpha=alpha,
            beta=beta,
            smooth=smooth,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_range=labels,
        )


@register_loss("dice", task="segmentation")
class DiceLoss(_RegionOverlapLoss):
    """Soft dice loss on softmax probabilities, per (sample, class).

    ``1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`` averaged over samples and
    classes; ``reduction="none"`` returns the ``[B, C]`` values. Without ignored pixels this
    equals MONAI's ``DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=smooth,
    smooth_dr=smooth)``. No one-hot tensor is built.

    Args:
        num_classes: If given, the logits must have this many classes.
        smooth: Added to numerator and denominator (>= 0).
        ignore_index: Target label of pixels that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = DiceLoss(num_classes=3)
        >>> logits = torch.randn(2, 3, 8, 8)
        >>> target = torch.randint(0, 3, (2, 8, 8))
        >>> 0.0 <= loss(logits, target).item() <= 1.0
        True
    """

    loss_name = "dice"

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        smooth: NonNegative = 1.0,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, smooth=smooth, ignore_index=ignore_index, reduction=reduction
        )

    def tversky_weights(self) -> tuple[float, float, float]:
        """Dice is the Tversky index with ``alpha = beta = 1/2`` and half the smoothing."""
        return 0.5, 0.5, self.smooth / 2


@register_loss("tversky", task="segmentation")
class TverskyLoss(_RegionOverlapLoss):
    """Tversky loss per (sample, class), MONAI's convention (``alpha`` weights false positives).

    ``1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)`` on softmax probabilities,
    averaged over samples and classes; ``alpha = beta = 0.5`` is the dice loss (whose
    ``smooth`` is twice this one's).

    Args:
        num_classes: If given, the logits must have this many classes.
        alpha: Weight of false positives.
        beta: Weight of false negatives.
        smooth: Added to numerator and denominator (>= 0).
        ignore_index: Target label of pixels that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7)
        >>> loss(torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))).shape
        torch.Size([])
    """

    loss_name = "tversky"

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        alpha: NonNegative = 0.5,
        beta: NonNegative = 0.5,
        smooth: NonNegative = 1.0,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, smooth=smooth, ignore_index=ignore_index, reduction=reduction
        )
        self.alpha = alpha
        self.beta = beta

    def tversky_weights(self) -> tuple[float, float, float]:
        """This loss's own ``alpha``, ``beta`` and ``smooth``."""
        return self.alpha, self.beta, self.smooth


@register_loss("jaccard", task="segmentation")
class JaccardLoss(_RegionOverlapLoss):
    """Soft Jaccard (IoU) loss per (sample, class): ``1 - (I + s) / (P + G - I + s)``.

    Args:
        num_classes: If given, the logits must have this many classes.
        smooth: Added to numerator and denominator (>= 0).
        ignore_index: Target label of pixels that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = JaccardLoss(reduction="none")
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([2, 3])
    """

    loss_name = "jaccard"

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        smooth: NonNegative = 1.0,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, smooth=smooth, ignore_index=ignore_index, reduction=reduction
        )

    def tversky_weights(self) -> tuple[float, float, float]:
        """Jaccard is the Tversky index with ``alpha = beta = 1``."""
        return 1.0, 1.0, self.smooth


@register_loss("lovasz", task="segmentation")
class LovaszLoss(nn.Module):
    """Lovász-softmax loss over the classes present in the target.

    As segmentation_models_pytorch's ``LovaszLoss(mode="multiclass")``: softmax, then the
    Lovász extension of the Jaccard loss per present class, averaged over those classes.

    Args:
        num_classes: If given, the logits must have this many classes.
        ignore_index: Target label of pixels that are left out.
        per_image: Compute the loss per image and average, instead of over the whole batch.
        reduction: With ``per_image``: ``"mean"`` over images, ``"sum"``, or ``"none"``
            (``[B]``). Without it the batch loss is one number for every reduction.

    Example:
        >>> loss = LovaszLoss()
        >>> loss(torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        ignore_index: int = 255,
        per_image: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.per_image = per_image
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Lovász-softmax loss of ``logits [B, C, *]`` against labels ``[B, *]``."""
        labels = _check(logits, target, self.num_classes, self.ignore_index, "lovasz")
        return LF.lovasz_softmax_loss(
            logits,
            target,
            label_range=labels,
            ignore_index=self.ignore_index,
            per_image=self.per_image,
            reduction=self.reduction,
        )


@register_loss("focal_pixelwise", task="segmentation", class_weights="alpha")
class FocalPixelwiseLoss(nn.Module):
    """Softmax focal loss per pixel: ``-w_c (1 - p_t)^gamma log p_t``.

    Averaged over non-ignored pixels; with ``gamma=0`` and no ``alpha`` it is
    ``F.cross_entropy(logits, target, ignore_index=ignore_index)``.

    Args:
        num_classes: If given, the logits must have this many classes.
        alpha: ``None``; a number that scales the loss; or one weight per class.
        gamma: Focusing exponent (>= 0).
        ignore_index: Target label of pixels that are left out.
        reduction: ``"mean"`` over non-ignored pixels, ``"sum"``, or ``"none"`` (per pixel,
            0 at ignored pixels).

    Example:
        >>> loss = FocalPixelwiseLoss(gamma=2.0, alpha=[1.0, 2.0, 0.5])
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([])
    """

    class_alpha: Tensor | None

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        alpha: NonNegative | list[NonNegative] | None = None,
        gamma: NonNegative = 2.0,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.alpha = alpha
        self._scale = None if alpha is None or isinstance(alpha, list) else float(alpha)
        self.register_buffer(
            "class_alpha",
            LF.as_float_tensor(alpha, name="focal_pixelwise", argument="alpha")
            if isinstance(alpha, list)
            else None,
        )
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Focal loss of ``logits [B, C, *]`` against labels ``[B, *]``."""
        _check(
            logits,
            target,
            self.num_classes,
            self.ignore_index,
            "focal_pixelwise",
            class_weights=self.class_alpha,
        )
        return LF.softmax_focal_loss(
            logits,
            target,
            gamma=self.gamma,
            alpha=self.class_alpha if self.class_alpha is not None else self._scale,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss("mask", task="segmentation", target="dense", soft_targets=True)
class MaskLoss(nn.Module):
    """Binary cross entropy with logits for instance masks ``[N, H, W]``.

    Targets (bool, int or float in [0, 1]) have the logits' shape; ``N = 0`` gives 0 with a
    gradient.

    Args:
        pos_weight: Optional weight of foreground pixels (a scalar or broadcastable tensor).
        reduction: ``"mean"`` over all pixels, ``"sum"`` or ``"none"``.

    Example:
        >>> loss = MaskLoss(pos_weight=torch.tensor(2.0))
        >>> masks = torch.ones(2, 4, 4, dtype=torch.bool)
        >>> round(loss(torch.zeros(2, 4, 4), masks).item(), 4)  # 2 log 2
        1.3863
    """

    pos_weight: Tensor | None

    def __init__(
        self, *, pos_weight: NonNegativeTensor | None = None, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        self.register_buffer(
            "pos_weight", LF.as_float_tensor(pos_weight, name="mask", argument="pos_weight")
        )
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of mask ``logits`` against targets of the same shape."""
        LF.checks.check_binary_targets(
            logits, target, name="mask", weights={"pos_weight": self.pos_weight}
        )
        return LF.binary_cross_entropy_with_logits(
            logits, target, pos_weight=self.pos_weight, reduction=self.reduction
        )


@register_loss(
    "combined_segmentation",
    task="segmentation",
    alias="combined",
    class_weights="class_weights",
)
class CombinedSegmentationLoss(nn.Module):
    """``ce_weight * cross entropy + dice_weight * dice`` for semantic segmentation.

    After each call ``last_components`` holds the detached ``"ce"`` and ``"dice"`` terms
    (before weighting) for logging.

    Args:
        num_classes: If given, the logits must have this many classes.
        ce_weight: Weight of the cross-entropy term.
        dice_weight: Weight of the dice term.
        ignore_index: Target label of pixels that are left out of both terms.
        class_weights: Optional per-class weights ``[C]`` of the cross-entropy term.
        label_smoothing: Label smoothing of the cross-entropy term, in [0, 1].
        smooth: Smoothing of the dice term (>= 0).
        reduction: ``"mean"`` (CE mean over pixels + dice mean over samples and classes),
            ``"sum"`` (both summed) or ``"none"`` (per sample ``[B]``: that sample's CE mean
            plus its dice mean over classes).

    Example:
        >>> loss = CombinedSegmentationLoss(num_classes=3, ce_weight=0.5, dice_weight=1.5)
        >>> value = loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)))
        >>> sorted(loss.last_components)
        ['ce', 'dice']
    """

    class_weights: Tensor | None
    last_components: dict[str, Tensor]

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        ce_weight: NonNegative = 1.0,
        dice_weight: NonNegative = 1.0,
        ignore_index: int = 255,
        class_weights: NonNegativeTensor | None = None,
        label_smoothing: Probability = 0.0,
        smooth: NonNegative = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.ignore_index = ignore_index
        self.register_buffer(
            "class_weights",
            LF.as_float_tensor(
                class_weights, name="combined_segmentation", argument="class_weights"
            ),
        )
        self.label_smoothing = label_smoothing
        self.smooth = smooth
        self.reduction: Reduction = reduction
        self.last_components = {}

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Combined loss of ``logits [B, C, *]`` against labels ``[B, *]``."""
        labels = _check(
            logits,
            target,
            self.num_classes,
            self.ignore_index,
            "combined_segmentation",
            class_weights=self.class_weights,
        )
        per_sample = self.reduction == "none"
        ce = LF.cross_entropy(
            logits,
            target,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none" if per_sample else self.reduction,
            label_range=labels,
        )
        dice = LF.dice_loss(
            logits,
            target,
            smooth=self.smooth,
            ignore_index=self.ignore_index,
            reduction="none" if per_sample else self.reduction,
            label_range=labels,
        )
        if per_sample:
            ce = self._per_sample_ce(ce, target)
            dice = dice.mean(1)
        self.last_components = {"ce": ce.detach(), "dice": dice.detach()}
        return self.ce_weight * ce + self.dice_weight * dice

    def _per_sample_ce(self, ce: Tensor, target: Tensor) -> Tensor:
        batch = ce.shape[0]
        labels = target.reshape(batch, ce[0].numel() if batch else 0)
        valid = labels != self.ignore_index
        if self.class_weights is None:
            denominator = valid.sum(1).to(ce.dtype)
        else:
            safe = torch.where(valid, labels.long(), 0)
            denominator = (self.class_weights.to(ce.dtype)[safe] * valid).sum(1)
        total = ce.reshape(batch, labels.shape[1]).sum(1)
        return total / torch.where(denominator == 0, torch.ones_like(denominator), denominator)

"""Segmentation losses on logits ``[B, C, H, W]``.

Dice, Jaccard, Tversky, Lovász and the pixel-wise focal loss read the logits in one of three
modes (:data:`~autotimm.losses._types.SegmentationMode`, as segmentation_models_pytorch's
``mode``): ``"multiclass"`` (the default) is a softmax over ``C >= 2`` exclusive classes with
class-index targets ``[B, H, W]``; ``"multilabel"`` a sigmoid per channel with dense masks
``[B, C, H, W]``; ``"binary"`` one sigmoid channel ``[B, 1, H, W]`` with masks ``[B, 1, H, W]``
or ``[B, H, W]``. Such a loss says which targets it takes through its ``target`` property
(``"class_indices"`` or ``"dense"``), which models read instead of the registry entry's default.

Pixels labelled ``ignore_index`` (255 by default) count in no sum, neither as prediction nor as
target; for masks, element by element. Every loss takes an optional ``num_classes`` that is
checked against the logits. The softmax losses refuse logits with a single channel (a softmax
over one channel is constant) and point at ``mode="binary"``. Each class is a thin, registered
wrapper around a function of :mod:`autotimm.losses.functional`.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from autotimm.losses import functional as LF
from autotimm.losses._types import (
    SEGMENTATION_MODES,
    InputKind,
    NonNegative,
    NonNegativeInt,
    NonNegativeTensor,
    NumClasses,
    Positive,
    Probability,
    Reduction,
    SegmentationMode,
    TargetKind,
)
from autotimm.losses.registry import register_loss

__all__ = [
    "CombinedSegmentationLoss",
    "DiceLoss",
    "FocalPixelwiseLoss",
    "JaccardLoss",
    "LovaszLoss",
    "MaskLoss",
    "OhemCrossEntropyLoss",
    "TverskyLoss",
]


def _check(
    logits: Tensor,
    target: Tensor,
    num_classes: int | None,
    ignore_index: int,
    name: str,
    class_weights: Tensor | None = None,
    *,
    has_binary_mode: bool = False,
) -> tuple[int, int] | None:
    """Check softmax logits ``[B, C >= 2, *]`` and labels ``[B, *]``; their ``(min, max)``."""
    LF.checks.check_softmax_channels(logits, name=name, has_binary_mode=has_binary_mode)
    return LF.checks.check_class_indices(
        logits,
        target,
        name=name,
        num_classes=num_classes,
        ignore_index=ignore_index,
        class_weights=class_weights,
    )


class _ModalSegmentationLoss(nn.Module):
    """What the losses with a ``mode`` share: the mode, its input checks, and what the loss
    takes (``expects``, ``target``), which narrows its registry entry per instance."""

    loss_name: ClassVar[str]

    def __init__(
        self,
        *,
        num_classes: int | None,
        mode: SegmentationMode,
        ignore_index: int,
        reduction: Reduction,
    ) -> None:
        super().__init__()
        if mode not in SEGMENTATION_MODES:
            raise ValueError(
                f"{self.loss_name}: mode must be one of {', '.join(map(repr, SEGMENTATION_MODES))}"
                f", got {mode!r}"
            )
        self.num_classes = num_classes
        self.mode: SegmentationMode = mode
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    @property
    def expects(self) -> InputKind:
        """What the loss takes as prediction: raw logits, in every mode."""
        return "logits"

    @property
    def target(self) -> TargetKind:
        """``"class_indices"`` for ``mode="multiclass"``, ``"dense"`` (masks) otherwise."""
        return "class_indices" if self.mode == "multiclass" else "dense"

    per_channel: ClassVar[bool] = True
    """The loss scores each channel over all its pixels (an overlap, a Lovász extension), so a
    prediction without a channel dimension (masks ``[K, H, W]``) would be scored row by row."""

    def channel_problem(self, channels: int | None) -> str | None:
        """Why this loss, as set, cannot take a caller's prediction with ``channels`` channels
        in dimension 1 (``None``: no channel dimension), or ``None``. Models ask when they are
        built (through :func:`autotimm.losses.resolve.resolve_loss`), not at the first step.

        Example:
            >>> DiceLoss(mode="binary").channel_problem(1) is None
            True
            >>> DiceLoss(mode="binary").channel_problem(3).split(";")[0]
            "mode='binary' takes one channel (the foreground), and this prediction has 3"
        """
        if self.mode == "binary" and channels is None:
            return (
                "mode='binary' takes logits [B, 1, H, W] (one channel, the foreground), and "
                "this prediction has no channel dimension"
            )
        if self.mode == "binary" and channels != 1:
            return (
                f"mode='binary' takes one channel (the foreground), and this prediction has "
                f"{channels}; use mode='multiclass' (a softmax) or 'multilabel' (a sigmoid per "
                "channel)"
            )
        if channels is None and self.per_channel:
            return (
                "it scores each channel of [B, C, H, W] over its pixels, and this prediction "
                "has no channel dimension: it would score each row of a mask on its own"
            )
        return None

    def check_inputs(
        self,
        logits: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        *,
        zero_or_one: bool = False,
    ) -> tuple[int, int] | None:
        """Check the inputs for this loss's mode; ``(min, max)`` of class-index targets."""
        if self.mode == "multiclass":
            return _check(
                logits,
                target,
                self.num_classes,
                self.ignore_index,
                self.loss_name,
                class_weights,
                has_binary_mode=True,
            )
        LF.checks.check_mask_targets(
            logits,
            target,
            name=self.loss_name,
            binary=self.mode == "binary",
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            class_weights=class_weights,
            zero_or_one=zero_or_one,
        )
        return None


class _RegionOverlapLoss(_ModalSegmentationLoss):
    """What dice, Tversky and Jaccard share: all three are ``1 - `` a Tversky index
    ``(TP + s) / (TP + alpha FP + beta FN + s)`` per (sample, class); each subclass only says
    which ``alpha``, ``beta``, ``s`` (and focal exponent) its own parameters stand for. Dice and
    Jaccard take exactly these parameters; Tversky adds its own."""

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        mode: SegmentationMode = "multiclass",
        smooth: NonNegative = 1.0,
        class_weights: NonNegativeTensor | None = None,
        include_background: bool = True,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, mode=mode, ignore_index=ignore_index, reduction=reduction
        )
        if mode == "binary" and not include_background:
            raise ValueError(
                f"{self.loss_name}: include_background=False has no channel to leave out in "
                'mode="binary", whose one channel is the foreground'
            )
        self.smooth = smooth
        self.register_buffer(
            "class_weights",
            LF.as_float_tensor(class_weights, name=self.loss_name, argument="class_weights"),
        )
        self.include_background = include_background

    def channel_problem(self, channels: int | None) -> str | None:
        """As the other moded losses; and with ``include_background=False`` a multilabel
        prediction needs a channel besides channel 0."""
        if channels == 1 and self.mode == "multilabel" and not self.include_background:
            return (
                "include_background=False leaves out channel 0, the only channel of this "
                "prediction: the loss would be 0 with no gradient"
            )
        return super().channel_problem(channels)

    def tversky_index(self) -> tuple[float, float, float, float]:
        """``(alpha, beta, smooth, gamma)`` of the (focal) Tversky loss this loss computes."""
        raise NotImplementedError

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits [B, C, *]`` against targets of this loss's ``mode``."""
        labels = self.check_inputs(logits, target, self.class_weights)
        alpha, beta, smooth, gamma = self.tversky_index()
        return LF.tversky_loss(
            logits,
            target,
            alpha=alpha,
            beta=beta,
            gamma=gamma,
            smooth=smooth,
            mode=self.mode,
            class_weights=self.class_weights,
            include_background=self.include_background,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_range=labels,
        )


@register_loss("dice", task="segmentation")
class DiceLoss(_RegionOverlapLoss):
    """Soft dice loss per (sample, class), on softmax or sigmoid probabilities (``mode``).

    ``1 - (2 sum(p g) + smooth) / (sum(p) + sum(g) + smooth)`` averaged over samples and
    classes; ``reduction="none"`` returns the ``[B, C]`` values. Without ignored pixels this
    equals MONAI's ``DiceLoss(softmax=True, to_onehot_y=True, smooth_nr=smooth,
    smooth_dr=smooth)`` (``mode="multiclass"``) and ``DiceLoss(sigmoid=True, ...)`` (``"binary"``,
    ``"multilabel"``), ``weight`` and ``include_background`` included. No one-hot tensor is
    built. Targets: class indices ``[B, H, W]`` for ``mode="multiclass"`` (``target`` is
    ``"class_indices"``), else masks in [0, 1] of the logits' shape (``"dense"``; ``[B, H, W]``
    also for ``"binary"``).

    Args:
        num_classes: If given, the logits must have this many classes (channels).
        mode: ``"multiclass"`` (softmax, class-index targets), ``"multilabel"`` (a sigmoid per
            channel, masks ``[B, C, H, W]``) or ``"binary"`` (logits ``[B, 1, H, W]``).
        smooth: Added to numerator and denominator (>= 0).
        class_weights: Optional weight of each class ``[C]``, multiplying its loss before the
            mean (MONAI's ``weight``); index = channel, so channel 0's weight is unused without
            the background.
        include_background: ``False`` leaves channel 0 (the background) out of the loss.
        ignore_index: Target value of pixels (mask elements) that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = DiceLoss(num_classes=3)
        >>> logits = torch.randn(2, 3, 8, 8)
        >>> target = torch.randint(0, 3, (2, 8, 8))
        >>> 0.0 <= loss(logits, target).item() <= 1.0
        True
        >>> binary = DiceLoss(mode="binary")  # one sigmoid channel, masks of 0 and 1
        >>> binary.target, binary(torch.randn(2, 1, 8, 8), torch.ones(2, 8, 8)).shape
        ('dense', torch.Size([]))
    """

    loss_name = "dice"

    def channel_problem(self, channels: int | None) -> str | None:
        """As the other moded losses; and with ``include_background=False`` a multilabel
        prediction needs a channel besides channel 0."""
        if channels == 1 and self.mode == "multilabel" and not self.include_background:
            return (
                "include_background=False leaves out channel 0, the only channel of this "
                "prediction: the loss would be 0 with no gradient"
            )
        return super().channel_problem(channels)

    def tversky_index(self) -> tuple[float, float, float, float]:
        """Dice is the Tversky index with ``alpha = beta = 1/2`` and half the smoothing."""
        return 0.5, 0.5, self.smooth / 2, 1.0


@register_loss("tversky", task="segmentation")
class TverskyLoss(_RegionOverlapLoss):
    """Tversky loss per (sample, class), MONAI's convention (``alpha`` weights false positives).

    ``(1 - (TP + smooth) / (TP + alpha FP + beta FN + smooth)) ** gamma`` on softmax or sigmoid
    probabilities (``mode``), averaged over samples and classes; ``alpha = beta = 0.5`` is the
    dice loss (whose ``smooth`` is twice this one's). ``gamma`` is the focal Tversky exponent,
    applied per (sample, class). Targets as for :class:`DiceLoss`: class indices for
    ``mode="multiclass"``, masks otherwise.

    Args:
        num_classes: If given, the logits must have this many classes (channels).
        mode: ``"multiclass"`` (softmax, class-index targets), ``"multilabel"`` (a sigmoid per
            channel, masks ``[B, C, H, W]``) or ``"binary"`` (logits ``[B, 1, H, W]``).
        alpha: Weight of false positives.
        beta: Weight of false negatives.
        smooth: Added to numerator and denominator (>= 0).
        gamma: Focal exponent of each (sample, class) loss (> 0; 1 is the plain Tversky loss).
        class_weights: Optional weight of each class ``[C]``, multiplying its loss before the
            mean (MONAI's ``weight``); index = channel.
        include_background: ``False`` leaves channel 0 (the background) out of the loss.
        ignore_index: Target value of pixels (mask elements) that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = TverskyLoss(alpha=0.3, beta=0.7, gamma=0.75)
        >>> loss(torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))).shape
        torch.Size([])
    """

    loss_name = "tversky"

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        mode: SegmentationMode = "multiclass",
        alpha: NonNegative = 0.5,
        beta: NonNegative = 0.5,
        smooth: NonNegative = 1.0,
        gamma: Positive = 1.0,
        class_weights: NonNegativeTensor | None = None,
        include_background: bool = True,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            mode=mode,
            smooth=smooth,
            class_weights=class_weights,
            include_background=include_background,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma

    def channel_problem(self, channels: int | None) -> str | None:
        """As the other moded losses; and with ``include_background=False`` a multilabel
        prediction needs a channel besides channel 0."""
        if channels == 1 and self.mode == "multilabel" and not self.include_background:
            return (
                "include_background=False leaves out channel 0, the only channel of this "
                "prediction: the loss would be 0 with no gradient"
            )
        return super().channel_problem(channels)

    def tversky_index(self) -> tuple[float, float, float, float]:
        """This loss's own ``alpha``, ``beta``, ``smooth`` and ``gamma``."""
        return self.alpha, self.beta, self.smooth, self.gamma


@register_loss("jaccard", task="segmentation")
class JaccardLoss(_RegionOverlapLoss):
    """Soft Jaccard (IoU) loss per (sample, class): ``1 - (I + s) / (P + G - I + s)``.

    On softmax or sigmoid probabilities (``mode``), with targets as for :class:`DiceLoss`:
    class indices for ``mode="multiclass"``, masks otherwise.

    Args:
        num_classes: If given, the logits must have this many classes (channels).
        mode: ``"multiclass"`` (softmax, class-index targets), ``"multilabel"`` (a sigmoid per
            channel, masks ``[B, C, H, W]``) or ``"binary"`` (logits ``[B, 1, H, W]``).
        smooth: Added to the intersection and the union (>= 0).
        class_weights: Optional weight of each class ``[C]``, multiplying its loss before the
            mean (as MONAI's ``weight``); index = channel.
        include_background: ``False`` leaves channel 0 (the background) out of the loss.
        ignore_index: Target value of pixels (mask elements) that are left out.
        reduction: ``"mean"`` over samples and classes, ``"sum"`` or ``"none"`` (``[B, C]``).

    Example:
        >>> loss = JaccardLoss(reduction="none", include_background=False)
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([2, 2])
    """

    loss_name = "jaccard"

    def channel_problem(self, channels: int | None) -> str | None:
        """As the other moded losses; and with ``include_background=False`` a multilabel
        prediction needs a channel besides channel 0."""
        if channels == 1 and self.mode == "multilabel" and not self.include_background:
            return (
                "include_background=False leaves out channel 0, the only channel of this "
                "prediction: the loss would be 0 with no gradient"
            )
        return super().channel_problem(channels)

    def tversky_index(self) -> tuple[float, float, float, float]:
        """Jaccard is the Tversky index with ``alpha = beta = 1``."""
        return 1.0, 1.0, self.smooth, 1.0


@register_loss("lovasz", task="segmentation")
class LovaszLoss(_ModalSegmentationLoss):
    """Lovász-softmax over the classes present in the target, or Lovász hinge per channel.

    ``mode="multiclass"``: as segmentation_models_pytorch's ``LovaszLoss(mode="multiclass")``,
    softmax, then the Lovász extension of the Jaccard loss per present class, averaged over
    those classes (class-index targets). ``"binary"``: the Lovász hinge on the logits, as smp's
    ``LovaszLoss(mode="binary")``; ``"multilabel"``: that hinge per channel, averaged over the
    channels (masks of exactly 0 and 1; ``target`` is ``"dense"``).

    Args:
        num_classes: If given, the logits must have this many classes (channels).
        mode: ``"multiclass"`` (softmax, class-index targets), ``"multilabel"`` (a hinge per
            channel, masks ``[B, C, H, W]``) or ``"binary"`` (logits ``[B, 1, H, W]``).
        ignore_index: Target value of pixels (mask elements) that are left out.
        per_image: Compute the loss per image and average, instead of over the whole batch.
        reduction: With ``per_image``: ``"mean"`` over images, ``"sum"``, or ``"none"``
            (``[B]``). Without it the batch loss is one number for every reduction.

    Example:
        >>> loss = LovaszLoss()
        >>> loss(torch.randn(2, 3, 6, 6), torch.randint(0, 3, (2, 6, 6))).shape
        torch.Size([])
    """

    loss_name = "lovasz"

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        mode: SegmentationMode = "multiclass",
        ignore_index: int = 255,
        per_image: bool = False,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, mode=mode, ignore_index=ignore_index, reduction=reduction
        )
        self.per_image = per_image

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Lovász loss of ``logits [B, C, *]`` against targets of this loss's ``mode``."""
        labels = self.check_inputs(logits, target, zero_or_one=True)
        if self.mode != "multiclass":
            return LF.lovasz_hinge_loss(
                logits,
                target,
                ignore_index=self.ignore_index,
                per_image=self.per_image,
                reduction=self.reduction,
            )
        return LF.lovasz_softmax_loss(
            logits,
            target,
            label_range=labels,
            ignore_index=self.ignore_index,
            per_image=self.per_image,
            reduction=self.reduction,
        )


@register_loss("focal_pixelwise", task="segmentation", class_weights="alpha")
class FocalPixelwiseLoss(_ModalSegmentationLoss):
    """Focal loss per pixel: ``-w_c (1 - p_t)^gamma log p_t``, softmax or sigmoid (``mode``).

    Averaged over non-ignored pixels; with ``gamma=0`` and no ``alpha`` it is
    ``F.cross_entropy(logits, target, ignore_index=ignore_index)`` (``mode="multiclass"``).
    ``"binary"`` / ``"multilabel"``: the sigmoid focal loss of every mask element, averaged
    over the non-ignored elements, as segmentation_models_pytorch's ``FocalLoss(mode=...)``
    with ``alpha=None``; targets are masks in [0, 1] (``target`` is ``"dense"``).

    Args:
        num_classes: If given, the logits must have this many classes (channels).
        mode: ``"multiclass"`` (softmax, class-index targets), ``"multilabel"`` (a sigmoid per
            channel, masks ``[B, C, H, W]``) or ``"binary"`` (logits ``[B, 1, H, W]``).
        alpha: ``None``; a number that scales the loss; or one weight per class (channel).
        gamma: Focusing exponent (>= 0).
        ignore_index: Target value of pixels (mask elements) that are left out.
        reduction: ``"mean"`` over non-ignored pixels, ``"sum"``, or ``"none"`` (per pixel,
            0 at ignored pixels).

    Example:
        >>> loss = FocalPixelwiseLoss(gamma=2.0, alpha=[1.0, 2.0, 0.5])
        >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
        torch.Size([])
    """

    per_channel = False  # a focal term per pixel: any layout of elements is fine

    loss_name = "focal_pixelwise"
    class_alpha: Tensor | None

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        mode: SegmentationMode = "multiclass",
        alpha: NonNegative | list[NonNegative] | None = None,
        gamma: NonNegative = 2.0,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__(
            num_classes=num_classes, mode=mode, ignore_index=ignore_index, reduction=reduction
        )
        self.alpha = alpha
        self._scale = None if alpha is None or isinstance(alpha, list) else float(alpha)
        self.register_buffer(
            "class_alpha",
            LF.as_float_tensor(alpha, name="focal_pixelwise", argument="alpha")
            if isinstance(alpha, list)
            else None,
        )
        self.gamma = gamma

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Focal loss of ``logits [B, C, *]`` against targets of this loss's ``mode``."""
        self.check_inputs(logits, target, self.class_alpha)
        return LF.focal_pixelwise_loss(
            logits,
            target,
            mode=self.mode,
            gamma=self.gamma,
            alpha=self.class_alpha if self.class_alpha is not None else self._scale,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


@register_loss("ohem_cross_entropy", task="segmentation", alias="ohem")
class OhemCrossEntropyLoss(nn.Module):
    """Cross entropy with online hard example mining (OHEM) over the pixels of a batch.

    Only hard pixels count: those whose predicted probability of the true class ``p_t`` is
    below ``thresh``, and at least the ``min_kept * B`` hardest of the batch (``min_kept`` per
    image, as mmseg's ``OHEMPixelSampler``; ties at that boundary are all kept). The loss is the
    cross entropy averaged over the kept pixels. The selection has no gradient. On images of
    fewer than ``min_kept`` pixels every pixel is kept: plain cross entropy.

    Args:
        num_classes: If given, the logits must have this many classes.
        thresh: Pixels with ``p_t`` below this are kept (in [0, 1]; 0 keeps only the
            ``min_kept`` hardest).
        min_kept: At least this many pixels per image are kept, the hardest ones (>= 0).
        class_weights: Optional per-class weights ``[C]`` of the cross entropy (the mean is
            then weighted, as ``F.cross_entropy``'s).
        ignore_index: Target label of pixels that are left out (never kept).
        reduction: ``"mean"`` over the kept pixels, ``"sum"``, or ``"none"`` (per pixel, 0
            where not kept).

    Example:
        >>> loss = OhemCrossEntropyLoss(thresh=0.7, min_kept=16)
        >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8))
        >>> loss(logits, target) >= torch.nn.functional.cross_entropy(logits, target)
        tensor(True)
    """

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        thresh: Probability = 0.7,
        min_kept: NonNegativeInt = 100_000,
        class_weights: NonNegativeTensor | None = None,
        ignore_index: int = 255,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.thresh = thresh
        self.min_kept = min_kept
        self.register_buffer(
            "class_weights",
            LF.as_float_tensor(class_weights, name="ohem_cross_entropy", argument="class_weights"),
        )
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """OHEM cross entropy of ``logits [B, C, *]`` against labels ``[B, *]``."""
        labels = _check(
            logits,
            target,
            self.num_classes,
            self.ignore_index,
            "ohem_cross_entropy",
            class_weights=self.class_weights,
        )
        return LF.ohem_cross_entropy(
            logits,
            target,
            thresh=self.thresh,
            min_kept=self.min_kept,
            weight=self.class_weights,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_range=labels,
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

"""Classification losses: the semantics and arguments of their ``torch.nn`` namesakes.

Each class is a thin, registered wrapper around a function of
:mod:`autotimm.losses.functional`; the constructor signature is the loss's schema. All of
them compute in float32 for float16/bfloat16 inputs, accept an optional ``num_classes``
(validated against the prediction's class dimension, dimension 1, or 0 for an unbatched
``[C]`` input), and raise ``ValueError`` for bad labels and shapes.
"""

from __future__ import annotations

import warnings
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from autotimm.losses import functional as LF
from autotimm.losses._stack import user_stacklevel
from autotimm.losses._types import (
    NonNegative,
    NonNegativeTensor,
    NumClasses,
    Probability,
    Reduction,
)
from autotimm.losses.registry import register_loss

__all__ = [
    "AsymmetricLoss",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "MSELoss",
    "NLLLoss",
    "Poly1Loss",
    "SoftmaxFocalLoss",
]

PolyEpsilon = Annotated[float, Field(ge=-1)]
"""Poly-1's ``epsilon``: at least -1, so that the loss stays a non-negative sum of powers of
``1 - p_t``."""

LogBound = Annotated[float, Field(gt=0, lt=1)]
"""A lower bound of the probabilities inside a log, in (0, 1)."""


def _class_dim_of(pred: Tensor) -> int | None:
    """Dimension 1 for batched inputs; ``None`` (a single class) for 1-D binary inputs."""
    return 1 if pred.ndim >= 2 else None


def _index_shape(logits: Tensor) -> tuple[int, ...]:
    """The shape of class-index targets for ``logits [N, C, ...]`` (or ``[C]``)."""
    class_dim = 0 if logits.ndim == 1 else 1
    return (*logits.shape[:class_dim], *logits.shape[class_dim + 1 :])


def _refuse_float_class_indices(
    logits: Tensor, target: Tensor, name: str = "cross_entropy", dense: str = "class probabilities"
) -> None:
    """Float targets are dense (``dense`` says what they mean); float class indices get a
    message saying so."""
    if target.shape != logits.shape and tuple(target.shape) == _index_shape(logits):
        raise ValueError(
            f"{name}: float targets of shape {tuple(target.shape)} look like class "
            "indices, which must be an integer tensor (target.long()); float targets are "
            f"{dense} of the logits' shape {tuple(logits.shape)}"
        )


class _WeightedClassLoss(nn.Module):
    """What cross entropy and NLL share: class weights, an ignored label and ``num_classes``."""

    weight: Tensor | None
    loss_name: ClassVar[str]

    def __init__(
        self,
        *,
        weight: Tensor | None,
        ignore_index: int,
        reduction: Reduction,
        num_classes: int | None,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", LF.as_float_tensor(weight, name=self.loss_name))
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def check_labels(self, pred: Tensor, target: Tensor) -> tuple[int, int] | None:
        """Check class indices for ``pred [N, C, ...]`` (or ``[C]``); their ``(min, max)``."""
        return LF.checks.check_class_indices(
            pred,
            target,
            name=self.loss_name,
            class_dim=0 if pred.ndim == 1 else 1,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            class_weights=self.weight,
        )


@register_loss(
    "cross_entropy",
    task=("classification", "segmentation"),
    alias="ce",
    soft_targets=True,
    class_weights="weight",
)
class CrossEntropyLoss(_WeightedClassLoss):
    """Cross entropy on logits, exactly as :class:`torch.nn.CrossEntropyLoss`.

    Targets are class indices (``[N]``, ``[N, d1, ...]`` or a scalar for ``[C]`` logits) or
    class probabilities of the logits' shape. Unlike torch, a batch whose targets are all
    ``ignore_index`` gives a loss of 0 (with a zero gradient) instead of NaN.

    Args:
        weight: Optional per-class rescaling weights of shape ``[C]``.
        ignore_index: Target value that is ignored and does not contribute to the loss.
        label_smoothing: Amount of label smoothing in [0, 1] (0 disables it).
        reduction: ``"mean"`` (weighted mean over non-ignored targets), ``"sum"`` or ``"none"``.
        num_classes: If given, the logits' class dimension must have this size.

    Example:
        >>> import torch
        >>> loss = CrossEntropyLoss(label_smoothing=0.1, num_classes=3)
        >>> round(loss(torch.zeros(2, 3), torch.tensor([0, 2])).item(), 4)  # log(3)
        1.0986
    """

    loss_name = "cross_entropy"

    def __init__(
        self,
        *,
        weight: NonNegativeTensor | None = None,
        ignore_index: int = -100,
        label_smoothing: Probability = 0.0,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(
            weight=weight, ignore_index=ignore_index, reduction=reduction, num_classes=num_classes
        )
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits [N, C, ...]`` (or ``[C]``) against indices or probabilities."""
        if target.is_floating_point():  # class probabilities
            _refuse_float_class_indices(logits, target)
            LF.checks.check_dense(
                logits,
                target,
                name="cross_entropy",
                class_dim=0 if logits.ndim == 1 else 1,
                num_classes=self.num_classes,
                class_weights=self.weight,
            )
            labels = None
        else:
            labels = self.check_labels(logits, target)
        return LF.cross_entropy(
            logits,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
            label_range=labels,
        )


@register_loss(
    "nll", task="classification", expects="log_probabilities", class_weights="weight"
)
class NLLLoss(_WeightedClassLoss):
    """Negative log-likelihood on log-probabilities, exactly as :class:`torch.nn.NLLLoss`.

    A batch whose targets are all ``ignore_index`` gives 0 instead of torch's NaN.

    Args:
        weight: Optional per-class rescaling weights of shape ``[C]``.
        ignore_index: Target value that is ignored and does not contribute to the loss.
        reduction: ``"mean"`` (weighted mean over non-ignored targets), ``"sum"`` or ``"none"``.
        num_classes: If given, the input's class dimension must have this size.

    Example:
        >>> import torch
        >>> loss = NLLLoss()
        >>> log_probs = torch.log_softmax(torch.zeros(2, 4), 1)
        >>> round(loss(log_probs, torch.tensor([1, 3])).item(), 4)  # log 4
        1.3863
    """

    loss_name = "nll"

    def __init__(
        self,
        *,
        weight: NonNegativeTensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(
            weight=weight, ignore_index=ignore_index, reduction=reduction, num_classes=num_classes
        )

    def forward(self, log_probs: Tensor, target: Tensor) -> Tensor:
        """Loss of ``log_probs [N, C, ...]`` (or ``[C]``) against class indices."""
        return LF.nll_loss(
            log_probs,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_range=self.check_labels(log_probs, target),
        )


class _BinaryTargetLoss(nn.Module):
    """What the binary cross entropies share: an element weight, ``num_classes``, and targets
    in [0, 1] of the prediction's shape."""

    weight: Tensor | None
    loss_name: ClassVar[str]

    def __init__(
        self, *, weight: Tensor | None, reduction: Reduction, num_classes: int | None
    ) -> None:
        super().__init__()
        self.register_buffer("weight", LF.as_float_tensor(weight, name=self.loss_name))
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def check_targets(self, pred: Tensor, target: Tensor, **weights: Tensor | None) -> None:
        """Check targets in [0, 1] of ``pred``'s shape, and that the weights broadcast to it."""
        LF.checks.check_binary_targets(
            pred,
            target,
            name=self.loss_name,
            class_dim=_class_dim_of(pred),
            num_classes=self.num_classes,
            weights={"weight": self.weight, **weights},
        )


@register_loss(
    "bce_with_logits",
    task=("classification", "segmentation"),
    target="dense",
    soft_targets=True,
    class_weights="weight",
    class_weights_broadcast=True,
)
class BCEWithLogitsLoss(_BinaryTargetLoss):
    """Binary cross entropy on logits, exactly as :class:`torch.nn.BCEWithLogitsLoss`, with the
    target handling of timm's ``BinaryCrossEntropy``.

    Targets are dense (float, int or bool, of the logits' shape: multi-hot labels, or the
    soft targets of mixup and cutmix) or class indices (``[N]`` for ``[N, C]`` logits, as for
    cross entropy), which become one-hot rows.

    Args:
        weight: Optional rescaling weight broadcastable to the logits (e.g. per batch element).
        pos_weight: Optional weight of positive examples, broadcast along the last dimension
            (e.g. ``[C]`` for ``[N, C]`` logits).
        label_smoothing: Smoothing ``s`` of class-index targets: ``1 - s + s / C`` at the class,
            ``s / C`` elsewhere (timm's ``smoothing``). Dense targets are used as given unless
            ``smooth_dense`` (with a warning, once: in a model, set the model's
            ``label_smoothing`` instead).
        target_threshold: If given, every target above it becomes 1 and every other 0 (after
            smoothing), as timm's ``target_threshold``.
        smooth_dense: Also smooth dense targets, towards 1/2: ``y (1 - s) + s / 2``.
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        num_classes: If given, dimension 1 of the logits must have this size.

    Example:
        >>> import torch
        >>> loss = BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0]))
        >>> round(loss(torch.zeros(3, 2), torch.ones(3, 2)).item(), 4)  # 1.5 * log 2
        1.0397
        >>> smoothed = BCEWithLogitsLoss(label_smoothing=0.1)
        >>> round(smoothed(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 4)  # log 2
        0.6931
    """

    pos_weight: Tensor | None
    loss_name = "bce_with_logits"

    def __init__(
        self,
        *,
        weight: NonNegativeTensor | None = None,
        pos_weight: NonNegativeTensor | None = None,
        label_smoothing: Probability = 0.0,
        target_threshold: Probability | None = None,
        smooth_dense: bool = False,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, num_classes=num_classes)
        self.register_buffer(
            "pos_weight",
            LF.as_float_tensor(pos_weight, name=self.loss_name, argument="pos_weight"),
        )
        self.label_smoothing = label_smoothing
        self.target_threshold = target_threshold
        self.smooth_dense = smooth_dense

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against dense targets in [0, 1] of their shape, or class indices."""
        if _are_class_indices(logits, target):
            LF.checks.check_class_indices(
                logits,
                target,
                name=self.loss_name,
                class_dim=0 if logits.ndim == 1 else 1,
                num_classes=self.num_classes,
            )
            for argument, value in (("weight", self.weight), ("pos_weight", self.pos_weight)):
                LF.checks.check_broadcastable(value, logits, name=self.loss_name, argument=argument)
        else:
            if target.is_floating_point():
                _refuse_float_class_indices(logits, target, self.loss_name, "binary targets")
            self.check_targets(logits, target, pos_weight=self.pos_weight)
            if self.label_smoothing and not self.smooth_dense and not self._warned_unsmoothed:
                self._warn_unsmoothed()
        target = LF.binary_targets(
            logits,
            target,
            label_smoothing=self.label_smoothing,
            target_threshold=self.target_threshold,
            smooth_dense=self.smooth_dense,
        )
        return LF.binary_cross_entropy_with_logits(
            logits,
            target,
            weight=self.weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
        )


    _warned_unsmoothed = False

    def _warn_unsmoothed(self) -> None:
        # once per loss: smoothing that silently does nothing is a wrong result, not a detail
        self._warned_unsmoothed = True
        warnings.warn(
            f"{self.loss_name}: label_smoothing={self.label_smoothing} smooths class-index "
            "targets only, and these targets are dense (0/1 or probabilities, as a model "
            "one-hot encodes class indices for this loss), so they are used unsmoothed. For a "
            "classifier set the model's label_smoothing (ImageClassifier(label_smoothing=...), "
            "timm's smoothing of one-hot targets); to smooth dense targets towards 1/2 pass "
            "smooth_dense=True.",
            UserWarning,
            stacklevel=user_stacklevel(),
        )


def _are_class_indices(logits: Tensor, target: Tensor) -> bool:
    """Integer targets without the logits' class dimension (dense targets have their shape)."""
    integer = not (target.is_floating_point() or target.is_complex() or target.dtype == torch.bool)
    return integer and target.shape != logits.shape and logits.ndim >= 1


@register_loss(
    "asymmetric",
    task="classification",
    target="dense",
    soft_targets=True,
    class_weights="weight",
    class_weights_broadcast=True,
)
class AsymmetricLoss(_BinaryTargetLoss):
    """Asymmetric loss (ASL, Ridnik et al. 2021) for multi-label classification, equal to
    timm's ``AsymmetricLossMultiLabel``.

    A binary cross entropy per class whose negatives are focused harder than its positives
    (``gamma_neg > gamma_pos``) and whose easy negatives, with a probability below ``clip``,
    are discarded: with ``p = sigmoid(x)`` and ``m = min(1 - p + clip, 1)``,
    ``-(1 - p)^gamma_pos log max(p, eps)`` for a positive target and
    ``-(1 - m)^gamma_neg log max(m, eps)`` for a negative one. Targets (float, int or bool) have
    the logits' shape; soft targets (mixup, cutmix) interpolate both.

    Args:
        gamma_neg: Focusing exponent of negative targets.
        gamma_pos: Focusing exponent of positive targets.
        clip: Probability margin shifted onto the negatives (asymmetric clipping); ``None`` or
            0 disables it.
        eps: Lower bound of the probabilities inside the logs, in (0, 1): each element
            contributes at most ``-log(eps)`` times its focusing weight.
        label_smoothing: Moves every target towards 1/2: ``y (1 - s) + s / 2``.
        weight: Optional rescaling weight broadcastable to the logits, e.g. one per class.
        reduction: ``"mean"`` over all elements (timm's default, ``"batchmean"``, is the sum
            divided by the batch size), ``"sum"`` or ``"none"``.
        num_classes: If given, dimension 1 of the logits must have this size.

    Example:
        >>> import torch
        >>> loss = AsymmetricLoss(gamma_neg=4.0, gamma_pos=1.0, clip=0.05, reduction="sum")
        >>> logits = torch.tensor([[2.0, -1.0, -3.0]])
        >>> round(loss(logits, torch.tensor([[1, 0, 0]])).item(), 4)
        0.0157
    """

    loss_name = "asymmetric"

    def __init__(
        self,
        *,
        gamma_neg: NonNegative = 4.0,
        gamma_pos: NonNegative = 1.0,
        clip: Probability | None = 0.05,
        eps: LogBound = 1e-8,
        label_smoothing: Probability = 0.0,
        weight: NonNegativeTensor | None = None,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, num_classes=num_classes)
        self.gamma_neg = gamma_neg
        self.gamma_pos = gamma_pos
        self.clip = clip
        self.eps = eps
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against multi-hot or soft targets of the same shape."""
        self.check_targets(logits, target)
        return LF.asymmetric_loss(
            logits,
            target,
            gamma_neg=self.gamma_neg,
            gamma_pos=self.gamma_pos,
            clip=self.clip,
            eps=self.eps,
            label_smoothing=self.label_smoothing,
            weight=self.weight,
            reduction=self.reduction,
        )


@register_loss(
    "bce",
    task=("classification", "segmentation"),
    expects="probabilities",
    target="dense",
    soft_targets=True,
    class_weights="weight",
    class_weights_broadcast=True,
)
class BCELoss(_BinaryTargetLoss):
    """Binary cross entropy on probabilities, exactly as :class:`torch.nn.BCELoss`.

    Log-probabilities are clamped at -100 as in torch, so saturated probabilities give a
    finite loss. Probabilities outside [0, 1] raise a ``ValueError``.

    Args:
        weight: Optional rescaling weight broadcastable to the input.
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        num_classes: If given, dimension 1 of the input must have this size.

    Example:
        >>> import torch
        >>> loss = BCELoss()
        >>> round(loss(torch.full((2, 2), 0.5), torch.ones(2, 2)).item(), 4)  # log 2
        0.6931
    """

    loss_name = "bce"

    def __init__(
        self,
        *,
        weight: NonNegativeTensor | None = None,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, num_classes=num_classes)

    def forward(self, probs: Tensor, target: Tensor) -> Tensor:
        """Loss of probabilities ``probs`` against targets in [0, 1] of the same shape."""
        self.check_targets(probs, target)
        LF.checks.check_unit_interval(probs, name="bce", argument="prediction")
        return LF.binary_cross_entropy(probs, target, weight=self.weight, reduction=self.reduction)


@register_loss(
    "mse", task="classification", expects="probabilities", target="dense", soft_targets=True
)
class MSELoss(nn.Module):
    """Mean squared error, exactly as :class:`torch.nn.MSELoss` (target of the input's shape).

    Args:
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        num_classes: If given, dimension 1 of the input must have this size.

    Example:
        >>> import torch
        >>> MSELoss()(torch.zeros(2, 3), torch.ones(2, 3)).item()
        1.0
    """

    def __init__(
        self, *, reduction: Reduction = "mean", num_classes: NumClasses | None = None
    ) -> None:
        super().__init__()
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Squared error of ``pred`` against targets of the same shape."""
        LF.checks.check_dense(
            pred, target, name="mse", class_dim=_class_dim_of(pred), num_classes=self.num_classes
        )
        return LF.mse_loss(pred, target, reduction=self.reduction)


@register_loss("poly1", task="classification", soft_targets=True, class_weights="weight")
class Poly1Loss(_WeightedClassLoss):
    """Poly-1 cross entropy (Leng et al. 2022): ``CE + epsilon (1 - p_t)``.

    Cross entropy plus the first polynomial term of its expansion in ``1 - p_t``, weighted by
    ``epsilon`` (the paper's best values lie in [-1, 2]; 0 is cross entropy). Targets are class
    indices or class probabilities (mixup, cutmix), as for :class:`CrossEntropyLoss`; with label
    smoothing ``1 - p_t`` is ``1 - sum_c q_c p_c`` for the smoothed targets ``q``, as in the
    paper's code. Class weights weight both terms of a class alike, so ``epsilon=0`` is
    ``torch.nn.CrossEntropyLoss`` exactly.

    Args:
        epsilon: Weight of the ``1 - p_t`` term, at least -1.
        weight: Optional per-class rescaling weights of shape ``[C]``.
        ignore_index: Target value that is ignored and does not contribute to the loss.
        label_smoothing: Amount of label smoothing in [0, 1] (0 disables it).
        reduction: ``"mean"`` (weighted mean over non-ignored targets), ``"sum"`` or ``"none"``.
        num_classes: If given, the logits' class dimension must have this size.

    Example:
        >>> import torch
        >>> loss = Poly1Loss(epsilon=1.0)
        >>> round(loss(torch.zeros(2, 4), torch.tensor([0, 3])).item(), 4)  # log 4 + 3/4
        2.1363
    """

    loss_name = "poly1"

    def __init__(
        self,
        *,
        epsilon: PolyEpsilon = 1.0,
        weight: NonNegativeTensor | None = None,
        ignore_index: int = -100,
        label_smoothing: Probability = 0.0,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(
            weight=weight, ignore_index=ignore_index, reduction=reduction, num_classes=num_classes
        )
        self.epsilon = epsilon
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits [N, C, ...]`` (or ``[C]``) against indices or probabilities."""
        if target.is_floating_point():  # class probabilities
            _refuse_float_class_indices(logits, target, self.loss_name)
            LF.checks.check_dense(
                logits,
                target,
                name=self.loss_name,
                class_dim=0 if logits.ndim == 1 else 1,
                num_classes=self.num_classes,
                class_weights=self.weight,
            )
        else:
            self.check_labels(logits, target)
        return LF.poly1_cross_entropy(
            logits,
            target,
            epsilon=self.epsilon,
            weight=self.weight,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


@register_loss("softmax_focal", task="classification", class_weights="alpha")
class SoftmaxFocalLoss(nn.Module):
    """Multi-class (softmax) focal loss on ``[N, C]`` logits and class indices:
    ``-w_c (1 - p_t)^gamma log p_t``.

    Averaged over the non-ignored samples. The same function as ``focal_pixelwise``, which
    applies it per pixel: on ``[N, C]`` logits the two are equal to ``focal_pixelwise`` on
    ``[N, C, 1, 1]``. With ``gamma=0`` and no ``alpha`` it is
    ``F.cross_entropy(logits, target, ignore_index=ignore_index)``.

    Args:
        num_classes: If given, the logits must have this many classes.
        alpha: ``None``; a number that scales the loss; or one weight per class.
        gamma: Focusing exponent (>= 0).
        ignore_index: Target label of samples that are left out.
        reduction: ``"mean"`` over non-ignored samples, ``"sum"``, or ``"none"`` (per sample,
            0 at ignored ones).

    Example:
        >>> import torch
        >>> loss = SoftmaxFocalLoss(gamma=2.0, alpha=[1.0, 2.0])
        >>> round(loss(torch.zeros(1, 2), torch.tensor([1])).item(), 4)  # 2 (1/2)^2 log 2
        0.3466
    """

    class_alpha: Tensor | None

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        alpha: NonNegative | list[NonNegative] | None = None,
        gamma: NonNegative = 2.0,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.alpha = alpha
        self._scale = None if alpha is None or isinstance(alpha, list) else float(alpha)
        self.register_buffer(
            "class_alpha",
            LF.as_float_tensor(alpha, name="softmax_focal", argument="alpha")
            if isinstance(alpha, list)
            else None,
        )
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Focal loss of ``logits [N, C]`` against class indices ``[N]``."""
        LF.checks.check_softmax_channels(logits, name="softmax_focal")
        LF.checks.check_class_indices(
            logits,
            target,
            name="softmax_focal",
            class_dim=1,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
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

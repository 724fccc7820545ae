"""Classification losses: the semantics and arguments of their ``torch.nn`` namesakes.

Each class is a thin, registered wrapper around a function of
:mod:`autotimm.losses.functional`; the constructor signature is the loss's schema. All of
them compute in float32 for float16/bfloat16 inputs, accept an optional ``num_classes``
(validated against the prediction's class dimension, dimension 1, or 0 for an unbatched
``[C]`` input), and raise ``ValueError`` for bad labels and shapes.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from autotimm.losses import functional as LF
from autotimm.losses._types import NonNegativeTensor, NumClasses, Probability, Reduction
from autotimm.losses.registry import register_loss

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "MSELoss", "NLLLoss"]


def _class_dim_of(pred: Tensor) -> int | None:
    """Dimension 1 for batched inputs; ``None`` (a single class) for 1-D binary inputs."""
    return 1 if pred.ndim >= 2 else None


def _refuse_float_class_indices(logits: Tensor, target: Tensor) -> None:
    """Float targets are class probabilities; float class indices get a message saying so."""
    class_dim = 0 if logits.ndim == 1 else 1
    index_shape = (*logits.shape[:class_dim], *logits.shape[class_dim + 1 :])
    if target.shape != logits.shape and tuple(target.shape) == index_shape:
        raise ValueError(
            f"cross_entropy: float targets of shape {tuple(target.shape)} look like class "
            "indices, which must be an integer tensor (target.long()); float targets are "
            f"class probabilities of the logits' shape {tuple(logits.shape)}"
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
    """Binary cross entropy on logits, exactly as :class:`torch.nn.BCEWithLogitsLoss`.

    For multi-label classification: targets (float, int or bool) have the logits' shape.

    Args:
        weight: Optional rescaling weight broadcastable to the logits (e.g. per batch element).
        pos_weight: Optional weight of positive examples, broadcast along the last dimension
            (e.g. ``[C]`` for ``[N, C]`` logits).
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        num_classes: If given, dimension 1 of the logits must have this size.

    Example:
        >>> import torch
        >>> loss = BCEWithLogitsLoss(pos_weight=torch.tensor([1.0, 2.0]))
        >>> round(loss(torch.zeros(3, 2), torch.ones(3, 2)).item(), 4)  # 1.5 * log 2
        1.0397
    """

    pos_weight: Tensor | None
    loss_name = "bce_with_logits"

    def __init__(
        self,
        *,
        weight: NonNegativeTensor | None = None,
        pos_weight: NonNegativeTensor | None = None,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__(weight=weight, reduction=reduction, num_classes=num_classes)
        self.register_buffer(
            "pos_weight",
            LF.as_float_tensor(pos_weight, name=self.loss_name, argument="pos_weight"),
        )

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against targets in [0, 1] of the same shape."""
        self.check_targets(logits, target, pos_weight=self.pos_weight)
        return LF.binary_cross_entropy_with_logits(
            logits,
            target,
            weight=self.weight,
            pos_weight=self.pos_weight,
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

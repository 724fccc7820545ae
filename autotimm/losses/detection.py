"""Detection losses: sigmoid focal and its quality-aware variants (quality focal, varifocal),
distribution focal, box regression (L1, smooth L1, the IoU family), centerness and the FCOS
criterion.

Boxes are ``x1, y1, x2, y2``. Values match torchvision's ``sigmoid_focal_loss`` and
``*_box_iou_loss`` functions, torch's ``l1_loss`` and ``smooth_l1_loss``, and mmdet's
formulas for GFL and VarifocalNet; each class is a thin, registered wrapper around a function
of :mod:`autotimm.losses.functional`.
"""

from __future__ import annotations

import warnings
from typing import Annotated, ClassVar

import torch
from pydantic import Field
from torch import Tensor, nn

from autotimm.losses import functional as LF
from autotimm.losses._stack import user_stacklevel
from autotimm.losses._types import NonNegative, NumClasses, Probability, Reduction
from autotimm.losses.adapt import LossFeed, LossTakes, adapt_to_loss
from autotimm.losses.registry import register_loss

__all__ = [
    "CIoULoss",
    "CenternessLoss",
    "DIoULoss",
    "DistributionFocalLoss",
    "FCOSLoss",
    "FocalLoss",
    "GIoULoss",
    "IoULoss",
    "L1Loss",
    "QualityFocalLoss",
    "SmoothL1Loss",
    "VarifocalLoss",
]

PositiveFloat = Annotated[float, Field(gt=0)]
RegMax = Annotated[int, Field(ge=1)]


@register_loss("focal", task="detection", target="dense", class_dim=-1, soft_targets=True)
class FocalLoss(nn.Module):
    """Sigmoid focal loss (RetinaNet), equal to ``torchvision.ops.sigmoid_focal_loss``.

    Targets are either floats of the logits' shape (binary or soft labels), or integer labels
    ``[...]`` for logits ``[..., C]``: ``0 .. C-1`` a class, ``C`` background (an all-zero
    row), ``ignore_index`` left out (``"mean"`` then averages over the kept rows' elements).
    The gradient is computed analytically and stays finite for any ``gamma``, also for
    ``gamma < 1`` at saturated logits.

    Args:
        alpha: Weight of positive targets in [0, 1] (negatives get ``1 - alpha``); ``None``
            disables the balancing.
        gamma: Focusing exponent; 0 gives (alpha-balanced) binary cross entropy.
        ignore_index: Integer target label whose row is ignored.
        reduction: ``"mean"`` over elements, ``"sum"`` or ``"none"``.
        num_classes: If given, the logits' last dimension must have this size.

    Example:
        >>> loss = FocalLoss(alpha=0.25, gamma=2.0, reduction="sum")
        >>> logits = torch.tensor([[3.0, -2.0], [0.5, 0.0]])
        >>> round(loss(logits, torch.tensor([0, 2])).item(), 4)  # row 2 is background
        0.4144
    """

    def __init__(
        self,
        *,
        alpha: Probability | None = 0.25,
        gamma: NonNegative = 2.0,
        ignore_index: int = -1,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against float targets of their shape or integer labels."""
        class_dim = -1 if logits.ndim > 0 else None
        if target.is_floating_point() or target.dtype == torch.bool:
            LF.checks.check_binary_targets(
                logits, target, name="focal", class_dim=class_dim, num_classes=self.num_classes
            )
            return LF.sigmoid_focal_loss(
                logits, target, alpha=self.alpha, gamma=self.gamma, reduction=self.reduction
            )
        LF.checks.check_class_indices(
            logits,
            target,
            name="focal",
            class_dim=-1,
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            extra_labels=1,
        )
        return LF.sigmoid_focal_loss_with_indices(
            logits,
            target,
            alpha=self.alpha,
            gamma=self.gamma,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
        )


class _BoxIoULoss(nn.Module):
    """Shared forward of the IoU-family losses (each subclass only names its kind)."""

    kind: ClassVar[LF.BoxLossKind]

    def __init__(self, *, reduction: Reduction = "mean", eps: PositiveFloat = 1e-7) -> None:
        super().__init__()
        self.reduction: Reduction = reduction
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of boxes ``pred [..., 4]`` against ``target [..., 4]``, optionally weighted.

        With ``weight [...]`` the ``"mean"`` is ``sum(w * l) / sum(w)``.
        """
        LF.checks.check_boxes(pred, target, name=self.kind, weight=weight)
        loss = LF.box_iou_loss(pred, target, kind=self.kind, eps=self.eps)
        return LF.weighted_reduce(loss, weight, self.reduction)


@register_loss("giou", task="detection", target="boxes")
class GIoULoss(_BoxIoULoss):
    """Generalized IoU loss, equal to ``torchvision.ops.generalized_box_iou_loss``.

    ``1 - IoU + (|C| - |A u B|) / |C|`` with ``C`` the smallest enclosing box. Empty inputs give
    0 (with a gradient); degenerate boxes give finite values and gradients.

    Args:
        reduction: ``"mean"`` (``sum(w*l)/sum(w)`` when weighted), ``"sum"`` or ``"none"``.
        eps: Small number added to denominators.

    Example:
        >>> loss = GIoULoss()
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> target = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
        >>> round(loss(pred, target).item(), 4)
        1.0794
    """

    kind = "giou"


@register_loss("diou", task="detection", target="boxes")
class DIoULoss(_BoxIoULoss):
    """Distance IoU loss, equal to ``torchvision.ops.distance_box_iou_loss``.

    ``1 - IoU + d^2 / c^2`` with ``d`` the distance of the centres and ``c`` the diagonal of
    the smallest enclosing box.

    Args:
        reduction: ``"mean"`` (``sum(w*l)/sum(w)`` when weighted), ``"sum"`` or ``"none"``.
        eps: Small number added to denominators.

    Example:
        >>> loss = DIoULoss(reduction="none")
        >>> loss(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[0.0, 0.0, 2.0, 2.0]]))
        tensor([0.])
    """

    kind = "diou"


@register_loss("ciou", task="detection", target="boxes")
class CIoULoss(_BoxIoULoss):
    """Complete IoU loss, equal to ``torchvision.ops.complete_box_iou_loss``.

    DIoU plus an aspect-ratio term; boxes of zero height get a finite aspect angle (the height
    is taken as at least ``eps``), so degenerate boxes give finite gradients.

    Args:
        reduction: ``"mean"`` (``sum(w*l)/sum(w)`` when weighted), ``"sum"`` or ``"none"``.
        eps: Small number added to denominators.

    Example:
        >>> loss = CIoULoss()
        >>> pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
        >>> target = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> round(loss(pred, target).item(), 4)
        0.5532
    """

    kind = "ciou"


@register_loss("iou", task="detection", target="boxes")
class IoULoss(nn.Module):
    """IoU loss: ``1 - IoU`` (``mode="linear"``) or ``-log IoU`` (``mode="log"``, UnitBox's).

    ``IoU = |A n B| / (|A u B| + eps)`` as ``torchvision.ops.box_iou`` computes it (there
    without ``eps``); the log takes the IoU as at least ``eps``, as mmdet's ``IoULoss``, so
    disjoint boxes give ``-log(eps)`` with a zero gradient. Unlike GIoU, disjoint boxes get no
    gradient at all in either mode.

    Args:
        mode: ``"linear"`` for ``1 - IoU``, ``"log"`` for ``-log max(IoU, eps)``.
        reduction: ``"mean"`` (``sum(w*l)/sum(w)`` when weighted), ``"sum"`` or ``"none"``.
        eps: Small number added to the union, and the least IoU inside the log.

    Example:
        >>> loss = IoULoss(mode="log")
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> round(loss(pred, pred + 1).item(), 4)  # -log(1/7)
        1.9459
    """

    def __init__(
        self,
        *,
        mode: LF.IoUMode = "linear",
        reduction: Reduction = "mean",
        eps: PositiveFloat = 1e-7,
    ) -> None:
        super().__init__()
        self.mode: LF.IoUMode = mode
        self.reduction: Reduction = reduction
        self.eps = eps

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of boxes ``pred [..., 4]`` against ``target [..., 4]``, optionally weighted.

        With ``weight [...]`` the ``"mean"`` is ``sum(w * l) / sum(w)``.
        """
        LF.checks.check_boxes(pred, target, name="iou", weight=weight)
        loss = LF.iou_loss(pred, target, mode=self.mode, eps=self.eps)
        return LF.weighted_reduce(loss, weight, self.reduction)


@register_loss("l1", task="detection", target="boxes")
class L1Loss(nn.Module):
    """L1 loss of box regression, equal to ``torch.nn.functional.l1_loss``, with optional
    per-box weights.

    Args:
        reduction: ``"mean"`` over coordinates (``sum(w*l) / (4 sum(w))`` when weighted),
            ``"sum"`` or ``"none"`` (per coordinate, ``[..., 4]``).

    Example:
        >>> loss = L1Loss()
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> loss(pred, torch.tensor([[1.0, 0.0, 2.0, 4.0]])).item()  # (1 + 2) / 4
        0.75
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction: Reduction = reduction

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of ``pred [..., 4]`` against ``target [..., 4]``, with optional ``weight [...]``."""
        LF.checks.check_boxes(pred, target, name="l1", weight=weight)
        return LF.l1_loss(pred, target, reduction=self.reduction, weight=weight)


@register_loss("smooth_l1", task="detection", target="boxes")
class SmoothL1Loss(nn.Module):
    """Smooth L1 loss of box regression, equal to ``torch.nn.functional.smooth_l1_loss``, with
    optional per-box weights: ``0.5 d^2 / beta`` where ``|d| < beta``, else ``|d| - beta / 2``.

    Args:
        beta: Where the loss turns from quadratic to linear; 0 gives the L1 loss.
        reduction: ``"mean"`` over coordinates (``sum(w*l) / (4 sum(w))`` when weighted),
            ``"sum"`` or ``"none"`` (per coordinate, ``[..., 4]``).

    Example:
        >>> loss = SmoothL1Loss(beta=1.0)
        >>> pred = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
        >>> loss(pred, torch.tensor([[0.5, 0.0, 2.0, 4.0]])).item()  # (1/8 + 3/2) / 4
        0.40625
    """

    def __init__(self, *, beta: NonNegative = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.beta = beta
        self.reduction: Reduction = reduction

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of ``pred [..., 4]`` against ``target [..., 4]``, with optional ``weight [...]``."""
        LF.checks.check_boxes(pred, target, name="smooth_l1", weight=weight)
        return LF.smooth_l1_loss(
            pred, target, beta=self.beta, reduction=self.reduction, weight=weight
        )


@register_loss(
    "quality_focal", task="detection", target="dense", class_dim=-1, soft_targets=True
)
class QualityFocalLoss(nn.Module):
    """Quality focal loss of GFL (Li et al. 2020): ``|y - sigmoid(x)|^beta BCE(x, y)``.

    The classification branch learns the localisation quality: targets of the logits' shape
    are soft scores in [0, 1], the IoU of the predicted box with its ground truth at that
    box's class and 0 elsewhere (mmdet's ``quality_focal_loss_tensor_target``). With 0/1
    targets it is the focal loss with ``gamma=beta`` and no ``alpha``.

    Args:
        beta: Focusing exponent; 0 gives binary cross entropy.
        reduction: ``"mean"`` over elements, ``"sum"`` or ``"none"``.
        num_classes: If given, the logits' last dimension must have this size.

    Example:
        >>> loss = QualityFocalLoss(beta=2.0, reduction="sum")
        >>> logits = torch.tensor([[0.0, 0.0]])
        >>> round(loss(logits, torch.tensor([[0.8, 0.0]])).item(), 4)
        0.2357
    """

    def __init__(
        self,
        *,
        beta: NonNegative = 2.0,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__()
        self.beta = beta
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against soft quality targets in [0, 1] of the same shape."""
        LF.checks.check_binary_targets(
            logits,
            target,
            name="quality_focal",
            class_dim=-1 if logits.ndim > 0 else None,
            num_classes=self.num_classes,
        )
        return LF.quality_focal_loss(logits, target, beta=self.beta, reduction=self.reduction)


@register_loss(
    "varifocal", task="detection", target="dense", class_dim=-1, soft_targets=True
)
class VarifocalLoss(nn.Module):
    """Varifocal loss of VarifocalNet (Zhang et al. 2021), as mmdet's ``varifocal_loss``.

    Targets of the logits' shape are IoU-aware classification scores in [0, 1] (the IoU at a
    box's class, 0 elsewhere). Positives (``y > 0``) get ``y BCE(x, y)``, weighted by their
    score; negatives get ``alpha sigmoid(x)^gamma BCE(x, 0)``, focused as in the focal loss.

    Args:
        alpha: Weight of the negatives.
        gamma: Focusing exponent of the negatives.
        iou_weighted: Weight each positive by its target score (else by 1).
        reduction: ``"mean"`` over elements, ``"sum"`` or ``"none"``.
        num_classes: If given, the logits' last dimension must have this size.

    Example:
        >>> loss = VarifocalLoss(alpha=0.75, gamma=2.0, reduction="sum")
        >>> logits = torch.tensor([[0.0, 0.0]])
        >>> round(loss(logits, torch.tensor([[0.8, 0.0]])).item(), 4)
        0.6845
    """

    def __init__(
        self,
        *,
        alpha: NonNegative = 0.75,
        gamma: NonNegative = 2.0,
        iou_weighted: bool = True,
        reduction: Reduction = "mean",
        num_classes: NumClasses | None = None,
    ) -> None:
        super().__init__()
        self.alpha = alpha
        self.gamma = gamma
        self.iou_weighted = iou_weighted
        self.reduction: Reduction = reduction
        self.num_classes = num_classes

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of ``logits`` against IoU-aware scores in [0, 1] of the same shape."""
        LF.checks.check_binary_targets(
            logits,
            target,
            name="varifocal",
            class_dim=-1 if logits.ndim > 0 else None,
            num_classes=self.num_classes,
        )
        return LF.varifocal_loss(
            logits,
            target,
            alpha=self.alpha,
            gamma=self.gamma,
            iou_weighted=self.iou_weighted,
            reduction=self.reduction,
        )


@register_loss("distribution_focal", task="detection", target="structured")
class DistributionFocalLoss(nn.Module):
    """Distribution focal loss of GFL (Li et al. 2020), as mmdet's ``distribution_focal_loss``.

    Each box side is predicted as a distribution over the distances ``0 .. reg_max`` (in
    stride units): logits ``[N, 4 * (reg_max + 1)]``. Against a continuous target distance
    ``y``, the loss is the cross entropy towards the two bins around ``y``, weighted by their
    nearness: ``-((b + 1 - y) log p_b + (y - b) log p_(b+1))`` with ``b = floor(y)``. Targets
    ``[N, 4]`` lie in ``[0, reg_max]`` (``reg_max`` itself is the last bin).

    Args:
        reg_max: The largest distance bin (GFL's default is 16: 17 bins per side).
        reduction: ``"mean"`` over box sides (``sum(w*l) / (4 sum(w))`` when weighted),
            ``"sum"`` or ``"none"`` (per side, ``[N, 4]``).

    Example:
        >>> loss = DistributionFocalLoss(reg_max=4)
        >>> logits = torch.zeros(1, 20)  # uniform over the 5 bins: log 5 per side
        >>> round(loss(logits, torch.tensor([[0.5, 1.0, 2.25, 4.0]])).item(), 4)
        1.6094
    """

    def __init__(self, *, reg_max: RegMax = 16, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reg_max = reg_max
        self.reduction: Reduction = reduction

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        """Loss of ``pred [..., 4 * (reg_max + 1)]`` against distances ``target [..., 4]``,
        with optional per-box ``weight [...]``."""
        bins = self.reg_max + 1
        LF.checks.check_bin_distances(
            pred, target, name="distribution_focal", bins=bins, weight=weight
        )
        return LF.distribution_focal_loss(
            pred.reshape(*target.shape, bins),
            target,
            reduction=self.reduction,
            weight=None if weight is None else weight.unsqueeze(-1),
        )


@register_loss("centerness", task="detection", target="dense", soft_targets=True)
class CenternessLoss(nn.Module):
    """Binary cross entropy between centerness logits and centerness targets in [0, 1].

    Args:
        reduction: ``"mean"`` over elements, ``"sum"`` or ``"none"``.

    Example:
        >>> target = torch.tensor([0.0, 0.5, 1.0])
        >>> round(CenternessLoss()(torch.zeros(3), target).item(), 4)  # log 2
        0.6931
    """

    def __init__(self, *, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Loss of centerness ``logits`` against ``target`` of the same shape."""
        LF.checks.check_binary_targets(logits, target, name="centerness")
        return LF.binary_cross_entropy_with_logits(logits, target, reduction=self.reduction)


def _component(
    value: str | nn.Module, argument: str, feed: LossFeed
) -> tuple[nn.Module, LossTakes | None]:
    """A component of the FCOS criterion, resolved against what the criterion feeds it
    (``feed``, which asks for ``reduction="sum"``), and what it takes."""
    from autotimm.losses.errors import ArgumentProblem, LossConfigError
    from autotimm.losses.resolve import resolve_loss

    try:
        resolved = resolve_loss(
            value,
            feed=feed,
            context={"num_classes": feed.num_classes},
            argument=argument,
            owner="fcos",
            warn_task=False,
        )
    except ValueError as error:  # unknown name, bad arguments, or a loss that does not fit
        expected = "a loss that fits it, by name or as a module"
        problem = ArgumentProblem(argument, str(error), expected=expected, given=value)
        raise LossConfigError("fcos", [problem]) from error
    reduction = getattr(resolved.module, "reduction", "sum")
    if reduction != "sum":  # FCOS normalises summed terms itself; a mean would shrink them
        warnings.warn(
            f"fcos {argument}: the criterion expects a summed loss, but "
            f"{type(resolved.module).__name__} has reduction={reduction!r}; pass its registry "
            "name (built with reduction='sum') or an instance with reduction='sum'",
            UserWarning,
            stacklevel=user_stacklevel(),
        )
    return resolved.module, resolved.takes


def _summed(value: Tensor) -> Tensor:
    return value if value.ndim == 0 else value.sum()


@register_loss("fcos", task="detection", target="structured")
class FCOSLoss(nn.Module):
    """The FCOS criterion over all locations of a batch.

    ``cls_weight * cls_loss(sum) / n + reg_weight * reg_loss(foreground, sum) / n +
    centerness_weight * BCE(foreground centerness, sum) / n`` with ``n = max(1, #foreground)``.
    The classification loss is fed the logits and one-hot float targets of the non-ignored
    locations (background rows are all zero); the box loss the foreground boxes
    (:meth:`component_feeds`). Each component must fit what it is fed, and is adapted to what
    it takes (a loss that takes probabilities gets sigmoid probabilities). The criterion
    normalises *summed* terms: a component given by name is built with ``reduction="sum"``,
    a registered instance left at another default reduction is rebuilt with it, and a
    component whose reduction is still not ``"sum"`` gets a warning. After each call
    ``last_components`` holds the detached ``"cls"``, ``"reg"`` and ``"centerness"`` terms
    (before weighting) for logging.

    Args:
        num_classes: If given, the classification logits must have this many classes.
        cls_loss: Classification loss: a registered name or a module, for
            ``(logits [M, C], one-hot targets [M, C])``.
        reg_loss: Box loss: a registered name or a module, for
            ``(pred boxes [F, 4], target boxes [F, 4])``.
        cls_weight: Weight of the classification term.
        reg_weight: Weight of the box regression term.
        centerness_weight: Weight of the centerness term.
        reduction: ``"mean"`` divides each term by ``n`` (the FCOS normalisation), ``"sum"``
            does not, ``"none"`` returns the three weighted, normalised terms as a ``[3]``
            tensor.

    Example:
        >>> loss = FCOSLoss(num_classes=2)
        >>> boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
        >>> total = loss(torch.zeros(2, 2), boxes, torch.zeros(2), torch.tensor([1, 2]),
        ...              boxes, torch.tensor([1.0, 0.0]))
        >>> sorted(loss.last_components)
        ['centerness', 'cls', 'reg']
    """

    last_components: dict[str, Tensor]

    def __init__(
        self,
        *,
        num_classes: NumClasses | None = None,
        cls_loss: str | nn.Module = "focal",
        reg_loss: str | nn.Module = "giou",
        cls_weight: NonNegative = 1.0,
        reg_weight: NonNegative = 1.0,
        centerness_weight: NonNegative = 1.0,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        feeds = self.component_feeds(num_classes)
        self._cls_feed = feeds["cls_loss"]
        self.cls_loss, self._cls_takes = _component(cls_loss, "cls_loss", feeds["cls_loss"])
        self.reg_loss, _ = _component(reg_loss, "reg_loss", feeds["reg_loss"])
        self.cls_weight = cls_weight
        self.reg_weight = reg_weight
        self.centerness_weight = centerness_weight
        self.reduction: Reduction = reduction
        self.last_components = {}

    @staticmethod
    def component_feeds(num_classes: int | None = None) -> dict[str, LossFeed]:
        """What the criterion feeds its ``cls_loss`` and ``reg_loss``: one-hot targets of the
        logits' shape, and boxes; both are needed summed (``reduction="sum"``).

        Example:
            >>> FCOSLoss.component_feeds(3)["cls_loss"].describe()
            'logits [M, C] (C = 3) and 0/1 targets [M, C]'
        """
        return {
            "cls_loss": LossFeed(
                task="detection",
                target="dense",
                prediction=("M", "C"),
                num_classes=num_classes,
                reduction="sum",
            ),
            "reg_loss": LossFeed(
                task="detection", target="boxes", prediction=("F", "4"), reduction="sum"
            ),
        }

    def forward(
        self,
        cls_logits: Tensor,
        box_pred: Tensor,
        centerness_logits: Tensor,
        cls_targets: Tensor,
        box_targets: Tensor,
        centerness_targets: Tensor,
    ) -> Tensor:
        """The weighted FCOS loss over ``N`` locations.

        Args:
            cls_logits: ``[N, C]`` classification logits.
            box_pred: ``[N, 4]`` predicted boxes.
            centerness_logits: ``[N]`` centerness logits.
            cls_targets: ``[N]`` labels: ``0 .. C-1`` foreground, ``C`` background, -1 ignored.
            box_targets: ``[N, 4]`` target boxes (used at foreground locations).
            centerness_targets: ``[N]`` centerness targets in [0, 1] (used at foreground).
        """
        LF.checks.check_class_indices(
            cls_logits,
            cls_targets,
            name="fcos",
            class_dim=-1,
            num_classes=self.num_classes,
            ignore_index=-1,
            extra_labels=1,
        )
        LF.checks.check_boxes(box_pred, box_targets, name="fcos")
        LF.checks.check_binary_targets(centerness_logits, centerness_targets, name="fcos")
        if not torch.compiler.is_compiling() and box_pred.shape[:-1] != cls_targets.shape:
            raise ValueError(
                f"fcos: {tuple(box_pred.shape)} boxes for {tuple(cls_targets.shape)} locations"
            )
        classes = cls_logits.shape[-1]
        valid = cls_targets >= 0
        foreground = valid & (cls_targets < classes)
        n = foreground.sum().clamp_min(1).to(torch.float32)
        one_hot = (
            cls_targets.unsqueeze(-1) == torch.arange(classes, device=cls_targets.device)
        ).to(torch.float32)
        # ignored locations are left out, also while compiling (where the all-valid shortcut,
        # which reads a value, is not taken); treating them as background would change the loss
        if not torch.compiler.is_compiling() and bool(valid.all()):
            cls_term = _summed(self.cls_loss(*self._adapt_cls(cls_logits, one_hot)))
        else:
            cls_term = _summed(self.cls_loss(*self._adapt_cls(cls_logits[valid], one_hot[valid])))
        reg_term = _summed(self.reg_loss(box_pred[foreground], box_targets[foreground]))
        centerness_term = LF.binary_cross_entropy_with_logits(
            centerness_logits[foreground], centerness_targets[foreground], reduction="sum"
        )
        terms = torch.stack([cls_term.float(), reg_term.float(), centerness_term])
        if LF.inner_reduction(self.reduction) == "none" or self.reduction == "mean":
            terms = terms / n  # the FCOS normalisation, also of the unreduced terms
        self.last_components = dict(
            zip(("cls", "reg", "centerness"), terms.detach().unbind(), strict=True)
        )
        weights = torch.tensor(
            [self.cls_weight, self.reg_weight, self.centerness_weight],
            dtype=terms.dtype,
            device=terms.device,
        )
        weighted = terms * weights
        return weighted if self.reduction == "none" else weighted.sum()

    def _adapt_cls(self, logits: Tensor, one_hot: Tensor) -> tuple[Tensor, Tensor]:
        return adapt_to_loss(self._cls_feed, self._cls_takes, logits, one_hot)

"""Pure functional cores of the built-in losses.

Every built-in loss module is a thin wrapper around one function here. The functions:

- compute in float32 when given float16/bfloat16 inputs (and return float32),
- never produce NaN for empty inputs or all-ignored batches (a ``"mean"`` over nothing is 0,
  still connected to the graph so ``backward`` works),
- assume validated inputs: call :func:`check_inputs` first (the modules do) to turn bad labels
  and shapes into a ``ValueError`` instead of an index error from inside torch.

Nothing here imports torchvision, timm or lightning.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from autotimm.losses._types import Reduction

__all__ = [
    "NonNegative",
    "NumClasses",
    "Probability",
    "as_float_tensor",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "box_iou_loss",
    "check_inputs",
    "cross_entropy",
    "dice_loss",
    "jaccard_loss",
    "lovasz_softmax_loss",
    "mse_loss",
    "nll_loss",
    "reduce_loss",
    "segmentation_counts",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_with_indices",
    "softmax_focal_loss",
    "tversky_loss",
    "weighted_reduce",
]

BoxLossKind = Literal["giou", "diou", "ciou"]

# constrained constructor-parameter types shared by the loss modules (read by the registry)
NumClasses = Annotated[int, Field(ge=1)]
NonNegative = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]

_TINY = torch.finfo(torch.float32).tiny
_LOW_PRECISION = (torch.float16, torch.bfloat16)


# --------------------------------------------------------------------------- helpers
class _Float16ToFloat32(torch.autograd.Function):
    """Upcast float16 to float32; the gradient is cast back saturating at float16's range.

    A float32 gradient such as ``1e12`` (e.g. BCE on a saturated probability) would otherwise
    become ``inf`` in float16 and then NaN in the layer that produced the input.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.float()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        limit = torch.finfo(torch.float16).max
        return grad.clamp(-limit, limit).to(torch.float16)


def _f32(x: Tensor) -> Tensor:
    """``x`` as a float tensor, upcasting float16/bfloat16 (and integers/bools) to float32."""
    if x.dtype == torch.float16 and x.requires_grad and torch.is_grad_enabled():
        upcast: Tensor = _Float16ToFloat32.apply(x)
        return upcast
    if x.dtype in _LOW_PRECISION or not x.is_floating_point():
        return x.float()
    return x


def as_float_tensor(value: Tensor | list[float] | None) -> Tensor | None:
    """A weight argument as a floating tensor (lists accepted, float dtypes kept), or ``None``."""
    if value is None:
        return None
    tensor = torch.as_tensor(value)
    return tensor if tensor.is_floating_point() else tensor.to(torch.get_default_dtype())


def _compiling() -> bool:
    return bool(torch.compiler.is_compiling())


def _nonzero(denominator: Tensor) -> Tensor:
    """``denominator`` with zeros replaced by one (for "0 / 0 = 0" means)."""
    return torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def reduce_loss(loss: Tensor, reduction: Reduction) -> Tensor:
    """Reduce an element-wise loss; the mean of an empty tensor is 0 (with a gradient)."""
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / max(loss.numel(), 1)


def weighted_reduce(loss: Tensor, weight: Tensor | None, reduction: Reduction) -> Tensor:
    """Reduce ``weight * loss``; the weighted mean is ``sum(w * l) / sum(w)`` (0 if no weight)."""
    if weight is None:
        return reduce_loss(loss, reduction)
    weighted = loss * weight.to(loss.dtype)
    if reduction == "none":
        return weighted
    total = weighted.sum()
    if reduction == "sum":
        return total
    return total / _nonzero(weight.to(loss.dtype).expand_as(loss).sum())


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


def check_inputs(
    pred: Tensor,
    target: Tensor | None = None,
    *,
    kind: Literal["class_indices", "dense", "boxes"] = "class_indices",
    num_classes: int | None = None,
    class_dim: int | None = 1,
    ignore_index: int | None = None,
    extra_labels: int = 0,
    target_range: tuple[float, float] | None = None,
    pred_range: tuple[float, float] | None = None,
    class_weights: Tensor | None = None,
    box_weights: Tensor | None = None,
    name: str = "loss",
) -> tuple[int, int] | None:
    """Validate a prediction/target pair; raise a ``ValueError`` naming the bad value and shapes.

    Returns ``(min, max)`` of class-index targets (``None`` for other kinds, empty targets or
    while compiling), which the segmentation functions accept as ``label_range`` to skip the
    ignore mask without another pass over the targets.

    Args:
        pred: Logits, probabilities or boxes.
        target: The target (``None`` to check only ``pred``).
        kind: ``"class_indices"``: integer labels of ``pred``'s shape without ``class_dim``;
            ``"dense"``: a tensor of ``pred``'s shape; ``"boxes"``: ``[..., 4]`` like ``pred``.
        num_classes: If given, must equal ``pred.shape[class_dim]``.
        class_dim: The class dimension of ``pred`` (``None``: no class dimension).
        ignore_index: A label that is allowed besides the classes (``class_indices`` only).
        extra_labels: Labels ``C .. C + extra_labels - 1`` are valid too (e.g. background).
        target_range: Inclusive bounds the target values must lie in.
        pred_range: Inclusive bounds the prediction values must lie in.
        class_weights: Per-class weights, which must have shape ``[C]``.
        box_weights: Per-box weights, which must have shape ``pred.shape[:-1]``.
        name: The loss name used in messages.

    The checks are skipped while ``torch.compile`` traces (they read tensor values).
    """
    if _compiling():
        return None
    shapes = f"(prediction shape {_shape(pred)}"
    shapes += ")" if target is None else f", target shape {_shape(target)})"
    classes: int | None = None
    if class_dim is not None:
        if pred.ndim == 0 or not -pred.ndim <= class_dim < pred.ndim:
            raise ValueError(f"{name}: the prediction has no class dimension {class_dim} {shapes}")
        classes = pred.shape[class_dim]
        if num_classes is not None and classes != num_classes:
            raise ValueError(
                f"{name}: num_classes={num_classes} but the prediction has {classes} classes "
                f"along dimension {class_dim} {shapes}"
            )
        if class_weights is not None and _shape(class_weights) != (classes,):
            raise ValueError(
                f"{name}: class weights of shape {_shape(class_weights)} do not match the "
                f"{classes} classes of the prediction {shapes}"
            )
    elif num_classes not in (None, 1):
        raise ValueError(
            f"{name}: num_classes={num_classes} but the prediction has no class dimension "
            f"(a single class) {shapes}"
        )
    if pred_range is not None and pred.numel() > 0:
        low, high = (v.item() for v in torch.aminmax(pred.detach()))
        if not (pred_range[0] <= low and high <= pred_range[1]):
            bad = low if not pred_range[0] <= low else high
            raise ValueError(
                f"{name}: prediction value {bad} is outside [{pred_range[0]}, {pred_range[1]}] "
                f"{shapes}"
            )
    if target is None:
        return None
    if kind == "class_indices":
        assert class_dim is not None and classes is not None
        dim = class_dim % pred.ndim
        expected = (*pred.shape[:dim], *pred.shape[dim + 1 :])
        if _shape(target) != expected:
            raise ValueError(
                f"{name}: expected class-index targets of shape {expected} for this prediction "
                f"{shapes}"
            )
        if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(
                f"{name}: class-index targets must be an integer tensor, got {target.dtype} "
                f"{shapes}"
            )
        if target.numel() > 0:
            limit = classes + extra_labels
            low, high = (int(v.item()) for v in torch.aminmax(target))
            if low < 0 or high >= limit:
                invalid = (target < 0) | (target >= limit)
                if ignore_index is not None:
                    invalid &= target != ignore_index
                if bool(invalid.any()):
                    value = int(target[invalid][0].item())
                    allowed = f"a class in [0, {classes})"
                    if extra_labels:
                        allowed = f"a label in [0, {limit}) ({classes} classes + background)"
                    raise ValueError(
                        f"{name}: target label {value} is neither {allowed} nor "
                        f"ignore_index={ignore_index} {shapes}"
                    )
            return low, high
        return None
    if kind == "boxes" and (pred.ndim == 0 or pred.shape[-1] != 4):
        raise ValueError(f"{name}: boxes must have shape [..., 4] (x1, y1, x2, y2) {shapes}")
    if _shape(target) != _shape(pred):
        raise ValueError(f"{name}: the target must have the prediction's shape {shapes}")
    if box_weights is not None and _shape(box_weights) != _shape(pred)[:-1]:
        raise ValueError(
            f"{name}: box weights of shape {_shape(box_weights)} do not match the "
            f"{_shape(pred)[:-1]} boxes {shapes}"
        )
    if target_range is not None and target.numel() > 0:
        low, high = (v.item() for v in torch.aminmax(target.detach().to(torch.float32)))
        if not (target_range[0] <= low and high <= target_range[1]):
            bad = low if not target_range[0] <= low else high
            raise ValueError(
                f"{name}: target value {bad} is outside [{target_range[0]}, {target_range[1]}] "
                f"{shapes}"
            )
    return None


# --------------------------------------------------------------------------- classification
def _class_dim(x: Tensor) -> int:
    return 0 if x.ndim == 1 else 1


def _mean_over_labels(
    total: Tensor,
    target: Tensor,
    weight: Tensor | None,
    ignore_index: int,
    label_range: tuple[int, int] | None,
) -> Tensor:
    """torch's mean for class-index targets: ``sum / sum(weight[target])`` over non-ignored.

    With a known ``label_range`` that excludes ``ignore_index`` and no weights, the count is
    just the number of targets (no pass over them).
    """
    nothing_ignored = label_range is not None and not (
        label_range[0] <= ignore_index <= label_range[1]
    )
    if weight is None and nothing_ignored and target.numel() > 0:
        return total / target.numel()
    valid = target != ignore_index
    if weight is None:
        denominator = valid.sum().to(total.dtype)
    else:
        safe = torch.where(valid, target, torch.zeros_like(target))
        denominator = (weight[safe] * valid).sum()
    return total / _nonzero(denominator)


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``F.cross_entropy``, computed in float32, where a batch with nothing to learn gives 0.

    ``target`` holds class indices, or class probabilities of ``logits``' shape (float).
    ``label_range``: ``(min, max)`` of the indices if known (from :func:`check_inputs`).
    """
    x = _f32(logits)
    w = None if weight is None else weight.to(x.dtype)
    inner: Reduction = "none" if reduction == "none" else "sum"
    if target.is_floating_point():
        loss = F.cross_entropy(
            x, target.to(x.dtype), weight=w, reduction=inner, label_smoothing=label_smoothing
        )
        if reduction == "mean":
            loss = loss / max(x.numel() // max(x.shape[_class_dim(x)], 1), 1)
        return loss
    target = target.long()
    loss = F.cross_entropy(
        x,
        target,
        weight=w,
        ignore_index=ignore_index,
        reduction=inner,
        label_smoothing=label_smoothing,
    )
    if reduction != "mean":
        return loss
    return _mean_over_labels(loss, target, w, ignore_index, label_range)


def nll_loss(
    log_probs: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    ignore_index: int = -100,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``F.nll_loss`` on log-probabilities in float32; an all-ignored batch gives 0.

    ``label_range``: ``(min, max)`` of the indices if known (from :func:`check_inputs`).
    """
    x = _f32(log_probs)
    w = None if weight is None else weight.to(x.dtype)
    inner: Reduction = "none" if reduction == "none" else "sum"
    target = target.long()
    loss = F.nll_loss(x, target, weight=w, ignore_index=ignore_index, reduction=inner)
    if reduction != "mean":
        return loss
    return _mean_over_labels(loss, target, w, ignore_index, label_range)


def binary_cross_entropy_with_logits(
    logits: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    pos_weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``F.binary_cross_entropy_with_logits`` in float32 (integer/bool targets are accepted)."""
    x = _f32(logits)
    loss = F.binary_cross_entropy_with_logits(
        x,
        target.to(x.dtype),
        weight=None if weight is None else weight.to(x.dtype),
        pos_weight=None if pos_weight is None else pos_weight.to(x.dtype),
        reduction="none",
    )
    return reduce_loss(loss, reduction)


def binary_cross_entropy(
    probs: Tensor,
    target: Tensor,
    *,
    weight: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``F.binary_cross_entropy`` on probabilities in float32 (log clamped at -100, as torch)."""
    x = _f32(probs)
    with torch.autocast(device_type=x.device.type, enabled=False):
        loss = F.binary_cross_entropy(
            x,
            target.to(x.dtype),
            weight=None if weight is None else weight.to(x.dtype),
            reduction="none",
        )
    return reduce_loss(loss, reduction)


def mse_loss(pred: Tensor, target: Tensor, *, reduction: Reduction = "mean") -> Tensor:
    """``F.mse_loss`` in float32; the mean of nothing is 0."""
    x = _f32(pred)
    return reduce_loss(F.mse_loss(x, target.to(x.dtype), reduction="none"), reduction)


# --------------------------------------------------------------------------- sigmoid focal
def _focal_reference(
    x: Tensor, t: Tensor, alpha: float | None, gamma: float, weight: Tensor | None
) -> Tensor:
    """Element-wise sigmoid focal loss through autograd (used when compiling, or for soft
    targets that need a gradient). ``1 - p_t`` is clamped at the smallest normal float, which
    keeps the gradient finite for ``gamma < 1`` at saturated logits."""
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    if gamma != 0:
        one_minus_pt = torch.addcmul(t, torch.sigmoid(x), 1 - 2 * t).clamp_min(_TINY)
        loss = loss * one_minus_pt.pow(gamma)
    if alpha is not None:
        loss = loss * ((1 - alpha) + (2 * alpha - 1) * t)
    if weight is not None:
        loss = loss * weight
    return loss


class _SigmoidFocal(torch.autograd.Function):
    """Sigmoid focal loss with an analytic gradient computed in the forward pass.

    Upstream gradients of a summed or element-wise loss only ever scale ``dl/dx`` element-wise,
    so the forward pass computes ``dl/dx`` right away from the few temporaries it already has
    and saves only that one tensor; the backward pass is one multiplication. This needs about
    half the memory traffic of composing the loss from autograd-tracked ops.

    With ``s = sigmoid(x)``, ``u = 1 - 2t``, ``q = 1 - p_t = t + s*u``, ``ce = BCE(x, t)``,
    ``a_t = (1 - alpha) + (2 alpha - 1) t`` and ``m = q^gamma``, the loss is ``a_t m ce`` and

        dl/dx = a_t m [(s - t) + gamma u ce s (1 - s) / q].
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        t: Tensor,
        weight: Tensor | None,
        alpha: float | None,
        gamma: float,
        summed: bool,
        need_grad: bool,
    ) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            s = torch.sigmoid(x)
            u = torch.add(torch.ones((), dtype=x.dtype, device=x.device), t, alpha=-2.0)
            factor: Tensor | None = None
            q: Tensor | None = None
            if gamma != 0:
                q = torch.addcmul(t, s, u).clamp_min_(_TINY)
                factor = q.square() if gamma == 2 else q.pow(gamma)
            if alpha is not None:
                half = torch.full((), 0.5, dtype=x.dtype, device=x.device)
                alpha_t = torch.add(half, u, alpha=0.5 - alpha)
                factor = alpha_t if factor is None else factor.mul_(alpha_t)
                del alpha_t
            if weight is not None:
                factor = weight.expand_as(x) if factor is None else factor.mul_(weight)
            ce = F.softplus(x).addcmul_(t, x, value=-1.0)
            if summed:
                flat = ce.reshape(-1)
                loss = flat.sum() if factor is None else torch.dot(factor.reshape(-1), flat)
            else:
                loss = ce if factor is None else ce * factor
            if need_grad:
                if q is not None:
                    # gamma * u * ce * s (1 - s) / q, folded into (s - t) below
                    modulating = torch.addcmul(s, s, s, value=-1.0).div_(q).mul_(ce)
                    grad = s.sub_(t).addcmul_(modulating, u, value=gamma)
                    del modulating
                else:
                    grad = s.sub_(t)
                if factor is not None:
                    grad = grad.mul_(factor)
                ctx.save_for_backward(grad)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_output, None, None, None, None, None, None


def sigmoid_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Sigmoid focal loss (RetinaNet) on targets of ``logits``' shape, as torchvision's
    ``sigmoid_focal_loss`` (``alpha=None`` disables the class balance, like torchvision's -1).

    Args:
        logits: Logits of any shape.
        target: Binary (or soft) targets of the same shape.
        alpha: Weight of positives in [0, 1]; negatives get ``1 - alpha``.
        gamma: Focusing exponent (>= 0).
        reduction: ``"mean"`` over all elements, ``"sum"`` or ``"none"``.
        weight: Optional non-negative multiplier broadcastable to ``logits`` (no gradient).
    """
    x = _f32(logits).contiguous()
    t = target.to(x.dtype).contiguous()
    w = None if weight is None else weight.to(x.dtype)
    if _compiling() or t.requires_grad or (w is not None and w.requires_grad):
        loss = _focal_reference(x, t, alpha, gamma, w)
        return reduce_loss(loss, reduction)
    need_grad = torch.is_grad_enabled() and x.requires_grad
    summed = reduction != "none"
    out: Tensor = _SigmoidFocal.apply(x, t, w, alpha, gamma, summed, need_grad)
    if reduction == "mean":
        out = out / max(x.numel(), 1)
    return out


def sigmoid_focal_loss_with_indices(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    ignore_index: int = -1,
    reduction: Reduction = "mean",
) -> Tensor:
    """Sigmoid focal loss with integer targets: ``logits [..., C]``, ``target [...]``.

    Labels ``0 .. C-1`` are classes, ``C`` is background (an all-zero target row) and
    ``ignore_index`` rows are left out; ``"mean"`` averages over the elements of the kept rows.
    """
    classes = logits.shape[-1]
    valid = target != ignore_index
    one_hot = target.unsqueeze(-1) == torch.arange(classes, device=target.device)
    row_weight = valid.unsqueeze(-1).to(torch.float32)
    inner: Reduction = "none" if reduction == "none" else "sum"
    loss = sigmoid_focal_loss(
        logits, one_hot, alpha=alpha, gamma=gamma, reduction=inner, weight=row_weight
    )
    if reduction == "mean":
        loss = loss / (valid.sum() * classes).clamp_min(1).to(loss.dtype)
    return loss


# --------------------------------------------------------------------------- boxes
def box_iou_loss(
    pred: Tensor, target: Tensor, *, kind: BoxLossKind = "giou", eps: float = 1e-7
) -> Tensor:
    """Element-wise GIoU / DIoU / CIoU loss of ``[..., 4]`` boxes (x1, y1, x2, y2).

    Same values as torchvision's ``generalized_box_iou_loss``, ``distance_box_iou_loss`` and
    ``complete_box_iou_loss``; degenerate boxes (zero width or height, points) give finite
    values and gradients (the CIoU aspect term divides by ``max(|h|, eps)``).
    """
    p = _f32(pred)
    g = target.to(p.dtype)
    x1, y1, x2, y2 = p.unbind(-1)
    gx1, gy1, gx2, gy2 = g.unbind(-1)
    # relu (not clamp) saves its output, which the product below saves anyway: fewer tensors
    # kept for backward; and like torchvision's mask it passes no gradient at exactly 0.
    inter = F.relu(torch.minimum(x2, gx2) - torch.maximum(x1, gx1)) * F.relu(
        torch.minimum(y2, gy2) - torch.maximum(y1, gy1)
    )
    w, h = x2 - x1, y2 - y1
    union = w * h + (gx2 - gx1) * (gy2 - gy1) - inter + eps  # with eps
    iou = inter / union
    enclosing_w = torch.maximum(x2, gx2) - torch.minimum(x1, gx1)
    enclosing_h = torch.maximum(y2, gy2) - torch.minimum(y1, gy1)
    if kind == "giou":
        # 1 - iou + (area - union) / (area + eps), written so that autograd keeps one tensor less
        area = enclosing_w * enclosing_h + eps
        return 2 - iou - union / area
    diagonal = enclosing_w.square() + enclosing_h.square() + eps
    centers = ((x1 + x2 - gx1 - gx2) / 2).square() + ((y1 + y2 - gy1 - gy2) / 2).square()
    loss = 1 - iou + centers / diagonal
    if kind == "diou":
        return loss
    gw, gh = gx2 - gx1, gy2 - gy1
    with torch.no_grad():
        target_angle = torch.atan(gw / _away_from_zero(gh, eps))
    angle: Tensor = _AspectAngle.apply(w, h, eps)
    aspect = target_angle - angle
    v = (4 / math.pi**2) * aspect.square()
    with torch.no_grad():
        trade_off = v / (1 - iou + v + eps)
    return loss + trade_off * v


def _away_from_zero(x: Tensor, eps: float) -> Tensor:
    """``x`` with entries of magnitude below ``eps`` replaced by ``eps``."""
    return torch.where(x.abs() < eps, torch.full_like(x, eps), x)


class _AspectAngle(torch.autograd.Function):
    """``atan(w / h)`` with ``|h| < eps`` taken as ``eps`` (no gradient to such ``h``).

    Saves only ``w`` and ``h``, which the box loss keeps alive anyway, instead of autograd's
    ratio and clamped height; the backward recomputes ``h / (w^2 + h^2)`` and ``-w / (...)``.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, h: Tensor, eps: float) -> Tensor:
        ctx.eps = eps
        ctx.save_for_backward(w, h)
        return torch.atan(w / _away_from_zero(h, eps))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        w, h = ctx.saved_tensors
        replaced = h.abs() < ctx.eps
        safe_h = torch.where(replaced, torch.full_like(h, ctx.eps), h)
        scale = grad / (w.square() + safe_h.square())
        grad_h = torch.where(replaced, torch.zeros_like(h), -w * scale)
        return safe_h * scale, grad_h, None


# --------------------------------------------------------------------------- segmentation
def _flatten_segmentation(
    logits: Tensor, target: Tensor, ignore_index: int, label_range: tuple[int, int] | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """``logits [B, C, *]`` -> ``[B, C, N]`` float, targets -> ``[B, N]`` with ignored set to
    class 0, and the float validity mask ``[B, N]`` (``None`` when nothing is ignored, which is
    only decided outside ``torch.compile``)."""
    x = _f32(logits)
    batch, classes = x.shape[0], x.shape[1]
    pixels = math.prod(x.shape[2:])
    x = x.reshape(batch, classes, pixels)
    t = target.reshape(batch, pixels).long()
    if not _compiling():  # one cheap pass decides whether any pixel can be ignored
        if t.numel() == 0:
            return x, t, None
        low, high = label_range or tuple(int(v) for v in torch.aminmax(t))
        if not low <= ignore_index <= high:
            return x, t, None
    valid = t != ignore_index
    t = torch.where(valid, t, torch.zeros_like(t))
    return x, t, valid.to(x.dtype)


class _SoftmaxCounts(torch.autograd.Function):
    """``(sum_n p g, sum_n p)`` per (sample, class) for ``p = softmax(x, 1)``, ``g`` one-hot.

    Saves only ``p`` (zeroed at ignored pixels) and the target; the backward pass computes the
    softmax-composed gradient directly, without a one-hot tensor or autograd's zero-filled
    gather gradient:

        dx = p * (A + [t = c] B - S),  S[b, n] = sum_c p[b, c, n] A[b, c] + p[b, t_n, n] B[b, t_n]

    where ``A`` and ``B`` are the upstream gradients of the two sums.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, t: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
        with torch.autocast(device_type=x.device.type, enabled=False):
            p = x.softmax(1)
            if valid is not None:
                p.mul_(valid.unsqueeze(1))
            index = t.unsqueeze(1)
            at_target = p.gather(1, index)  # [B, 1, N]
            intersection = torch.zeros(p.shape[:2], dtype=p.dtype, device=p.device)
            intersection.scatter_add_(1, index.squeeze(1), at_target.squeeze(1))
            predicted = p.sum(-1)
        ctx.save_for_backward(p, index, at_target)
        return intersection, predicted

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, grad_intersection: Tensor, grad_predicted: Tensor
    ) -> tuple[Tensor | None, None, None]:
        p, index, at_target = ctx.saved_tensors
        with torch.autocast(device_type=p.device.type, enabled=False):
            a = grad_predicted.to(p.dtype)  # [B, C]
            b_at_target = grad_intersection.to(p.dtype).gather(1, index.squeeze(1)).unsqueeze(1)
            s = torch.bmm(a.unsqueeze(1), p).addcmul_(at_target, b_at_target)  # [B, 1, N]
            grad = torch.sub(a.unsqueeze(-1), s)  # [B, C, N]
            grad.scatter_add_(1, index, b_at_target)
            grad.mul_(p)
        return grad, None, None


def segmentation_counts(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = 255,
    label_range: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft per-(sample, class) sums over non-ignored pixels, each ``[B, C]``.

    Returns ``(intersection, predicted, target)``: ``sum(p * g)``, ``sum(p)`` and ``sum(g)``
    with ``p = softmax(logits, 1)`` and ``g`` the one-hot target, without building the one-hot
    tensor (a gather and a scatter-add of ``[B, N]`` values, and an analytic backward).
    """
    x, t, valid = _flatten_segmentation(logits, target, ignore_index, label_range)
    batch, classes = x.shape[0], x.shape[1]
    intersection, predicted = _SoftmaxCounts.apply(x, t, valid)
    ones = torch.ones((), dtype=x.dtype, device=x.device).expand(t.shape)
    target_sum = torch.zeros(batch, classes, dtype=x.dtype, device=x.device)
    target_sum.scatter_add_(1, t, ones if valid is None else valid)
    return intersection, predicted, target_sum


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    """``numerator / denominator``, 1 where the denominator is 0 (nothing to get wrong)."""
    return torch.where(
        denominator > 0, numerator / _nonzero(denominator), torch.ones_like(denominator)
    )


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Soft dice ``1 - (2 I + s) / (P + G + s)`` per (sample, class); ``"none"`` -> ``[B, C]``."""
    inter, predicted, target_sum = segmentation_counts(
        logits, target, ignore_index=ignore_index, label_range=label_range
    )
    loss = 1 - _ratio(2 * inter + smooth, predicted + target_sum + smooth)
    return reduce_loss(loss, reduction)


def tversky_loss(
    logits: Tensor,
    target: Tensor,
    *,
    alpha: float = 0.5,
    beta: float = 0.5,
    smooth: float = 1.0,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """``1 - (TP + s) / (TP + alpha FP + beta FN + s)`` per (sample, class) (MONAI's alpha/beta)."""
    tp, predicted, target_sum = segmentation_counts(
        logits, target, ignore_index=ignore_index, label_range=label_range
    )
    fp = predicted - tp
    fn = target_sum - tp
    loss = 1 - _ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)
    return reduce_loss(loss, reduction)


def jaccard_loss(
    logits: Tensor,
    target: Tensor,
    *,
    smooth: float = 1.0,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Soft Jaccard ``1 - (I + s) / (P + G - I + s)`` per (sample, class)."""
    inter, predicted, target_sum = segmentation_counts(
        logits, target, ignore_index=ignore_index, label_range=label_range
    )
    loss = 1 - _ratio(inter + smooth, predicted + target_sum - inter + smooth)
    return reduce_loss(loss, reduction)


def lovasz_softmax_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = 255,
    per_image: bool = False,
    reduction: Reduction = "mean",
    label_range: tuple[int, int] | None = None,
) -> Tensor:
    """Lovász-softmax over the classes present in the target (Berman et al. 2018).

    As segmentation_models_pytorch's ``LovaszLoss(mode="multiclass")``: with
    ``per_image=False`` one loss for the whole batch (a 0-dim tensor for every reduction);
    with ``per_image=True`` one loss per image (``"none"`` -> ``[B]``, ``"mean"`` averages).
    All classes are handled at once: errors ``[B', C, N]`` are sorted along the pixels.
    """
    x, t, valid = _flatten_segmentation(logits, target, ignore_index, label_range)
    classes = x.shape[1]
    p = x.softmax(1)
    fg = t.unsqueeze(1) == torch.arange(classes, device=x.device).view(1, classes, 1)
    if valid is not None:
        fg &= valid.unsqueeze(1).bool()
    # |fg - p| without keeping a float copy for backward; ignored pixels get error 0, so they
    # sort last and contribute nothing
    errors = torch.where(fg, 1 - p, p if valid is None else p * valid.unsqueeze(1))
    if not per_image:
        errors = errors.transpose(0, 1).reshape(1, classes, -1)
        fg = fg.transpose(0, 1).reshape(1, classes, -1)
    if errors.shape[-1] == 0:  # no pixels at all
        empty = errors.sum((1, 2))
        return empty.reshape(()) if not per_image else reduce_loss(empty, reduction)
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    del errors
    with torch.no_grad():  # the Lovász weights: increments of the Jaccard loss along the order
        seen_fg = fg.gather(-1, order).to(x.dtype).cumsum_(-1)
        del fg, order
        total = seen_fg[..., -1:].clone()
        position = torch.arange(1, seen_fg.shape[-1] + 1, dtype=x.dtype, device=x.device)
        # jaccard = 1 - (total - seen_fg) / union, union = total + (position - seen_fg)
        union = torch.sub(position, seen_fg).add_(total)
        jaccard = seen_fg.sub_(total).div_(union).add_(1)
        weights = union  # reuse the buffer: weights[i] = jaccard[i] - jaccard[i - 1]
        weights[..., :1] = jaccard[..., :1]
        torch.sub(jaccard[..., 1:], jaccard[..., :-1], out=weights[..., 1:])
        del jaccard, seen_fg
    per_class = (errors_sorted * weights).sum(-1)  # [B', C]
    present = (total.squeeze(-1) > 0).to(x.dtype)
    per_item = (per_class * present).sum(-1) / present.sum(-1).clamp_min(1)  # [B']
    if not per_image:
        return per_item.reshape(())
    return reduce_loss(per_item, reduction)


def softmax_focal_loss(
    logits: Tensor,
    target: Tensor,
    *,
    gamma: float = 2.0,
    alpha: float | Tensor | None = None,
    ignore_index: int = 255,
    reduction: Reduction = "mean",
) -> Tensor:
    """Softmax focal loss ``-w_c (1 - p_t)^gamma log p_t``, averaged over non-ignored pixels.

    ``alpha``: a float scales the loss, a ``[C]`` tensor weights the classes. With
    ``gamma=0`` and no ``alpha`` this is ``F.cross_entropy(..., ignore_index=...)``.
    ``"none"`` returns the per-pixel loss (0 at ignored pixels).
    """
    x = _f32(logits)
    log_p = x.log_softmax(1)
    t = target.long()
    valid = t != ignore_index
    safe = torch.where(valid, t, torch.zeros_like(t))
    log_pt = log_p.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = -log_pt
    if gamma != 0:
        loss = loss * (-torch.expm1(log_pt)).clamp_min(_TINY).pow(gamma)
    if isinstance(alpha, Tensor):
        loss = loss * alpha.to(x.dtype)[safe]
    elif alpha is not None:
        loss = loss * alpha
    loss = torch.where(valid, loss, torch.zeros_like(loss))
    if reduction == "none":
        return loss
    total = loss.sum()
    if reduction == "sum":
        return total
    return total / valid.sum().clamp_min(1).to(total.dtype)

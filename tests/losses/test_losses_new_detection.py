"""The detection losses of issue 12 against their references, in float64, values and
gradients: ``l1`` and ``smooth_l1`` against torch, ``iou`` against ``torchvision.ops.box_iou``,
and ``quality_focal``, ``varifocal`` and ``distribution_focal`` against mmdet's formulas
(Li et al. 2020, GFL; Zhang et al. 2021, VarifocalNet), transcribed here since mmdet is not a
dependency."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st

from autotimm.losses import (
    DistributionFocalLoss,
    FCOSLoss,
    FocalLoss,
    IoULoss,
    L1Loss,
    LossConfigError,
    QualityFocalLoss,
    SmoothL1Loss,
    VarifocalLoss,
    get_entry,
    get_loss,
)

SETTINGS = settings(max_examples=30, deadline=None)
D = torch.float64
reductions = st.sampled_from(["mean", "sum", "none"])


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-10, rtol: float = 1e-8) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    torch.testing.assert_close(ours.to(D), ref.to(D), atol=atol, rtol=rtol)


def _value_and_grads(
    loss_fn: Callable[..., torch.Tensor], *inputs: torch.Tensor, wrt: int = 1
) -> tuple[torch.Tensor, ...]:
    """The loss and its gradients with respect to the first ``wrt`` inputs."""
    leaves = [x.clone().requires_grad_() for x in inputs[:wrt]]
    value = loss_fn(*leaves, *inputs[wrt:])
    grads = torch.autograd.grad(value.sum(), leaves)
    return (value.detach(), *grads)


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": loss, "sum": loss.sum()}.get(reduction, loss.mean())


# ------------------------------------------------------------------ mmdet, transcribed
def mmdet_quality_focal(pred: torch.Tensor, target: torch.Tensor, beta: float) -> torch.Tensor:
    """mmdet ``quality_focal_loss_tensor_target`` (``activated=False``), before its sum over
    classes."""
    pred_sigmoid = pred.sigmoid()
    scale_factor = pred_sigmoid
    zerolabel = scale_factor.new_zeros(pred.shape)
    loss = F.binary_cross_entropy_with_logits(pred, zerolabel, reduction="none") * (
        scale_factor.pow(beta)
    )
    pos = target != 0
    scale_factor = target - pred_sigmoid
    loss[pos] = F.binary_cross_entropy_with_logits(
        pred[pos], target[pos], reduction="none"
    ) * scale_factor[pos].abs().pow(beta)
    return loss


def mmdet_varifocal(
    pred: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float, iou_weighted: bool
) -> torch.Tensor:
    """mmdet ``varifocal_loss``, element-wise (no weight, no avg_factor)."""
    pred_sigmoid = pred.sigmoid()
    target = target.type_as(pred)
    positive = (target > 0.0).to(pred.dtype)
    negative = (target <= 0.0).to(pred.dtype)
    focusing = alpha * (pred_sigmoid - target).abs().pow(gamma) * negative
    focal_weight = (target * positive if iou_weighted else positive) + focusing
    return F.binary_cross_entropy_with_logits(pred, target, reduction="none") * focal_weight


def mmdet_distribution_focal(pred: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """mmdet ``distribution_focal_loss``: ``pred [M, n + 1]``, ``label [M]`` below ``n``."""
    dis_left = label.long()
    dis_right = dis_left + 1
    weight_left = dis_right.to(label.dtype) - label
    weight_right = label - dis_left.to(label.dtype)
    return (
        F.cross_entropy(pred, dis_left, reduction="none") * weight_left
        + F.cross_entropy(pred, dis_right, reduction="none") * weight_right
    )


# ------------------------------------------------------------------ quality focal
@st.composite
def score_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` and IoU-quality targets: a score in (0, 1] at some classes, else 0
    (or all 0/1)."""
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(n, c, generator=generator, dtype=D) * draw(st.sampled_from([0.5, 3.0]))
    positive = torch.rand(n, c, generator=generator) > 0.6
    scores = torch.rand(n, c, generator=generator, dtype=D)
    if draw(st.booleans()):
        scores = torch.ones_like(scores)  # hard targets: the focal loss's binary path
    return logits, torch.where(positive, scores, 0.0)


@SETTINGS
@given(
    problem=score_problem(),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.0, 2.5, 3.0]),
    reduction=reductions,
)
def test_quality_focal_equals_mmdet(
    problem: tuple[torch.Tensor, torch.Tensor], beta: float, reduction: str
) -> None:
    logits, target = problem
    value, grad = _value_and_grads(QualityFocalLoss(beta=beta, reduction=reduction), logits, target)
    ref_value, ref_grad = _value_and_grads(
        lambda x, t: _reduce(mmdet_quality_focal(x, t, beta), reduction), logits, target
    )
    _close(value, ref_value)
    assert torch.isfinite(grad).all()
    finite = torch.isfinite(ref_grad)  # mmdet: |d|^beta at d = 0 has a NaN gradient, beta < 1
    _close(grad[finite], ref_grad[finite])


def test_quality_focal_on_hard_targets_is_focal_without_alpha() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 4, generator=generator) * 8
    target = (torch.rand(20, 4, generator=generator) > 0.7).float()
    for beta in (0.5, 2.0):
        ours = _value_and_grads(QualityFocalLoss(beta=beta, reduction="none"), logits, target)
        focal = _value_and_grads(
            FocalLoss(alpha=None, gamma=beta, reduction="none"), logits, target
        )
        for a, b in zip(ours, focal, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_quality_focal_in_cache_sized_steps(
    reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps of hard targets (focal's binary terms) and of soft ones, made tiny, give mmdet's."""
    import autotimm.losses.functional._chunked as chunked

    monkeypatch.setattr(chunked, "_CHUNK", 6)
    generator = torch.Generator().manual_seed(4)
    logits = torch.randn(30, 3, generator=generator, dtype=D) * 5
    target = (torch.rand(30, 3, generator=generator, dtype=D) > 0.6).to(D)
    target[10:18] *= torch.rand(8, 3, generator=generator, dtype=D)  # soft rows in between
    ours = _value_and_grads(QualityFocalLoss(reduction=reduction), logits, target)
    ref = _value_and_grads(
        lambda x, t: _reduce(mmdet_quality_focal(x, t, 2.0), reduction), logits, target
    )
    for a, b in zip(ours, ref, strict=True):
        _close(a, b)


def test_quality_focal_float32_tails_match_float64() -> None:
    """Targets 0 and 1 keep both tails (the focal kernel's); soft targets stay within 1e-5."""
    x = torch.linspace(-25, 25, 101)
    for target in (torch.zeros(101), torch.ones(101), torch.full((101,), 0.3)):
        ours = _value_and_grads(QualityFocalLoss(reduction="none"), x, target)
        exact = _value_and_grads(
            lambda v, t: mmdet_quality_focal(v, t, 2.0), x.double(), target.double()
        )
        for a, b in zip(ours, exact, strict=True):
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-30)


# ------------------------------------------------------------------ varifocal
@SETTINGS
@given(
    problem=score_problem(),
    alpha=st.sampled_from([0.25, 0.75, 2.0]),
    gamma=st.sampled_from([0.0, 1.0, 2.0, 1.5]),
    iou_weighted=st.booleans(),
    reduction=reductions,
)
def test_varifocal_equals_mmdet(
    problem: tuple[torch.Tensor, torch.Tensor],
    alpha: float,
    gamma: float,
    iou_weighted: bool,
    reduction: str,
) -> None:
    logits, target = problem
    ours = VarifocalLoss(alpha=alpha, gamma=gamma, iou_weighted=iou_weighted, reduction=reduction)
    value, grad = _value_and_grads(ours, logits, target)
    ref_value, ref_grad = _value_and_grads(
        lambda x, t: _reduce(mmdet_varifocal(x, t, alpha, gamma, iou_weighted), reduction),
        logits,
        target,
    )
    _close(value, ref_value)
    _close(grad, ref_grad)


def test_varifocal_law_plain_bce_and_float32_tails() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(8, 5, generator=generator, dtype=D) * 4
    target = torch.where(torch.rand(8, 5, generator=generator) > 0.5, 1.0, 0.0).to(D)
    plain = VarifocalLoss(alpha=1.0, gamma=0.0, iou_weighted=False, reduction="none")
    _close(
        plain(logits, target), F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    )
    x = torch.linspace(-25, 25, 101)  # confident positives and negatives, in float32
    for target in (torch.zeros(101), torch.ones(101), torch.full((101,), 0.6)):
        ours = _value_and_grads(VarifocalLoss(reduction="none"), x, target)
        exact = _value_and_grads(
            lambda v, t: mmdet_varifocal(v, t, 0.75, 2.0, True), x.double(), target.double()
        )
        for a, b in zip(ours, exact, strict=True):
            torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-30)


# ------------------------------------------------------------------ distribution focal
@SETTINGS
@given(
    n=st.integers(1, 5),
    reg_max=st.sampled_from([1, 4, 16]),
    weighted=st.booleans(),
    reduction=reductions,
    seed=st.integers(0, 2**16),
)
def test_distribution_focal_equals_mmdet(
    n: int, reg_max: int, weighted: bool, reduction: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    bins = reg_max + 1
    logits = torch.randn(n, 4 * bins, generator=generator, dtype=D) * 2
    target = torch.rand(n, 4, generator=generator, dtype=D) * (reg_max - 0.01)  # as GFL's head
    weight = torch.rand(n, generator=generator, dtype=D) if weighted else None
    loss = DistributionFocalLoss(reg_max=reg_max, reduction=reduction)
    value, grad = _value_and_grads(lambda x, t: loss(x, t, weight), logits, target)

    def mmdet(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        per_side = mmdet_distribution_focal(x.reshape(-1, bins), t.reshape(-1)).reshape(n, 4)
        if weight is None:
            return _reduce(per_side, reduction)
        weighted_sides = per_side * weight[:, None]
        if reduction == "mean":  # mmdet: weight expanded to the 4 sides, avg_factor 4 sum(w)
            return weighted_sides.sum() / (4 * weight.sum())
        return _reduce(weighted_sides, reduction)

    ref_value, ref_grad = _value_and_grads(mmdet, logits, target)
    _close(value, ref_value)
    _close(grad, ref_grad)


def test_distribution_focal_takes_a_target_at_the_last_bin() -> None:
    """A distance of exactly reg_max is all weight on the last bin (mmdet would index bin
    reg_max + 1, past the end); just below it the loss is continuous."""
    logits = torch.randn(1, 4 * 5, dtype=D)
    loss = DistributionFocalLoss(reg_max=4, reduction="none")
    at_end = loss(logits, torch.full((1, 4), 4.0, dtype=D))
    log_p = logits.reshape(4, 5).log_softmax(-1)
    _close(at_end[0], -log_p[:, 4])
    just_below = loss(logits, torch.full((1, 4), 4.0 - 1e-9, dtype=D))
    _close(just_below, at_end, atol=1e-7)
    with pytest.raises(IndexError):  # what the transcribed mmdet formula does there
        mmdet_distribution_focal(logits.reshape(4, 5), torch.full((4,), 4.0, dtype=D))


def test_distribution_focal_errors() -> None:
    loss = DistributionFocalLoss(reg_max=4)
    with pytest.raises(ValueError, match=r"last dimension must be 4 \* \(reg_max \+ 1\) = 20"):
        loss(torch.zeros(2, 16), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"expected distance targets of shape \(2, 4\)"):
        loss(torch.zeros(2, 20), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"target distance 4.5 is outside \[0, 4\]"):
        loss(torch.zeros(2, 20), torch.tensor([[0.0, 1.0, 4.5, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"target distance nan is outside"):
        loss(torch.zeros(1, 20), torch.tensor([[0.0, float("nan"), 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"target distance -1.0 is outside"):
        loss(torch.zeros(1, 20), torch.tensor([[0.0, -1.0, 1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"box weights of shape \(3,\)"):
        loss(torch.zeros(2, 20), torch.zeros(2, 4), torch.ones(3))
    with pytest.raises(LossConfigError, match="reg_max"):
        get_loss("distribution_focal", reg_max=0)


# ------------------------------------------------------------------ box regression
def _boxes(n: int, generator: torch.Generator) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=generator, dtype=D) * 10
    wh = torch.rand(n, 2, generator=generator, dtype=D) * 5 + 0.5
    return torch.cat([xy, xy + wh], 1)


TORCH_REGRESSION = {
    "l1": lambda p, t, reduction, beta: F.l1_loss(p, t, reduction=reduction),
    "smooth_l1": lambda p, t, reduction, beta: F.smooth_l1_loss(
        p, t, beta=beta, reduction=reduction
    ),
}


@pytest.mark.parametrize("name", sorted(TORCH_REGRESSION))
@SETTINGS
@given(
    n=st.integers(0, 6),
    beta=st.sampled_from([0.0, 0.5, 1.0, 3.0]),
    weighted=st.booleans(),
    reduction=reductions,
    seed=st.integers(0, 2**16),
)
def test_l1_and_smooth_l1_equal_torch(
    name: str, n: int, beta: float, weighted: bool, reduction: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    pred, target = _boxes(n, generator), _boxes(n, generator)
    weight = torch.rand(n, generator=generator, dtype=D) if weighted else None
    ours = (
        L1Loss(reduction=reduction)
        if name == "l1"
        else SmoothL1Loss(beta=beta, reduction=reduction)
    )
    torch_loss = TORCH_REGRESSION[name]
    value, *grads = _value_and_grads(lambda p, t: ours(p, t, weight), pred, target, wrt=2)
    if n == 0 and reduction == "mean":  # torch's mean of nothing is NaN; ours is 0
        assert value.item() == 0.0
        return

    def reference(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if weight is None:
            return torch_loss(p, t, reduction, beta)
        per_coordinate = torch_loss(p, t, "none", beta) * weight[:, None]
        if reduction == "mean":
            return per_coordinate.sum() / (4 * weight.sum())
        return _reduce(per_coordinate, reduction)

    expected = _value_and_grads(reference, pred, target, wrt=2)
    for a, b in zip((value, *grads), expected, strict=True):
        _close(a, b)


@SETTINGS
@given(
    n=st.integers(1, 6),
    mode=st.sampled_from(["linear", "log"]),
    weighted=st.booleans(),
    reduction=reductions,
    seed=st.integers(0, 2**16),
)
def test_iou_equals_torchvision_box_iou(
    n: int, mode: str, weighted: bool, reduction: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    target = _boxes(n, generator)
    shift = (torch.randn(n, 4, generator=generator, dtype=D) * 0.2).clamp(-0.25, 0.25)
    pred = target + shift  # overlapping pairs: every side is at least 0.5 long
    weight = torch.rand(n, generator=generator, dtype=D) + 0.1 if weighted else None
    loss = IoULoss(mode=mode, eps=1e-14, reduction=reduction)
    value, *grads = _value_and_grads(lambda p, t: loss(p, t, weight), pred, target, wrt=2)

    def torchvision(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        iou = tv.box_iou(p, t).diagonal()
        per_box = 1 - iou if mode == "linear" else -torch.log(iou)
        if weight is None:
            return _reduce(per_box, reduction)
        if reduction == "mean":
            return (per_box * weight).sum() / weight.sum()
        return _reduce(per_box * weight, reduction)

    expected = _value_and_grads(torchvision, pred, target, wrt=2)
    for a, b in zip((value, *grads), expected, strict=True):
        _close(a, b, atol=1e-9, rtol=1e-7)


def test_iou_disjoint_and_degenerate_boxes_are_finite() -> None:
    pred = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([[5.0, 5.0, 6.0, 6.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 1.0, 3.0]])
    for mode, disjoint in (("linear", 1.0), ("log", -torch.log(torch.tensor(1e-7)).item())):
        value, *grads = _value_and_grads(IoULoss(mode=mode, reduction="none"), pred, target, wrt=2)
        assert value[0].item() == pytest.approx(disjoint, rel=1e-6)
        assert all(torch.isfinite(g).all() for g in grads)
        assert (grads[0][0] == 0).all()  # disjoint boxes: no gradient (use GIoU for that)
    with pytest.raises(LossConfigError, match="mode"):
        get_loss("iou", mode="square")


def test_box_losses_check_their_boxes() -> None:
    for name in ("l1", "smooth_l1", "iou"):
        with pytest.raises(ValueError, match=rf"{name}: boxes must have shape \[\.\.\., 4\]"):
            get_loss(name)(torch.zeros(3, 5), torch.zeros(3, 5))
        with pytest.raises(ValueError, match=rf"{name}: box weights of shape \(2,\)"):
            get_loss(name)(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(2))


# ------------------------------------------------------------------ in the FCOS criterion
def test_new_losses_are_fcos_components() -> None:
    """quality_focal and varifocal take FCOS's one-hot targets; l1, smooth_l1 and iou its
    foreground boxes (each built with reduction='sum')."""
    generator = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(6, 3, generator=generator)
    boxes = _boxes(6, generator).float()
    box_pred = boxes + torch.rand(6, 4, generator=generator) * 0.2
    centerness = torch.randn(6, generator=generator)
    labels = torch.tensor([0, 1, 3, 2, -1, 3])
    centerness_targets = torch.rand(6, generator=generator)
    foreground = (labels >= 0) & (labels < 3)
    valid = labels >= 0
    one_hot = F.one_hot(labels.clamp(0, 3), 4)[:, :3].float()
    for cls_name in ("quality_focal", "varifocal"):
        for reg_name in ("l1", "smooth_l1", "iou"):
            fcos = FCOSLoss(cls_loss=cls_name, reg_loss=reg_name, num_classes=3)
            total = fcos(cls_logits, box_pred, centerness, labels, boxes, centerness_targets)
            n = foreground.sum()
            cls_term = get_loss(cls_name, reduction="sum")(cls_logits[valid], one_hot[valid]) / n
            reg_term = (
                get_loss(reg_name, reduction="sum")(box_pred[foreground], boxes[foreground]) / n
            )
            torch.testing.assert_close(fcos.last_components["cls"], cls_term)
            torch.testing.assert_close(fcos.last_components["reg"], reg_term)
            assert torch.isfinite(total)


# ------------------------------------------------------------------ the registry entries
def test_new_detection_losses_are_registered_with_their_metadata() -> None:
    expected = {
        "l1": ("boxes", L1Loss),
        "smooth_l1": ("boxes", SmoothL1Loss),
        "iou": ("boxes", IoULoss),
        "quality_focal": ("dense", QualityFocalLoss),
        "varifocal": ("dense", VarifocalLoss),
        "distribution_focal": ("structured", DistributionFocalLoss),
    }
    for name, (target, cls) in expected.items():
        entry = get_entry(name)
        assert entry.loss_class is cls and entry.tasks == ("detection",)
        assert entry.expects == "logits" and entry.target == target, name


@SETTINGS
@given(problem=score_problem(), beta=st.floats(0, 4), gamma=st.floats(0, 4))
def test_quality_and_varifocal_law_at_most_binary_cross_entropy(
    problem: tuple[torch.Tensor, torch.Tensor], beta: float, gamma: float
) -> None:
    """|y - sigmoid(x)|^beta <= 1, and VFL weights are at most 1 (alpha <= 1): both losses
    are at most the binary cross entropy of each element, and non-negative."""
    logits, target = problem
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    quality = QualityFocalLoss(beta=beta, reduction="none")(logits, target)
    varifocal = VarifocalLoss(alpha=0.75, gamma=gamma, reduction="none")(logits, target)
    for loss in (quality, varifocal):
        assert (loss >= 0).all() and (loss <= bce * (1 + 1e-12) + 1e-12).all()


@SETTINGS
@given(n=st.integers(1, 5), seed=st.integers(0, 2**16), shift=st.floats(-50, 50))
def test_iou_law_bounded_symmetric_and_translation_invariant(
    n: int, seed: int, shift: float
) -> None:
    generator = torch.Generator().manual_seed(seed)
    a, b = _boxes(n, generator), _boxes(n, generator)
    loss = IoULoss(reduction="none", eps=1e-12)
    value = loss(a, b)
    assert ((value >= 0) & (value <= 1)).all()
    _close(loss(b, a), value)
    _close(loss(a + shift, b + shift), value, atol=1e-9, rtol=1e-6)

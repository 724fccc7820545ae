"""Detection losses against torchvision.ops and textbook formulas (float64 values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops as tv
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autotimm.losses import (
    CenternessLoss,
    CIoULoss,
    DIoULoss,
    FCOSLoss,
    FocalLoss,
    GIoULoss,
    LossConfigError,
    get_entry,
    get_loss,
)

SETTINGS = settings(max_examples=30, deadline=None)
D = torch.float64
reductions = st.sampled_from(["mean", "sum", "none"])


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-10) -> None:
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours.to(D), ref.to(D), atol=atol, rtol=1e-7)


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return grad


def _textbook_focal(
    x: torch.Tensor, t: torch.Tensor, alpha: float | None, gamma: float
) -> torch.Tensor:
    """-alpha_t (1 - p_t)^gamma log p_t, written out for binary or soft targets."""
    p = torch.sigmoid(x)
    log_p, log_not_p = F.logsigmoid(x), F.logsigmoid(-x)
    ce = -(t * log_p + (1 - t) * log_not_p)
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss


# ------------------------------------------------------------------ focal
@st.composite
def focal_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=3))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(shape, generator=generator, dtype=D) * draw(st.sampled_from([0.5, 3.0]))
    target = torch.rand(shape, generator=generator, dtype=D)
    if draw(st.booleans()):
        target = (target > 0.7).to(D)
    return logits, target


@SETTINGS
@given(
    problem=focal_problem(),
    alpha=st.one_of(st.none(), st.floats(0, 1)),
    gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7]),
    reduction=reductions,
)
def test_focal_equals_torchvision_and_textbook(
    problem: tuple[torch.Tensor, torch.Tensor], alpha: float | None, gamma: float, reduction: str
) -> None:
    logits, target = problem
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = FocalLoss(alpha=alpha, gamma=gamma, reduction=reduction)(x1, target)
    ref = tv.sigmoid_focal_loss(
        x2, target, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction
    )
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))
    textbook = _textbook_focal(logits, target, alpha, gamma)
    expected = {"none": textbook, "sum": textbook.sum(), "mean": textbook.mean()}[reduction]
    _close(ours, expected, atol=1e-9)


@SETTINGS
@given(
    n=st.integers(1, 8),
    c=st.integers(1, 5),
    seed=st.integers(0, 2**16),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    reduction=reductions,
)
def test_focal_integer_targets_are_one_hot_with_background_and_ignore(
    n: int, c: int, seed: int, gamma: float, reduction: str
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=generator, dtype=D) * 2
    labels = torch.randint(-1, c + 1, (n,), generator=generator)  # -1 ignored, c background
    keep = labels >= 0
    dense = F.one_hot(labels.clamp(0, c), c + 1)[:, :c].to(D)
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = FocalLoss(gamma=gamma, reduction=reduction, num_classes=c)(x1, labels)
    per_element = tv.sigmoid_focal_loss(x2, dense, gamma=gamma) * keep.unsqueeze(1)
    if reduction == "none":
        ref = per_element
    elif reduction == "sum":
        ref = per_element.sum()
    else:
        ref = per_element.sum() / max(int(keep.sum()) * c, 1)
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))


def test_focal_elementwise_gradient_with_non_uniform_upstream() -> None:
    logits = torch.randn(6, 4, dtype=D, requires_grad=True)
    target = (torch.rand(6, 4, dtype=D) > 0.6).to(D)
    upstream = torch.randn(6, 4, dtype=D)
    ours = (FocalLoss(reduction="none", gamma=1.5)(logits, target) * upstream).sum()
    ref = (tv.sigmoid_focal_loss(logits, target, gamma=1.5) * upstream).sum()
    _close(_grad(ours, logits), _grad(ref, logits))
    assert torch.autograd.gradcheck(
        lambda x: FocalLoss(reduction="none", gamma=0.7, alpha=0.4)(x, target), (logits,)
    )


def test_focal_soft_targets_with_gradient_use_autograd() -> None:
    logits = torch.randn(5, 3, dtype=D, requires_grad=True)
    target = torch.rand(5, 3, dtype=D, requires_grad=True)
    ours = FocalLoss()(logits, target)
    ref = tv.sigmoid_focal_loss(logits, target, reduction="mean")
    _close(ours, ref)
    for ours_grad, ref_grad in zip(
        torch.autograd.grad(ours, (logits, target)), torch.autograd.grad(ref, (logits, target))
    ):
        _close(ours_grad, ref_grad)


@pytest.mark.parametrize("gamma", [0.0, 0.1, 0.5, 0.99, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gradients_finite_at_saturated_logits(gamma: float, dtype: torch.dtype) -> None:
    logits = torch.tensor([[1e4, -1e4, 30.0, -30.0, 0.0]], dtype=dtype)
    logits = logits.repeat(2, 1).requires_grad_()
    target = torch.tensor([[1.0] * 5, [0.0] * 5], dtype=dtype)
    for reduction in ("mean", "sum", "none"):
        loss = FocalLoss(gamma=gamma, reduction=reduction)(logits, target)
        assert torch.isfinite(loss).all()
        grad = _grad(loss, logits)
        assert torch.isfinite(grad).all()
    # a confident wrong prediction has the largest loss, a confident right one ~0
    per = FocalLoss(gamma=gamma, alpha=None, reduction="none")(logits.detach(), target)
    assert per[0, 0] < 1e-6 and per[0, 1] > 1e3


def test_focal_no_grad_and_double_use() -> None:
    logits = torch.randn(4, 3, requires_grad=True)
    target = (torch.rand(4, 3) > 0.5).float()
    with torch.no_grad():
        value = FocalLoss()(logits, target)
    assert value.grad_fn is None
    loss = FocalLoss()(logits, target)
    (2 * loss + loss).backward()
    expected = torch.autograd.grad(
        3 * tv.sigmoid_focal_loss(logits, target, reduction="mean"), logits
    )
    torch.testing.assert_close(logits.grad, expected[0])


TAIL_LOGITS = torch.linspace(-30, 30, 601)  # float32, steps of 0.1, 0 included
TAIL_TARGETS = [0.0, 1.0, 0.01, 0.1, 0.3, 0.5, 0.9, 0.99]
NORMAL = torch.finfo(torch.float32).tiny  # below this, float32 keeps no relative precision


def _float64_focal(
    x: torch.Tensor, t: torch.Tensor, alpha: float | None, gamma: float
) -> torch.Tensor:
    """The focal loss in float64 with no cancellation: each term is a positive weighted sum."""
    p_t_complement = (1 - t) * torch.sigmoid(x) + t * torch.sigmoid(-x)
    cross_entropy = (1 - t) * F.softplus(x) + t * F.softplus(-x)
    loss = p_t_complement**gamma * cross_entropy
    return loss if alpha is None else loss * ((1 - alpha) * (1 - t) + alpha * t)


def _relative_error(ours: torch.Tensor, exact: torch.Tensor, floor: float = NORMAL) -> torch.Tensor:
    return (ours.to(D) - exact).abs() / (exact.abs() + floor)


@pytest.mark.parametrize("target_value", TAIL_TARGETS)
@pytest.mark.parametrize(("alpha", "gamma"), [(0.25, 2.0), (None, 0.0), (None, 0.5), (0.6, 3.0)])
@pytest.mark.parametrize("target_needs_grad", [False, True])
def test_focal_float32_tails_match_float64(
    target_value: float, alpha: float | None, gamma: float, target_needs_grad: bool
) -> None:
    """Loss and gradient in float32 keep their relative precision in both tails (|x| <= 30),
    for hard and soft targets: no ``softplus(x) - t x`` or ``1 - sigmoid(x)`` cancellation.
    With a target that needs a gradient the autograd-composed path runs; both are checked.
    A soft target's gradient changes sign where sigmoid(x) = t; there it is a difference of
    terms of size ~1, exact to float32's resolution of those (1e-7), not relatively."""
    x = TAIL_LOGITS.clone().requires_grad_()
    t = torch.full_like(x, target_value).requires_grad_(target_needs_grad)
    loss = FocalLoss(alpha=alpha, gamma=gamma, reduction="none")(x, t)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    x64 = TAIL_LOGITS.to(D).requires_grad_()
    exact = _float64_focal(x64, t.detach().to(D), alpha, gamma)
    (exact_grad,) = torch.autograd.grad(exact.sum(), x64)
    assert loss.dtype == torch.float32
    assert _relative_error(loss, exact.detach()).max() < 1e-3
    crossing = NORMAL if target_value in (0.0, 1.0) else 1e-4  # 1e-4 x 1e-3 = 1e-7 absolute
    assert _relative_error(grad, exact_grad, floor=crossing).max() < 1e-3


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_in_cache_sized_steps_mixing_hard_and_soft_targets(
    reduction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU the loss runs in steps of ``_CHUNK`` elements per thread, on the binary path
    when every target is 0 or 1 and on the soft one otherwise; made tiny here, steps over hard
    and soft rows and row steps (integer labels, with ignored rows) must give torchvision's
    values and gradients."""
    import autotimm.losses.functional._chunked as chunked_module

    monkeypatch.setattr(chunked_module, "_CHUNK", 7)
    generator = torch.Generator().manual_seed(5)
    logits = (torch.randn(40, 3, generator=generator, dtype=D) * 4).requires_grad_()
    target = (torch.rand(40, 3, generator=generator, dtype=D) > 0.7).to(D)
    target[10:20] = torch.rand(10, 3, generator=generator, dtype=D)  # soft rows in between
    ours = FocalLoss(reduction=reduction, gamma=2.0)(logits, target)
    ref = tv.sigmoid_focal_loss(logits, target, gamma=2.0, reduction=reduction)
    _close(ours, ref)
    _close(*(torch.autograd.grad(v.sum(), logits)[0] for v in (ours, ref)))
    labels = torch.randint(-1, 4, (40,), generator=generator)  # -1 ignored, 3 background
    ours = FocalLoss(reduction=reduction, num_classes=3)(logits, labels)
    keep = (labels >= 0).to(D).unsqueeze(1)
    dense = F.one_hot(labels.clamp(0, 3), 4)[:, :3].to(D)
    per_element = tv.sigmoid_focal_loss(logits, dense) * keep
    ref = {"none": per_element, "sum": per_element.sum()}.get(
        reduction, per_element.sum() / (keep.sum() * 3)
    )
    _close(ours, ref)
    _close(*(torch.autograd.grad(v.sum(), logits)[0] for v in (ours, ref)))


def test_focal_confident_predictions_are_not_zero() -> None:
    """torchvision's issue: ``softplus(x) - x`` is exactly 0 in float32 for x >= 17."""
    confident = torch.tensor([20.0, -20.0])
    loss = FocalLoss(alpha=None, gamma=0.0, reduction="none")(confident, torch.tensor([1.0, 0.0]))
    expected = math.log1p(math.exp(-20.0))  # about 2.1e-9, for both
    torch.testing.assert_close(loss, torch.full((2,), expected), rtol=1e-6, atol=0)


# ------------------------------------------------------------------ boxes
@st.composite
def box_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(0, 12))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([1.0, 100.0]))

    def boxes() -> torch.Tensor:
        xy = torch.rand(n, 2, generator=generator, dtype=D) * scale
        wh = torch.rand(n, 2, generator=generator, dtype=D) * scale + 0.01 * scale
        return torch.cat([xy, xy + wh], 1)

    pred, target = boxes(), boxes()
    if n and draw(st.booleans()):
        pred[0] = target[0]  # a perfect prediction
    return pred, target


BOX_PAIRS = [
    (GIoULoss, tv.generalized_box_iou_loss),
    (DIoULoss, tv.distance_box_iou_loss),
    (CIoULoss, tv.complete_box_iou_loss),
]


@pytest.mark.parametrize("index", range(len(BOX_PAIRS)), ids=["giou", "diou", "ciou"])
@SETTINGS
@given(problem=box_problem(), reduction=reductions)
def test_box_losses_equal_torchvision(
    problem: tuple[torch.Tensor, torch.Tensor], reduction: str, index: int
) -> None:
    """Values and gradients with respect to both boxes (a target box can be learned too)."""
    ours_class, reference = BOX_PAIRS[index]
    pred, target = problem
    p1, p2 = pred.clone().requires_grad_(), pred.clone().requires_grad_()
    t1, t2 = target.clone().requires_grad_(), target.clone().requires_grad_()
    ours = ours_class(reduction=reduction)(p1, t1)
    ref = reference(p2, t2, reduction=reduction)
    _close(ours, ref, atol=1e-9)
    if len(pred):
        ours_grads = torch.autograd.grad(ours.sum(), (p1, t1))
        ref_grads = torch.autograd.grad(ref.sum(), (p2, t2))
        for ours_grad, ref_grad in zip(ours_grads, ref_grads):
            _close(ours_grad, ref_grad, atol=1e-9)


def test_ciou_gradient_reaches_the_target_aspect_ratio() -> None:
    """The target's aspect angle is not detached: moving only its height changes the loss."""
    pred = torch.tensor([[0.0, 0.0, 4.0, 2.0]], dtype=D)
    target = torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=D, requires_grad=True)
    (ours,) = torch.autograd.grad(CIoULoss()(pred, target), target)
    (ref,) = torch.autograd.grad(tv.complete_box_iou_loss(pred, target, reduction="mean"), target)
    _close(ours, ref, atol=1e-12)


@SETTINGS
@given(problem=box_problem(), index=st.integers(0, 2))
def test_box_losses_weighted_mean(problem: tuple[torch.Tensor, torch.Tensor], index: int) -> None:
    ours_class, reference = BOX_PAIRS[index]
    pred, target = problem
    weight = torch.rand(pred.shape[0], dtype=D)
    per_box = reference(pred, target)
    expected = (weight * per_box).sum() / weight.sum() if len(pred) else torch.zeros((), dtype=D)
    _close(ours_class()(pred, target, weight), expected, atol=1e-9)
    _close(ours_class(reduction="sum")(pred, target, weight), (weight * per_box).sum(), atol=1e-9)
    _close(ours_class(reduction="none")(pred, target, weight), weight * per_box, atol=1e-9)


def test_box_textbook_values() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0]])
    iou = 1 / 7  # intersection 1, union 7
    assert GIoULoss()(a, b).item() == pytest.approx(1 - iou + (9 - 7) / 9, abs=1e-6)
    assert DIoULoss()(a, b).item() == pytest.approx(1 - iou + 2 / 18, abs=1e-6)
    c = torch.tensor([[0.0, 0.0, 4.0, 2.0]])
    d = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    v = 4 / math.pi**2 * (math.atan(1.0) - math.atan(2.0)) ** 2
    iou_cd = 0.5
    expected = 1 - iou_cd + 1 / 20 + v / (1 - iou_cd + v) * v  # centres 1 apart, diagonal² 20
    assert CIoULoss()(c, d).item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("loss_class", [GIoULoss, DIoULoss, CIoULoss])
def test_box_losses_empty_and_degenerate(loss_class: type[nn.Module]) -> None:
    empty = torch.zeros(0, 4, requires_grad=True)
    for reduction in ("mean", "sum"):
        loss = loss_class(reduction=reduction)(empty, torch.zeros(0, 4))
        assert loss.item() == 0.0
        loss.backward()
    assert loss_class(reduction="none")(empty, torch.zeros(0, 4)).shape == (0,)
    pred = torch.tensor(
        [
            [1.0, 1.0, 1.0, 1.0],  # a point
            [0.0, 0.0, 2.0, 0.0],  # zero height
            [0.0, 0.0, 0.0, 3.0],  # zero width
            [1.0, 1.0, 1.0, 1.0],  # a point on a point
            [0.0, 0.0, 2.0, 2.0],
        ],
        requires_grad=True,
    )
    target = torch.tensor(
        [
            [0.0, 0.0, 2.0, 2.0],
            [0.0, 0.0, 2.0, 2.0],
            [0.0, 0.0, 2.0, 0.0],
            [1.0, 1.0, 1.0, 1.0],
            [5.0, 5.0, 5.0, 5.0],
        ]
    )
    for reduction in ("mean", "sum", "none"):
        loss = loss_class(reduction=reduction)(pred, target, torch.rand(5))
        assert torch.isfinite(loss).all()
        assert torch.isfinite(_grad(loss, pred)).all()


# ------------------------------------------------------------------ centerness and FCOS
@SETTINGS
@given(n=st.integers(0, 10), reduction=reductions, seed=st.integers(0, 2**16))
def test_centerness_is_bce_with_logits(n: int, reduction: str, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, generator=generator, dtype=D, requires_grad=True)
    target = torch.rand(n, generator=generator, dtype=D)
    ours = CenternessLoss(reduction=reduction)(logits, target)
    p = torch.sigmoid(logits)
    textbook = -(target * p.log() + (1 - target) * (1 - p).log())
    expected = {
        "none": textbook,
        "sum": textbook.sum(),
        "mean": textbook.sum() / max(n, 1),
    }[reduction]
    _close(ours, expected, atol=1e-9)
    if n:  # torch's loss, values and gradients (its mean of nothing is NaN, ours 0)
        leaf = logits.detach().requires_grad_()
        torch_loss = nn.BCEWithLogitsLoss(reduction=reduction)(leaf, target)
        _close(ours, torch_loss)
        _close(_grad(ours, logits), _grad(torch_loss, leaf))
    with pytest.raises(ValueError, match=r"target value 2.0 is outside \[0.0, 1.0\]"):
        CenternessLoss()(torch.zeros(2), torch.tensor([0.5, 2.0]))


def _fcos_inputs(
    n: int, c: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(n, c, generator=generator, dtype=D)
    xy = torch.rand(n, 2, generator=generator, dtype=D) * 10
    box_pred = torch.cat([xy, xy + torch.rand(n, 2, generator=generator, dtype=D) * 5 + 0.1], 1)
    box_targets = torch.cat(
        [xy + 0.5, xy + torch.rand(n, 2, generator=generator, dtype=D) * 5 + 0.6], 1
    )
    centerness_logits = torch.randn(n, generator=generator, dtype=D)
    cls_targets = torch.randint(-1, c + 1, (n,), generator=generator)
    centerness_targets = torch.rand(n, generator=generator, dtype=D)
    return cls_logits, box_pred, centerness_logits, cls_targets, box_targets, centerness_targets


@SETTINGS
@given(
    n=st.integers(0, 12),
    c=st.integers(1, 4),
    seed=st.integers(0, 2**16),
    weights=st.tuples(st.floats(0, 2), st.floats(0, 2), st.floats(0, 2)),
)
def test_fcos_matches_its_definition(
    n: int, c: int, seed: int, weights: tuple[float, float, float]
) -> None:
    cls_logits, box_pred, ctr_logits, cls_t, box_t, ctr_t = _fcos_inputs(n, c, seed)
    cls_logits.requires_grad_()
    box_pred.requires_grad_()
    loss = FCOSLoss(
        num_classes=c, cls_weight=weights[0], reg_weight=weights[1], centerness_weight=weights[2]
    )
    total = loss(cls_logits, box_pred, ctr_logits, cls_t, box_t, ctr_t)
    valid = cls_t >= 0
    fg = valid & (cls_t < c)
    norm = max(int(fg.sum()), 1)
    one_hot = F.one_hot(cls_t.clamp(0, c), c + 1)[:, :c].to(D)
    cls = tv.sigmoid_focal_loss(cls_logits[valid], one_hot[valid], reduction="sum") / norm
    reg = tv.generalized_box_iou_loss(box_pred[fg], box_t[fg], reduction="sum") / norm
    ctr = F.binary_cross_entropy_with_logits(ctr_logits[fg], ctr_t[fg], reduction="sum") / norm
    expected = weights[0] * cls + weights[1] * reg + weights[2] * ctr
    _close(total, expected, atol=1e-9)
    for key, value in (("cls", cls), ("reg", reg), ("centerness", ctr)):
        _close(loss.last_components[key], value.detach(), atol=1e-9)
        assert not loss.last_components[key].requires_grad
    if total.requires_grad:
        grads = torch.autograd.grad(total, (cls_logits, box_pred), allow_unused=True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)


def test_fcos_components_by_name_or_module_and_reductions() -> None:
    inputs = _fcos_inputs(10, 3, seed=1)
    by_name = FCOSLoss(cls_loss="bce_with_logits", reg_loss="diou")
    by_module = FCOSLoss(
        cls_loss=get_loss("bce_with_logits", reduction="sum"), reg_loss=DIoULoss(reduction="sum")
    )
    _close(by_name(*inputs), by_module(*inputs))
    assert isinstance(by_name.reg_loss, DIoULoss) and by_name.reg_loss.reduction == "sum"
    summed = FCOSLoss(reduction="sum")(*inputs)
    none = FCOSLoss(reduction="none")(*inputs)
    n = max(int(((inputs[3] >= 0) & (inputs[3] < 3)).sum()), 1)
    assert none.shape == (3,)
    _close(none.sum() * n, summed, atol=1e-9)
    assert get_entry("fcos").target == "structured"


def test_fcos_all_ignored_and_empty() -> None:
    cls_logits = torch.randn(4, 2, requires_grad=True)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 4, requires_grad=True)
    ctr = torch.zeros(4, requires_grad=True)
    loss = FCOSLoss()(cls_logits, boxes, ctr, torch.full((4,), -1), boxes.detach(), torch.ones(4))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(cls_logits.grad).all()
    empty = FCOSLoss()(
        torch.zeros(0, 2),
        torch.zeros(0, 4),
        torch.zeros(0),
        torch.zeros(0, dtype=torch.long),
        torch.zeros(0, 4),
        torch.zeros(0),
    )
    assert empty.item() == 0.0


def test_fcos_rejects_bad_components_and_labels() -> None:
    with pytest.raises(LossConfigError, match="cls_loss"):
        FCOSLoss(cls_loss="no_such_loss")
    with pytest.raises(LossConfigError, match=r"reg_loss: fcos cannot use reg_loss=.fcos.: it"):
        FCOSLoss(reg_loss="fcos")  # the criterion itself does not fit a component
    inputs = list(_fcos_inputs(5, 3, seed=0))
    inputs[3] = torch.tensor([0, 1, 4, -1, 3])
    with pytest.raises(ValueError, match=r"target label 4 .*\[0, 4\).*background"):
        FCOSLoss()(*inputs)
    with pytest.raises(ValueError, match=r"num_classes=2 .* 3 classes"):
        FCOSLoss(num_classes=2)(*_fcos_inputs(5, 3, seed=0))


def test_detection_validation_errors() -> None:
    with pytest.raises(ValueError, match=r"target label 9 .*background.*ignore_index=-1"):
        FocalLoss()(torch.randn(3, 4), torch.tensor([0, 9, -1]))
    with pytest.raises(ValueError, match=r"num_classes=5 .* 4 classes"):
        FocalLoss(num_classes=5)(torch.randn(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"prediction's shape.*\(3, 4\).*\(3, 5\)"):
        FocalLoss()(torch.randn(3, 4), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"\[\.\.\., 4\]"):
        GIoULoss()(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"box weights of shape \(2,\)"):
        CIoULoss()(torch.zeros(3, 4), torch.zeros(3, 4), torch.ones(2))


def test_registry_metadata() -> None:
    assert get_entry("focal").target == "dense"
    for name in ("giou", "diou", "ciou"):
        assert get_entry(name).target == "boxes"
    for name in ("focal", "giou", "diou", "ciou", "centerness", "fcos"):
        assert get_entry(name).tasks == ("detection",)

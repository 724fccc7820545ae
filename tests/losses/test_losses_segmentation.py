"""Segmentation losses against textbook formulas written here (float64 values and gradients).

MONAI and segmentation_models_pytorch are optional extra cross-checks (skipped when absent); the
primary references below need nothing but torch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autotimm.losses import (
    CombinedSegmentationLoss,
    DiceLoss,
    FocalPixelwiseLoss,
    JaccardLoss,
    LovaszLoss,
    MaskLoss,
    TverskyLoss,
    get_entry,
    get_loss,
)

SETTINGS = settings(max_examples=25, deadline=None)
D = torch.float64
IGNORE = 255
reductions = st.sampled_from(["mean", "sum", "none"])

Problem = tuple[torch.Tensor, torch.Tensor]


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-10) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    torch.testing.assert_close(ours.to(D), ref.to(D), atol=atol, rtol=1e-7)


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return grad


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    return {"none": per, "sum": per.sum(), "mean": per.mean()}[reduction]


@st.composite
def seg_problem(draw: st.DrawFn, ignore_rate: list[float] | None = None) -> Problem:
    """Logits [B, C, *spatial] (float64) and labels [B, *spatial] with some ignored pixels."""
    b = draw(st.integers(1, 3))
    c = draw(st.integers(2, 5))  # one softmax channel is refused (a constant loss)
    spatial = draw(st.lists(st.integers(1, 6), min_size=0, max_size=2))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([0.3, 2.0, 8.0]))
    logits = torch.randn(b, c, *spatial, generator=generator, dtype=D) * scale
    target = torch.randint(0, c, (b, *spatial), generator=generator)
    rate = draw(st.sampled_from(ignore_rate or [0.0, 0.0, 0.3, 1.0]))
    target[torch.rand(target.shape, generator=generator) < rate] = IGNORE
    return logits, target


# ------------------------------------------------------------------ textbook references
def _soft_sums(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """sum(p g), sum(p), sum(g) per (sample, class) with an explicit one-hot and mask."""
    b, c = logits.shape[:2]
    p = torch.softmax(logits, 1).reshape(b, c, -1)
    t = target.reshape(b, -1)
    valid = (t != IGNORE).to(D).unsqueeze(1)
    g = F.one_hot(t.clamp(0, c - 1), c).permute(0, 2, 1).to(D) * valid
    p = p * valid
    return (p * g).sum(-1), p.sum(-1), g.sum(-1)


def _safe_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator, and 1 (a perfect score) for 0 / 0."""
    empty = denominator == 0
    return torch.where(empty, 1.0, numerator / torch.where(empty, 1.0, denominator))


def textbook_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    inter, p_sum, g_sum = _soft_sums(logits, target)
    return 1 - _safe_ratio(2 * inter + smooth, p_sum + g_sum + smooth)


def textbook_tversky(
    logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float, smooth: float
) -> torch.Tensor:
    tp, p_sum, g_sum = _soft_sums(logits, target)
    fp, fn = p_sum - tp, g_sum - tp
    return 1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def textbook_jaccard(logits: torch.Tensor, target: torch.Tensor, smooth: float) -> torch.Tensor:
    inter, p_sum, g_sum = _soft_sums(logits, target)
    return 1 - (inter + smooth) / (p_sum + g_sum - inter + smooth)


def textbook_lovasz(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Berman et al.'s Lovász-softmax, Algorithm 1, one present class at a time."""
    c = logits.shape[1]
    p = torch.softmax(logits, 1).movedim(1, -1).reshape(-1, c)
    t = target.reshape(-1)
    keep = t != IGNORE
    p, t = p[keep], t[keep]
    losses = []
    for k in range(c):
        fg = (t == k).to(D)
        if fg.sum() == 0:
            continue
        errors = (fg - p[:, k]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        fg_sorted = fg[order]
        jaccard = []
        for i in range(len(fg_sorted)):
            intersection = fg_sorted.sum() - fg_sorted[: i + 1].sum()
            union = fg_sorted.sum() + (1 - fg_sorted[: i + 1]).sum()
            jaccard.append(1 - intersection / union)
        jac = torch.stack(jaccard)
        grad = torch.cat([jac[:1], jac[1:] - jac[:-1]])
        losses.append((errors_sorted * grad).sum())
    return torch.stack(losses).mean() if losses else logits.sum() * 0


def textbook_focal(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, weights: torch.Tensor | float
) -> torch.Tensor:
    c = logits.shape[1]
    valid = target != IGNORE
    log_p = torch.log_softmax(logits, 1)
    one_hot = F.one_hot(target.clamp(0, c - 1), c).movedim(-1, 1).to(D)
    log_pt = (log_p * one_hot).sum(1)
    w = weights[target.clamp(0, c - 1)] if isinstance(weights, torch.Tensor) else weights
    per_pixel = -w * (1 - log_pt.exp()) ** gamma * log_pt
    return per_pixel * valid


# ------------------------------------------------------------------ region losses
@SETTINGS
@given(
    problem=seg_problem(),
    smooth=st.sampled_from([0.0, 1e-5, 1.0, 3.0]),
    reduction=reductions,
)
def test_dice_equals_textbook(problem: Problem, smooth: float, reduction: str) -> None:
    logits, target = problem
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = DiceLoss(smooth=smooth, reduction=reduction, num_classes=logits.shape[1])(x1, target)
    ref = _reduce(textbook_dice(x2, target, smooth), reduction)
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))


@SETTINGS
@given(
    problem=seg_problem(),
    alpha=st.floats(0, 2),
    beta=st.floats(0, 2),
    smooth=st.sampled_from([1e-5, 1.0]),
    reduction=reductions,
)
def test_tversky_equals_textbook(
    problem: Problem, alpha: float, beta: float, smooth: float, reduction: str
) -> None:
    logits, target = problem
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = TverskyLoss(alpha=alpha, beta=beta, smooth=smooth, reduction=reduction)(x1, target)
    ref = _reduce(textbook_tversky(x2, target, alpha, beta, smooth), reduction)
    _close(ours, ref, atol=1e-9)
    _close(_grad(ours, x1), _grad(ref, x2), atol=1e-9)


@SETTINGS
@given(problem=seg_problem(), smooth=st.sampled_from([1e-5, 1.0]), reduction=reductions)
def test_jaccard_equals_textbook(problem: Problem, smooth: float, reduction: str) -> None:
    logits, target = problem
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = JaccardLoss(smooth=smooth, reduction=reduction)(x1, target)
    ref = _reduce(textbook_jaccard(x2, target, smooth), reduction)
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))


def test_tversky_half_half_is_dice_with_half_the_smoothing() -> None:
    logits, target = torch.randn(2, 4, 5, 5, dtype=D), torch.randint(0, 4, (2, 5, 5))
    _close(TverskyLoss(smooth=0.5)(logits, target), DiceLoss(smooth=1.0)(logits, target))
    _close(TverskyLoss(smooth=0.0)(logits, target), DiceLoss(smooth=0.0)(logits, target))


@SETTINGS
@given(problem=seg_problem(), index=st.integers(0, 2))
def test_region_losses_lie_in_unit_interval(problem: Problem, index: int) -> None:
    loss = [DiceLoss, TverskyLoss, JaccardLoss][index](reduction="none")
    values = loss(*problem)
    assert values.shape == problem[0].shape[:2]
    assert ((values >= -1e-12) & (values <= 1 + 1e-12)).all()


@pytest.mark.parametrize(
    "name", ["dice", "tversky", "jaccard", "lovasz", "focal_pixelwise", "combined_segmentation"]
)
def test_perfect_prediction_is_near_zero(name: str) -> None:
    target = torch.randint(0, 4, (2, 6, 6))
    target[0, 0] = IGNORE
    logits = 40.0 * F.one_hot(target.clamp(0, 3), 4).movedim(-1, 1).to(D)
    assert 0 <= get_loss(name)(logits, target).item() < 1e-6
    worst = -logits  # confidently wrong everywhere
    assert get_loss(name)(worst, target).item() > 0.5


@SETTINGS
@given(problem=seg_problem(ignore_rate=[0.0, 0.3]), data=st.data())
def test_invariant_to_permuting_classes(problem: Problem, data: st.DataObject) -> None:
    logits, target = problem
    c = logits.shape[1]
    permutation = torch.tensor(data.draw(st.permutations(range(c))))
    # class k becomes class permutation[k]: move the logits' channels and relabel the targets
    permuted_logits = torch.empty_like(logits)
    permuted_logits[:, permutation] = logits
    permuted_target = torch.where(target == IGNORE, target, permutation[target.clamp(0, c - 1)])
    for name in ("dice", "tversky", "jaccard", "lovasz", "focal_pixelwise", "combined"):
        loss = get_loss(name)
        _close(loss(logits, target), loss(permuted_logits, permuted_target), atol=1e-9)


# ------------------------------------------------------------------ lovasz
@settings(max_examples=15, deadline=None)
@given(problem=seg_problem(), per_image=st.booleans(), reduction=reductions)
def test_lovasz_equals_textbook(problem: Problem, per_image: bool, reduction: str) -> None:
    logits, target = problem
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = LovaszLoss(per_image=per_image, reduction=reduction)(x1, target)
    if per_image:
        images = [textbook_lovasz(x2[i : i + 1], target[i : i + 1]) for i in range(len(x2))]
        per = torch.stack(images)
        ref = _reduce(per, reduction)
    else:
        ref = textbook_lovasz(x2, target)
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))


# ------------------------------------------------------------------ focal, mask, combined
@SETTINGS
@given(
    problem=seg_problem(),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    alpha_kind=st.sampled_from(["none", "scalar", "list"]),
    reduction=reductions,
)
def test_focal_pixelwise_equals_textbook(
    problem: Problem, gamma: float, alpha_kind: str, reduction: str
) -> None:
    logits, target = problem
    c = logits.shape[1]
    alpha: float | list[float] | None = {"none": None, "scalar": 0.25, "list": None}[alpha_kind]
    weights: torch.Tensor | float = 1.0 if alpha is None else alpha
    if alpha_kind == "list":
        alpha = [0.5 + k for k in range(c)]
        weights = torch.tensor(alpha, dtype=D)
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = FocalPixelwiseLoss(gamma=gamma, alpha=alpha, reduction=reduction)(x1, target)
    per = textbook_focal(x2, target, gamma, weights)
    n_valid = max(int((target != IGNORE).sum()), 1)
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / n_valid}[reduction]
    _close(ours, ref)
    ours_grad, ref_grad = _grad(ours, x1), _grad(ref, x2)
    assert torch.isfinite(ours_grad).all()
    finite = torch.isfinite(ref_grad)  # the textbook's (1 - p_t)^gamma has no gradient at p_t=1
    _close(ours_grad[finite], ref_grad[finite])
    assert (ours_grad[~finite] == 0).all()


@SETTINGS
@given(problem=seg_problem())
def test_focal_pixelwise_gamma_zero_is_cross_entropy(problem: Problem) -> None:
    logits, target = problem
    ours = FocalPixelwiseLoss(gamma=0.0)(logits, target)
    if (target == IGNORE).all():
        assert ours.item() == 0.0
    else:
        _close(ours, F.cross_entropy(logits, target, ignore_index=IGNORE))


@SETTINGS
@given(
    n=st.integers(0, 4),
    size=st.integers(1, 5),
    dtype=st.sampled_from([torch.bool, torch.long, D]),
    pos_weight=st.sampled_from([None, 2.5]),
    reduction=reductions,
    seed=st.integers(0, 2**16),
)
def test_mask_is_bce_with_logits(
    n: int, size: int, dtype: torch.dtype, pos_weight: float | None, reduction: str, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, size, size, generator=generator, dtype=D, requires_grad=True)
    target = torch.rand(n, size, size, generator=generator, dtype=D)
    target = target if dtype == D else (target > 0.5).to(dtype)
    weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=D)
    ours = MaskLoss(pos_weight=weight, reduction=reduction)(logits, target)
    per = F.binary_cross_entropy_with_logits(
        logits, target.to(D), pos_weight=weight, reduction="none"
    )
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / max(per.numel(), 1)}[reduction]
    _close(ours, ref)
    if n:
        _close(_grad(ours, logits), _grad(ref, logits))
    else:
        ours.sum().backward()  # N = 0: a zero loss that still has a graph


@SETTINGS
@given(
    problem=seg_problem(),
    weights=st.tuples(st.floats(0, 2), st.floats(0, 2)),
    smoothing=st.sampled_from([0.0, 0.1]),
    class_weighted=st.booleans(),
    reduction=reductions,
)
def test_combined_is_weighted_ce_plus_dice(
    problem: Problem,
    weights: tuple[float, float],
    smoothing: float,
    class_weighted: bool,
    reduction: str,
) -> None:
    logits, target = problem
    b, c = logits.shape[:2]
    class_weights = torch.rand(c, dtype=D) + 0.5 if class_weighted else None
    loss = CombinedSegmentationLoss(
        num_classes=c,
        ce_weight=weights[0],
        dice_weight=weights[1],
        class_weights=class_weights,
        label_smoothing=smoothing,
        reduction=reduction,
    )
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = loss(x1, target)
    dice = textbook_dice(x2, target, 1.0)
    ce_none = F.cross_entropy(
        x2,
        target,
        weight=class_weights,
        ignore_index=IGNORE,
        label_smoothing=smoothing,
        reduction="none",
    )
    valid = (target != IGNORE).reshape(b, -1)
    w = torch.ones(c, dtype=D) if class_weights is None else class_weights
    w_pixel = w[target.clamp(0, c - 1)].reshape(b, -1) * valid
    if reduction == "none":
        ce = ce_none.reshape(b, -1).sum(1) / w_pixel.sum(1).clamp_min(1e-300)
        ce = torch.where(w_pixel.sum(1) > 0, ce, torch.zeros_like(ce))
        dice = dice.mean(1)
    elif reduction == "sum":
        ce, dice = ce_none.sum(), dice.sum()
    else:
        total = w_pixel.sum()
        ce = ce_none.sum() / total if total > 0 else ce_none.sum() * 0
        dice = dice.mean()
    ref = weights[0] * ce + weights[1] * dice
    _close(ours, ref, atol=1e-9)
    _close(_grad(ours, x1), _grad(ref, x2), atol=1e-9)
    _close(loss.last_components["ce"], ce.detach(), atol=1e-9)
    _close(loss.last_components["dice"], dice.detach(), atol=1e-9)


# ------------------------------------------------------------------ registry, errors, peers
def test_registry_metadata_and_aliases() -> None:
    assert get_entry("combined").loss_class is CombinedSegmentationLoss
    assert get_entry("mask").target == "dense"
    for name in ("dice", "tversky", "jaccard", "lovasz", "focal_pixelwise"):
        entry = get_entry(name)
        assert entry.tasks == ("segmentation",) and entry.target == "class_indices"
        params = {p.name: p for p in entry.parameters}
        assert params["ignore_index"].default == IGNORE
        assert params["num_classes"].default is None
    built = get_loss("focal_pixelwise", alpha=[1.0, 2.0])
    assert torch.equal(built.class_alpha, torch.tensor([1.0, 2.0]))


def test_segmentation_validation_errors() -> None:
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    bad = target.clone()
    bad[1, 2, 3] = 7
    for name in ("dice", "tversky", "jaccard", "lovasz", "focal_pixelwise", "combined"):
        with pytest.raises(ValueError, match=r"target label 7 .*ignore_index=255.*\(2, 3, 4, 4\)"):
            get_loss(name)(logits, bad)
        with pytest.raises(ValueError, match=r"num_classes=4 .* 3 classes"):
            get_loss(name, num_classes=4)(logits, target)
        with pytest.raises(ValueError, match=r"shape \(2, 4, 4\).*target shape \(2, 4, 5\)"):
            get_loss(name)(logits, torch.zeros(2, 4, 5, dtype=torch.long))
        with pytest.raises(ValueError, match="integer"):
            get_loss(name)(logits, target.float())
    with pytest.raises(ValueError, match=r"class weights of shape \(2,\)"):
        FocalPixelwiseLoss(alpha=[1.0, 2.0])(logits, target)
    with pytest.raises(ValueError, match=r"class weights of shape \(5,\)"):
        CombinedSegmentationLoss(class_weights=torch.ones(5))(logits, target)
    with pytest.raises(ValueError, match=r"target value 3.0 is outside"):
        MaskLoss()(torch.zeros(2, 3, 3), torch.full((2, 3, 3), 3))
    with pytest.raises(ValueError, match="prediction's shape"):
        MaskLoss()(torch.zeros(2, 3, 3), torch.zeros(2, 3, 4))


SOFTMAX_LOSSES = [
    "dice",
    "tversky",
    "jaccard",
    "lovasz",
    "focal_pixelwise",
    "combined_segmentation",
]


@pytest.mark.parametrize("name", SOFTMAX_LOSSES)
def test_one_softmax_channel_is_refused(name: str) -> None:
    """softmax over one channel is 1 everywhere: the loss would be a constant with no gradient,
    so a binary mask model built with num_classes=1 would silently train on nothing."""
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    one_channel = torch.randn(2, 1, 4, 4)
    with pytest.raises(
        ValueError, match=rf"{name}: the logits have 1 channel.*num_classes=2.*bce_with_logits"
    ):
        get_loss(name)(one_channel, target)
    two_channels = torch.randn(2, 2, 4, 4, requires_grad=True)  # what the message suggests
    target[:, :2] = 1
    (grad,) = torch.autograd.grad(get_loss(name)(two_channels, target), two_channels)
    assert grad.abs().sum() > 0


def test_monai_cross_check() -> None:
    monai_losses = pytest.importorskip("monai.losses")
    logits = torch.randn(3, 5, 9, 7, dtype=D, requires_grad=True)
    target = torch.randint(0, 5, (3, 9, 7))
    for smooth in (1e-5, 1.0):
        ours = DiceLoss(smooth=smooth)(logits, target)
        ref = monai_losses.DiceLoss(
            softmax=True, to_onehot_y=True, smooth_nr=smooth, smooth_dr=smooth
        )(logits, target.unsqueeze(1))
        _close(ours, ref)
        _close(_grad(ours, logits), _grad(ref, logits))
        ours = TverskyLoss(alpha=0.3, beta=0.7, smooth=smooth)(logits, target)
        ref = monai_losses.TverskyLoss(
            softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7, smooth_nr=smooth, smooth_dr=smooth
        )(logits, target.unsqueeze(1))
        _close(ours, ref)


def test_segmentation_models_pytorch_cross_check() -> None:
    smp_losses = pytest.importorskip("segmentation_models_pytorch.losses")
    logits = torch.randn(3, 5, 9, 7, requires_grad=True)  # smp's Lovász needs float32
    target = torch.randint(0, 5, (3, 9, 7))
    target[0, :3] = IGNORE
    target[1] = 2
    for per_image in (False, True):
        ours = LovaszLoss(per_image=per_image)(logits, target)
        ref = smp_losses.LovaszLoss("multiclass", per_image=per_image, ignore_index=IGNORE)(
            logits, target
        )
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(_grad(ours, logits), _grad(ref, logits), atol=1e-6, rtol=1e-5)

"""Segmentation modes, class weights, background, focal Tversky and OHEM (issue 12, section 2).

Every statement is checked in float64 against a textbook formula written here (values and
gradients), against the laws that relate the modes to each other, and against the published
input/expected-value pairs of MONAI's and segmentation_models_pytorch's own test suites (neither
library is installed here). The robustness matrix of ``test_losses_robustness.py`` (extreme
logits, nothing to learn, empty inputs, float16/bfloat16, ``torch.compile``, NaN) runs for every
new mode at the end.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from test_losses_segmentation import (
    IGNORE,
    SETTINGS,
    D,
    Problem,
    _close,
    _safe_ratio,
    reductions,
    seg_problem,
)
from test_losses_segmentation import _soft_sums as softmax_sums
from torch import nn

from autotimm.losses import (
    DiceLoss,
    FocalPixelwiseLoss,
    JaccardLoss,
    LossConfigError,
    LossSpec,
    LovaszLoss,
    OhemCrossEntropyLoss,
    TverskyLoss,
    get_entry,
    get_loss,
)

REGION = ("dice", "jaccard", "tversky")
MODAL = (*REGION, "focal_pixelwise", "lovasz")


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf, allow_unused=True)
    return torch.zeros_like(leaf) if grad is None else grad


def _close_grads(ours: torch.Tensor, ref: torch.Tensor) -> None:
    """Ours is finite everywhere; where the textbook's own gradient is finite they agree (a
    power ``l ** gamma`` with ``gamma < 1`` has no textbook gradient at ``l = 0``)."""
    assert torch.isfinite(ours).all()
    finite = torch.isfinite(ref)
    _close(ours[finite], ref[finite])


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    """The project's reductions: a mean over nothing (one channel, background left out) is 0."""
    mean = per.mean() if per.numel() else per.sum()
    return {"none": per, "sum": per.sum(), "mean": mean}[reduction]


def _leaves(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.clone().requires_grad_(), logits.clone().requires_grad_()


# ------------------------------------------------------------------ problems
@st.composite
def mask_problem(draw: st.DrawFn, mode: str, hard: bool | None = None) -> Problem:
    """Logits ``[B, C, *]`` (float64) and masks of their shape, soft or 0/1, some ignored."""
    b = draw(st.integers(1, 3))
    c = 1 if mode == "binary" else draw(st.integers(1, 4))
    spatial = draw(st.lists(st.integers(1, 5), min_size=0, max_size=2))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([0.3, 2.0, 8.0]))
    logits = torch.randn(b, c, *spatial, generator=generator, dtype=D) * scale
    soft = not hard if hard is not None else draw(st.booleans())
    masks = torch.rand(logits.shape, generator=generator, dtype=D)
    masks = masks if soft else (masks > 0.5).to(D)
    rate = draw(st.sampled_from([0.0, 0.0, 0.3, 1.0]))
    masks[torch.rand(masks.shape, generator=generator) < rate] = IGNORE
    return logits, masks


def class_problem(classes: int | None = None) -> st.SearchStrategy[Problem]:
    """Logits ``[B, C, *]`` (float64) and class indices ``[B, *]``, some ignored (the problems
    of ``test_losses_segmentation.py``); ``classes=2``: folded onto two classes."""
    if classes is None:
        return seg_problem()
    assert classes == 2
    return seg_problem().map(lambda p: (p[0][:, :2], torch.where(p[1] == IGNORE, IGNORE, p[1] % 2)))


# ------------------------------------------------------------------ textbook references
def sigmoid_sums(logits: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """sum(p g), sum(p), sum(g) per (sample, channel), p = sigmoid(x), ignored elements out."""
    b, c = logits.shape[:2]
    p = torch.sigmoid(logits).reshape(b, c, -1)
    m = masks.reshape(b, c, -1).to(D)
    valid = (m != IGNORE).to(D)
    g = torch.where(m == IGNORE, 0.0, m)
    p = p * valid
    return (p * g).sum(-1), p.sum(-1), g.sum(-1)


def textbook_region(
    name: str,
    sums: tuple[torch.Tensor, ...],
    *,
    smooth: float,
    alpha: float = 0.5,
    beta: float = 0.5,
    gamma: float = 1.0,
    weights: torch.Tensor | None = None,
    include_background: bool = True,
) -> torch.Tensor:
    """MONAI's definitions per (sample, class): weight times the loss, background dropped."""
    tp, p_sum, g_sum = sums
    if name == "dice":
        per = 1 - _safe_ratio(2 * tp + smooth, p_sum + g_sum + smooth)
    elif name == "jaccard":
        per = 1 - _safe_ratio(tp + smooth, p_sum + g_sum - tp + smooth)
    else:
        fp, fn = p_sum - tp, g_sum - tp
        per = 1 - _safe_ratio(tp + smooth, tp + alpha * fp + beta * fn + smooth)
        per = per**gamma
    w = torch.ones(per.shape[1], dtype=D) if weights is None else weights.to(D)
    if not include_background:
        per, w = per[:, 1:], w[1:]
    return per * w


def region_loss(name: str, **kwargs: Any) -> nn.Module:
    """The registered loss; only Tversky takes ``alpha``, ``beta`` and ``gamma``."""
    if name != "tversky":
        kwargs = {k: v for k, v in kwargs.items() if k not in ("alpha", "beta", "gamma")}
    return get_loss(name, **kwargs)


tversky_params = st.fixed_dictionaries(
    {
        "alpha": st.sampled_from([0.0, 0.3, 0.5, 1.5]),
        "beta": st.sampled_from([0.0, 0.7, 0.5, 1.0]),
        "gamma": st.sampled_from([0.5, 0.75, 1.0, 2.0]),
    }
)


# ------------------------------------------------------------------ region losses, every mode
@SETTINGS
@given(
    data=st.data(),
    mode=st.sampled_from(["multiclass", "multilabel", "binary"]),
    name=st.sampled_from(REGION),
    smooth=st.sampled_from([0.0, 1e-5, 1.0]),
    params=tversky_params,
    weighted=st.booleans(),
    reduction=reductions,
)
def test_region_losses_equal_textbook_in_every_mode(
    data: st.DataObject,
    mode: str,
    name: str,
    smooth: float,
    params: dict[str, float],
    weighted: bool,
    reduction: str,
) -> None:
    """MONAI's definitions (softmax or sigmoid, ``weight``, ``include_background``) with the
    focal Tversky exponent; binary masks given as ``[B, H, W]``."""
    logits, target = data.draw(class_problem() if mode == "multiclass" else mask_problem(mode))
    include_background = mode == "binary" or data.draw(st.booleans())
    weights = torch.rand(logits.shape[1], dtype=D) * 2 if weighted else None
    loss = region_loss(
        name,
        mode=mode,
        smooth=smooth,
        class_weights=weights,
        include_background=include_background,
        reduction=reduction,
        **params,
    )
    x1, x2 = _leaves(logits)
    ours = loss(x1, target[:, 0] if mode == "binary" else target)
    sums = softmax_sums(x2, target) if mode == "multiclass" else sigmoid_sums(x2, target)
    ref = _reduce(
        textbook_region(
            name,
            sums,
            smooth=smooth,
            weights=weights,
            include_background=include_background,
            **(params if name == "tversky" else {}),
        ),
        reduction,
    )
    _close(ours, ref, atol=1e-9)
    _close_grads(_grad(ours, x1), _grad(ref, x2))


# ------------------------------------------------------------------ laws between the modes
def _two_channels(x: torch.Tensor, scale: float = 0.5) -> torch.Tensor:
    """``[B, 1, *]`` logits -> ``[-s x, s x]``: softmax of it is ``[sigmoid(-x), sigmoid(x)]``
    for ``s = 1/2``, and sigmoid of it is that too for ``s = 1``."""
    return torch.cat([-scale * x, scale * x], 1)


@SETTINGS
@given(
    problem=mask_problem("binary", hard=True),
    name=st.sampled_from(REGION),
    smooth=st.sampled_from([0.0, 1.0]),
    params=tversky_params,
    reduction=reductions,
)
def test_binary_is_multiclass_without_background_on_two_channels(
    problem: Problem, name: str, smooth: float, params: dict[str, float], reduction: str
) -> None:
    """What holds: binary mode on ``x`` equals multiclass on ``[-x/2, x/2]`` *without* the
    background channel (with it, multiclass also averages in the background's score)."""
    logits, masks = problem
    labels = masks[:, 0].long()  # 0, 1 or IGNORE: the same pixels as class indices
    x1, x2 = _leaves(logits)
    kwargs = {"smooth": smooth, "reduction": reduction, **params}
    binary = region_loss(name, mode="binary", **kwargs)(x1, masks)
    multiclass = region_loss(name, include_background=False, **kwargs)(_two_channels(x2), labels)
    _close(binary, multiclass, atol=1e-9)
    _close(_grad(binary, x1), _grad(multiclass, x2), atol=1e-9)
    if reduction == "none":  # with the background both channels count: not the binary loss
        both = region_loss(name, **kwargs)(_two_channels(x2.detach()), labels)
        _close(both[:, 1:], binary.detach(), atol=1e-9)


@SETTINGS
@given(
    problem=class_problem(classes=2),
    name=st.sampled_from(REGION),
    params=tversky_params,
    include_background=st.booleans(),
)
def test_multilabel_on_one_hot_masks_is_multiclass(
    problem: Problem, name: str, params: dict[str, float], include_background: bool
) -> None:
    """Multilabel on ``[-x, x]`` with one-hot masks equals multiclass on ``[-x/2, x/2]``."""
    logits, target = problem
    x = logits[:, 1:] - logits[:, :1]  # one margin per pixel
    one_hot = F.one_hot(target.clamp(0, 1), 2).movedim(-1, 1).to(D)
    masks = torch.where((target == IGNORE).unsqueeze(1), float(IGNORE), one_hot)
    kwargs = {"include_background": include_background, "reduction": "none", **params}
    multilabel = region_loss(name, mode="multilabel", **kwargs)(_two_channels(x, 1.0), masks)
    multiclass = region_loss(name, **kwargs)(_two_channels(x), target)
    _close(multilabel, multiclass, atol=1e-9)


@SETTINGS
@given(
    data=st.data(),
    mode=st.sampled_from(["multiclass", "multilabel", "binary"]),
    name=st.sampled_from(REGION),
    scale=st.sampled_from([1.0, 0.25, 3.0]),
    reduction=reductions,
)
def test_equal_class_weights_scale_the_unweighted_loss(
    data: st.DataObject, mode: str, name: str, scale: float, reduction: str
) -> None:
    """Weights all 1 are the unweighted loss exactly; weights all ``s`` multiply it by ``s``
    (MONAI's semantics: the mean does not divide by the weights)."""
    problem = class_problem() if mode == "multiclass" else mask_problem(mode)
    logits, target = data.draw(problem)
    c = logits.shape[1]
    plain = get_loss(name, mode=mode, reduction=reduction)(logits, target)
    ones = get_loss(name, mode=mode, reduction=reduction, class_weights=[1.0] * c)
    assert torch.equal(ones(logits, target), plain)
    scaled = get_loss(name, mode=mode, reduction=reduction, class_weights=[scale] * c)
    _close(scaled(logits, target), scale * plain, atol=1e-12)


@SETTINGS
@given(
    data=st.data(),
    mode=st.sampled_from(["multiclass", "multilabel"]),
    name=st.sampled_from(REGION),
    weighted=st.booleans(),
    reduction=reductions,
)
def test_without_background_is_dropping_channel_zero_from_the_mean(
    data: st.DataObject, mode: str, name: str, weighted: bool, reduction: str
) -> None:
    problem = class_problem() if mode == "multiclass" else mask_problem(mode)
    logits, target = data.draw(problem)
    c = logits.shape[1]
    weights = torch.rand(c, dtype=D) if weighted else None
    full = get_loss(name, mode=mode, class_weights=weights, reduction="none")(logits, target)
    dropped = get_loss(
        name, mode=mode, class_weights=weights, include_background=False, reduction=reduction
    )(logits, target)
    _close(dropped, _reduce(full[:, 1:], reduction), atol=1e-12)
    if mode == "multilabel":  # independent channels: also the loss of channels 1.. alone
        rest = weights[1:] if weights is not None else None
        alone = get_loss(name, mode=mode, class_weights=rest, reduction=reduction)
        _close(dropped, alone(logits[:, 1:], target[:, 1:]), atol=1e-12)


@pytest.mark.parametrize("name", MODAL)
def test_binary_masks_may_drop_the_channel_dimension(name: str) -> None:
    logits = torch.randn(3, 1, 5, 4, dtype=D)
    masks = (torch.rand(3, 5, 4) > 0.5).to(D)
    masks[0, 0] = IGNORE
    loss = get_loss(name, mode="binary")
    _close(loss(logits, masks), loss(logits, masks.unsqueeze(1)), atol=0)
    _close(loss(logits, masks.bool().long().where(masks != IGNORE, IGNORE)), loss(logits, masks))


@SETTINGS
@given(problem=mask_problem("binary"), reduction=reductions)
def test_tversky_gamma_raises_each_sample_and_class_loss(problem: Problem, reduction: str) -> None:
    logits, masks = problem
    plain = TverskyLoss(mode="binary", alpha=0.3, beta=0.7, reduction="none")(logits, masks)
    focal = TverskyLoss(mode="binary", alpha=0.3, beta=0.7, gamma=0.75, reduction=reduction)
    _close(focal(logits, masks), _reduce(plain**0.75, reduction), atol=1e-12)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_tversky_of_a_perfect_prediction_is_exactly_zero(gamma: float) -> None:
    logits = 40 * torch.eye(3, requires_grad=True).reshape(1, 3, 3, 1)
    value = TverskyLoss(gamma=gamma, smooth=0.0)(logits, torch.arange(3).reshape(1, 3, 1))
    assert value.item() == 0.0 and torch.isfinite(_grad(value, logits)).all()


# ------------------------------------------------------------------ focal, every mode
def textbook_sigmoid_focal(
    logits: torch.Tensor, masks: torch.Tensor, gamma: float, weights: torch.Tensor | float
) -> torch.Tensor:
    """-w_c (1 - p_t)^gamma log p_t per element with p_t = p for g = 1, 1 - p for g = 0
    (interpolated for soft targets as binary cross entropy is); 0 where ignored."""
    valid = masks != IGNORE
    g = torch.where(valid, masks, 0.0)
    p = torch.sigmoid(logits)
    ce = -(g * torch.log(p) + (1 - g) * torch.log1p(-p))
    p_t = g * p + (1 - g) * (1 - p)
    w = (
        weights.view(1, -1, *[1] * (logits.ndim - 2))
        if isinstance(weights, torch.Tensor)
        else weights
    )
    return w * (1 - p_t) ** gamma * ce * valid


@SETTINGS
@given(
    data=st.data(),
    mode=st.sampled_from(["binary", "multilabel"]),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    alpha_kind=st.sampled_from(["none", "scalar", "list"]),
    reduction=reductions,
)
def test_focal_pixelwise_on_masks_equals_textbook(
    data: st.DataObject, mode: str, gamma: float, alpha_kind: str, reduction: str
) -> None:
    """As smp's ``FocalLoss(mode, alpha=None)``: the mean over the non-ignored elements."""
    logits, masks = data.draw(mask_problem(mode))
    logits = logits.clamp(-20, 20)  # the textbook's log(1 - p) is -inf beyond float64's reach
    c = logits.shape[1]
    alpha: float | list[float] | None = {"none": None, "scalar": 0.25, "list": None}[alpha_kind]
    weights: torch.Tensor | float = 1.0 if alpha is None else alpha
    if alpha_kind == "list":
        alpha = [0.5 + k for k in range(c)]
        weights = torch.tensor(alpha, dtype=D)
    x1, x2 = _leaves(logits)
    loss = FocalPixelwiseLoss(mode=mode, gamma=gamma, alpha=alpha, reduction=reduction)
    ours = loss(x1, masks)
    per = textbook_sigmoid_focal(x2, masks, gamma, weights)
    count = max(int((masks != IGNORE).sum()), 1)
    ref = {"none": per, "sum": per.sum(), "mean": per.sum() / count}[reduction]
    _close(ours, ref, atol=1e-9)
    _close_grads(_grad(ours, x1), _grad(ref, x2))


@SETTINGS
@given(
    problem=mask_problem("binary", hard=True),
    gamma=st.sampled_from([0.0, 0.5, 2.0]),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_focal_binary_is_multiclass_on_two_channels(
    problem: Problem, gamma: float, reduction: str
) -> None:
    logits, masks = problem
    x1, x2 = _leaves(logits)
    binary = FocalPixelwiseLoss(mode="binary", gamma=gamma, reduction=reduction)(x1, masks)
    labels = masks[:, 0].long()
    multiclass = FocalPixelwiseLoss(gamma=gamma, reduction=reduction)(_two_channels(x2), labels)
    _close(binary, multiclass, atol=1e-9)
    _close(_grad(binary, x1), _grad(multiclass, x2), atol=1e-9)


# ------------------------------------------------------------------ Lovász hinge
def textbook_lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Berman et al.'s binary Lovász hinge on flat logits and 0/1 labels (Algorithm 1)."""
    if labels.numel() == 0:
        return logits.sum() * 0
    signs = 2 * labels - 1
    errors = 1 - logits * signs
    errors_sorted, order = torch.sort(errors, descending=True)
    gt = labels[order]
    total = gt.sum()
    jaccard = torch.stack(
        [
            1 - (total - gt[: i + 1].sum()) / (total + (1 - gt[: i + 1]).sum())
            for i in range(len(gt))
        ]
    )
    increments = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return torch.dot(F.relu(errors_sorted), increments)


def textbook_lovasz_masks(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The hinge per channel over the non-ignored elements of all images, then the mean."""
    per_channel = []
    for channel in range(logits.shape[1]):
        x, m = logits[:, channel].reshape(-1), masks[:, channel].reshape(-1)
        keep = m != IGNORE
        per_channel.append(textbook_lovasz_hinge(x[keep], m[keep]))
    return torch.stack(per_channel).mean()


@settings(max_examples=15, deadline=None)
@given(
    data=st.data(),
    mode=st.sampled_from(["binary", "multilabel"]),
    per_image=st.booleans(),
    reduction=reductions,
)
def test_lovasz_hinge_equals_textbook(
    data: st.DataObject, mode: str, per_image: bool, reduction: str
) -> None:
    """Binary: smp's ``LovaszLoss(mode="binary")`` (Berman's hinge); multilabel: that hinge
    per channel, averaged over the channels."""
    logits, masks = data.draw(mask_problem(mode, hard=True))
    x1, x2 = _leaves(logits)
    ours = LovaszLoss(mode=mode, per_image=per_image, reduction=reduction)(x1, masks)
    if per_image:
        images = [textbook_lovasz_masks(x2[i : i + 1], masks[i : i + 1]) for i in range(len(x2))]
        ref = _reduce(torch.stack(images), reduction)
    else:
        ref = textbook_lovasz_masks(x2, masks)
    _close(ours, ref)
    _close(_grad(ours, x1), _grad(ref, x2))


@SETTINGS
@given(problem=mask_problem("multilabel", hard=True), per_image=st.booleans())
def test_lovasz_multilabel_is_the_mean_of_binary_per_channel(
    problem: Problem, per_image: bool
) -> None:
    logits, masks = problem
    multilabel = LovaszLoss(mode="multilabel", per_image=per_image)(logits, masks)
    binary = LovaszLoss(mode="binary", per_image=per_image)
    channels = [binary(logits[:, [c]], masks[:, c]) for c in range(logits.shape[1])]
    _close(multilabel, torch.stack(channels).mean())


# ------------------------------------------------------------------ OHEM cross entropy
def mmseg_ohem_weights(
    logits: torch.Tensor, target: torch.Tensor, thresh: float, min_kept: int
) -> torch.Tensor:
    """mmseg's ``OHEMPixelSampler.sample`` with ``thresh`` set, as written there: keep the
    valid pixels whose probability of the true class is below ``max(thresh, the k-th smallest)``
    with ``k = min(min_kept * B, n_valid - 1)`` (0-based)."""
    valid = target != IGNORE
    prob = torch.softmax(logits, 1).gather(1, target.clamp(0, logits.shape[1] - 1).unsqueeze(1))
    prob = prob.squeeze(1)
    sort_prob, _ = prob[valid].sort()
    batch_kept = min_kept * target.shape[0]
    min_threshold = sort_prob[min(batch_kept, sort_prob.numel() - 1)] if sort_prob.numel() else 0.0
    threshold = max(float(min_threshold), thresh)
    weights = torch.zeros_like(prob)
    weights[valid] = (prob[valid] < threshold).to(prob.dtype)
    return weights


@SETTINGS
@given(
    problem=class_problem(),
    thresh=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
    min_kept=st.integers(0, 12),
    weighted=st.booleans(),
    reduction=reductions,
)
def test_ohem_equals_mmseg_sampler_then_mean_over_kept(
    problem: Problem, thresh: float, min_kept: int, weighted: bool, reduction: str
) -> None:
    """The kept pixels are mmseg's whenever ``min_kept * B`` is below the number of valid
    pixels (continuous random logits: no ties); the loss is the (weighted) mean over them."""
    logits, target = problem
    n_valid = int((target != IGNORE).sum())
    c = logits.shape[1]
    weights = torch.rand(c, dtype=D) + 0.5 if weighted else None
    x1, x2 = _leaves(logits)
    loss = OhemCrossEntropyLoss(
        thresh=thresh, min_kept=min_kept, class_weights=weights, reduction=reduction
    )
    ours = loss(x1, target)
    kept = mmseg_ohem_weights(x2.detach(), target, thresh, min_kept)
    if min_kept * target.shape[0] >= n_valid:  # mmseg drops the easiest; ohem keeps them all
        kept = (target != IGNORE).to(D) if min_kept else kept
    w = kept if weights is None else kept * weights[target.clamp(0, c - 1)]
    ce = F.cross_entropy(x2, target.clamp(0, c - 1), reduction="none")
    per = ce * w
    denominator = w.sum()
    ref = {
        "none": per,
        "sum": per.sum(),
        "mean": per.sum() / denominator if denominator > 0 else per.sum() * 0,
    }[reduction]
    _close(ours, ref, atol=1e-9)
    _close(_grad(ours, x1), _grad(ref, x2), atol=1e-9)


def test_ohem_differs_from_mmseg_only_where_the_catalogue_says() -> None:
    """Three pixels with p_t = 0.9, 0.8, 0.6 and min_kept >= 3: mmseg keeps p_t below
    max(0.7, the largest p_t) = 0.9, dropping the easiest pixel; OHEM here keeps at least
    min_kept pixels, so all three. With ties at the boundary OHEM keeps every tied pixel."""
    p_t = torch.tensor([0.9, 0.8, 0.6], dtype=D)
    logits = torch.stack([torch.log(p_t), torch.log1p(-p_t)]).reshape(1, 2, 3)
    target = torch.zeros(1, 3, dtype=torch.long)
    assert mmseg_ohem_weights(logits, target, 0.7, 3).tolist() == [[0.0, 1.0, 1.0]]
    ours = OhemCrossEntropyLoss(thresh=0.7, min_kept=3, reduction="none")(logits, target)
    assert (ours > 0).tolist() == [[True, True, True]]
    tied = torch.zeros(1, 2, 4, dtype=D)  # every p_t = 1/2: all four are among the 2 hardest
    loss = OhemCrossEntropyLoss(thresh=0.0, min_kept=2, reduction="none")
    assert (loss(tied, torch.zeros(1, 4, dtype=torch.long)) > 0).all()


@SETTINGS
@given(problem=class_problem(), weighted=st.booleans())
def test_ohem_keeping_every_pixel_is_cross_entropy(problem: Problem, weighted: bool) -> None:
    logits, target = problem
    c = logits.shape[1]
    weights = torch.rand(c, dtype=D) + 0.5 if weighted else None
    x1, x2 = _leaves(logits)
    pixels = target[0].numel()
    ours = OhemCrossEntropyLoss(min_kept=pixels, class_weights=weights)(x1, target)
    if (target == IGNORE).all():
        assert ours.item() == 0.0
        return
    ref = F.cross_entropy(x2, target, weight=weights, ignore_index=IGNORE)
    _close(ours, ref, atol=1e-12)
    _close(_grad(ours, x1), _grad(ref, x2), atol=1e-12)


def test_ohem_keeps_hard_pixels_and_at_least_min_kept() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 16, 16, generator=generator, dtype=D) * 3
    target = torch.randint(0, 4, (2, 16, 16), generator=generator)
    p_t = torch.softmax(logits, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    for thresh, min_kept in ((0.7, 0), (0.7, 200), (0.0, 50), (1.0, 0)):
        kept = (
            OhemCrossEntropyLoss(thresh=thresh, min_kept=min_kept, reduction="none")(logits, target)
            > 0
        )
        assert kept.sum() >= min(2 * min_kept, kept.numel())
        assert kept[p_t < thresh].all()
        if kept.sum() > (p_t < thresh).sum():  # the extra pixels are the hardest remaining
            assert p_t[kept].max() <= p_t[~kept].min()


# ------------------------------------------------------------------ published peer cases
# MONAI's tests/losses/test_dice_loss.py and test_tversky_loss.py (sigmoid=True cases; their
# expected values, checked there at rtol 1e-5 for dice and 1e-4 for Tversky). Without
# activation MONAI takes probabilities: logits 60 (2p - 1) give those to within exp(-60).
MONAI_X1 = [[[[1.0, -1.0], [-1.0, 1.0]]]]
MONAI_G1 = [[[[1.0, 0.0], [1.0, 1.0]]]]
MONAI_X2 = [[[[1.0, -1.0], [-1.0, 1.0]]], [[[1.0, -1.0], [-1.0, 1.0]]]]
MONAI_G2 = [[[[1.0, 1.0], [1.0, 1.0]]], [[[1.0, 0.0], [1.0, 0.0]]]]
MONAI_X3 = [[[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]
MONAI_T3 = [[0, 0, 0], [0, 0, 0]]  # filled below: to_onehot_y of [[1, 0, 0], [1, 1, 0]]


def _monai_one_hot(labels: list[list[int]], classes: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), classes).movedim(-1, 1).float()


MONAI_SIGMOID_CASES: list[tuple[str, dict[str, Any], Any, Any, Any]] = [
    ("dice", {"smooth": 1e-6}, MONAI_X1, MONAI_G1, 0.307576),
    ("dice", {"smooth": 1e-4}, MONAI_X2, MONAI_G2, 0.416657),
    ("dice", {"smooth": 1e-4}, MONAI_X3, [[1, 0, 0], [1, 1, 0]], 0.435050),
    (
        "dice",
        {"smooth": 1e-4, "reduction": "none"},
        MONAI_X3,
        [[1, 0, 0], [1, 1, 0]],
        [[0.296529, 0.415136], [0.599976, 0.428559]],
    ),
    ("jaccard", {"smooth": 0.5e-5}, MONAI_X1, MONAI_G1, 0.470451),  # MONAI: smooth_nr=dr=1e-5
    ("tversky", {"smooth": 1e-6}, MONAI_X1, MONAI_G1, 0.307576),
    ("tversky", {"smooth": 1e-4}, MONAI_X2, MONAI_G2, 0.416657),
    ("tversky", {"smooth": 1e-4}, MONAI_X3, [[1, 0, 0], [1, 1, 0]], 0.435050),
    ("tversky", {"smooth": 1e-4, "reduction": "sum"}, MONAI_X3, [[1, 0, 0], [1, 1, 0]], 1.74013),
    ("tversky", {"smooth": 1e-6, "alpha": 0.3, "beta": 0.7}, MONAI_X1, MONAI_G1, 0.3589),
    ("tversky", {"smooth": 1e-6, "alpha": 0.7, "beta": 0.3}, MONAI_X1, MONAI_G1, 0.247366),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "logits", "target", "expected"),
    MONAI_SIGMOID_CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(MONAI_SIGMOID_CASES)],
)
def test_region_losses_reproduce_monai_published_sigmoid_cases(
    name: str, kwargs: dict[str, Any], logits: Any, target: Any, expected: Any
) -> None:
    x = torch.tensor(logits)
    if isinstance(target[0][0], int):  # MONAI's to_onehot_y: class indices -> masks
        masks, mode = _monai_one_hot(target, x.shape[1]), "multilabel"
    else:
        masks, mode = torch.tensor(target), "binary"
    value = get_loss(name, mode=mode, **kwargs)(x, masks)
    torch.testing.assert_close(value, torch.tensor(expected), rtol=1e-4, atol=1e-6)


def test_dice_reproduces_monai_published_case_without_background() -> None:
    """MONAI: ``include_background=False, to_onehot_y=True``, smooth 0, probabilities given
    directly: every foreground channel is predicted exactly, so the loss is 0, where the
    background channel alone would not be."""
    p = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])
    masks = _monai_one_hot([[0, 0, 1], [0, 1, 0]], 2)
    logits = 60.0 * (2 * p.to(D) - 1)
    for name in REGION:
        loss = get_loss(name, mode="multilabel", smooth=0.0, include_background=False)
        assert loss(logits, masks).item() == pytest.approx(0.0, abs=1e-12)


def test_jaccard_reproduces_smp_published_multilabel_cases() -> None:
    """smp's tests/test_losses.py, test_multilabel_jaccard_loss (one image, every channel
    present): ideal 0, worst 1, and 1 - 1/3."""
    p = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]]], dtype=D)
    loss = JaccardLoss(mode="multilabel", smooth=0.0)
    assert loss(60 * (2 * p - 1), p).item() == pytest.approx(0.0, abs=1e-12)
    assert loss(60 * (2 * p - 1), 1 - p).item() == pytest.approx(1.0, abs=1e-12)
    predicted = torch.tensor([[[0.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0]]], dtype=D)
    masks = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]]], dtype=D)
    assert loss(60 * (2 * predicted - 1), masks).item() == pytest.approx(2 / 3, abs=1e-12)


def test_dice_reproduces_smp_published_binary_cases_where_a_class_is_present() -> None:
    """smp's test_dice_loss_binary (probabilities, smooth 0): ideal 0, a miss 1, with the
    foreground present; where the target is empty smp scores 0 (it drops absent classes)
    and ours, per sample as MONAI, scores the false positives."""
    dice = DiceLoss(mode="binary", smooth=0.0)
    for p, g, expected in (
        ([1.0, 1.0, 1.0], [1, 1, 1], 0.0),
        ([1.0, 0.0, 1.0], [1, 0, 1], 0.0),
        ([1.0, 0.0, 1.0], [0, 1, 0], 1.0),
        ([0.0, 0.0, 0.0], [1, 1, 1], 1.0),
    ):
        logits = 60 * (2 * torch.tensor(p, dtype=D) - 1).view(1, 1, 1, -1)
        assert dice(logits, torch.tensor(g).view(1, 1, -1)).item() == pytest.approx(expected)
    absent = dice(60 * torch.ones(1, 1, 1, 3, dtype=D), torch.zeros(1, 1, 3))
    assert absent.item() == pytest.approx(1.0)  # smp: 0.0


def test_focal_tversky_equals_smp_on_one_image_and_differs_on_a_batch() -> None:
    """smp's ``TverskyLoss(mode="binary", gamma=g)`` is ``mean(1 - TI) ** g`` over the batch
    pooled per class; ours raises each (sample, class) loss to ``g``. For one image (one
    term) the two are the same number; for two images they differ."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 1, 6, 6, generator=generator, dtype=D)
    masks = (torch.rand(2, 6, 6, generator=generator) > 0.4).to(D)

    def smp_formula(x: torch.Tensor, g: torch.Tensor, gamma: float) -> torch.Tensor:
        p = torch.sigmoid(x).reshape(-1)
        t = g.reshape(-1)
        tp, fp, fn = (p * t).sum(), (p * (1 - t)).sum(), ((1 - p) * t).sum()
        score = tp / (tp + 0.3 * fp + 0.7 * fn).clamp_min(1e-7)
        return (1 - score).mean() ** gamma

    ours = TverskyLoss(mode="binary", alpha=0.3, beta=0.7, smooth=0.0, gamma=0.75)
    _close(ours(logits[:1], masks[:1]), smp_formula(logits[:1], masks[:1], 0.75), atol=1e-12)
    assert abs(ours(logits, masks).item() - smp_formula(logits, masks, 0.75).item()) > 1e-4


# ------------------------------------------------------------------ what the loss takes
@pytest.mark.parametrize("name", MODAL)
def test_target_kind_follows_the_mode(name: str) -> None:
    """The contract with models: ``target`` (and ``expects``) on the instance narrow the
    registry entry; multiclass takes class indices, the sigmoid modes dense masks."""
    assert get_entry(name).target == "class_indices"  # the registry's default: multiclass
    for mode, kind in (
        ("multiclass", "class_indices"),
        ("multilabel", "dense"),
        ("binary", "dense"),
    ):
        loss = get_loss(name, mode=mode)
        assert (loss.expects, loss.target) == ("logits", kind)
        assert loss.mode == mode
    with pytest.raises(AttributeError):
        get_loss(name).target = "dense"  # read-only: the mode decides


@pytest.mark.parametrize("name", MODAL)
def test_one_softmax_channel_points_at_binary_mode(name: str) -> None:
    """Issue 14 item 1's follow-up: the error names mode="binary" as well as num_classes=2,
    and what it suggests works: the same one-channel logits train in binary mode."""
    one_channel = torch.randn(2, 1, 4, 4, requires_grad=True)
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[:, :2] = 1
    with pytest.raises(
        ValueError,
        match=rf'{name}: the logits have 1 channel.*mode="binary".*'
        r"num_classes=2",
    ):
        get_loss(name)(one_channel, labels)
    value = get_loss(name, mode="binary")(one_channel, labels)
    assert _grad(value, one_channel).abs().sum() > 0


@pytest.mark.parametrize("name", ["combined_segmentation", "ohem_cross_entropy"])
def test_one_softmax_channel_without_a_binary_mode_points_at_the_losses_that_have_one(
    name: str,
) -> None:
    with pytest.raises(ValueError, match=r'num_classes=2.*a loss with mode="binary" \(dice, '):
        get_loss(name)(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))


# ------------------------------------------------------------------ bad inputs and arguments
BAD_MODE_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    (
        "binary with three channels",
        lambda: get_loss("dice", mode="binary")(torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4)),
        r'dice: mode="binary" takes logits with one channel \[B, 1, \.\.\.\], got 3 channels.*'
        r'for 3 independent masks use mode="multilabel", for 3 exclusive classes '
        r'mode="multiclass"',
    ),
    (
        "multilabel masks of the wrong shape",
        lambda: get_loss("jaccard", mode="multilabel")(
            torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4)
        ),
        r"jaccard: expected mask targets of shape \(2, 3, 4, 4\) \(prediction shape",
    ),
    (
        "binary masks of the wrong shape",
        lambda: get_loss("tversky", mode="binary")(torch.randn(2, 1, 4, 4), torch.zeros(2, 4, 5)),
        r"tversky: expected mask targets of shape \(2, 1, 4, 4\) or \(2, 4, 4\)",
    ),
    (
        "mask value 2",
        lambda: get_loss("focal_pixelwise", mode="multilabel")(
            torch.randn(2, 3, 4), torch.full((2, 3, 4), 2.0)
        ),
        r"focal_pixelwise: mask target value 2.0 is neither in \[0, 1\] nor ignore_index=255",
    ),
    (
        "mask value NaN",
        lambda: get_loss("dice", mode="binary")(
            torch.randn(1, 1, 2), torch.tensor([[0.0, float("nan")]])
        ),
        r"dice: mask target value nan is neither in \[0, 1\]",
    ),
    (
        "lovasz soft mask",
        lambda: get_loss("lovasz", mode="binary")(torch.randn(1, 1, 2), torch.tensor([[0.0, 0.5]])),
        r"lovasz: mask target value 0.5 is neither 0 or 1 nor ignore_index=255",
    ),
    (
        "class weights of the wrong length on masks",
        lambda: get_loss("dice", mode="multilabel", class_weights=[1.0, 2.0])(
            torch.randn(2, 3, 4), torch.zeros(2, 3, 4)
        ),
        r"dice: class weights of shape \(2,\) do not match the 3 classes",
    ),
    (
        "class weights of the wrong length on class indices",
        lambda: get_loss("tversky", class_weights=[1.0, 2.0])(
            torch.randn(2, 3, 4), torch.zeros(2, 4, dtype=torch.long)
        ),
        r"tversky: class weights of shape \(2,\) do not match the 3 classes",
    ),
    (
        "num_classes against binary logits",
        lambda: get_loss("dice", mode="binary", num_classes=2)(
            torch.randn(2, 1, 4), torch.zeros(2, 4)
        ),
        r"dice: num_classes=2 but the prediction has 1 classes",
    ),
    (
        "mask ignore_index beyond int64",
        lambda: get_loss("dice", mode="binary", ignore_index=2**63)(
            torch.randn(2, 1, 4), torch.zeros(2, 4, dtype=torch.long)
        ),
        r"dice: ignore_index=9223372036854775808 is outside the range",
    ),
    (
        "ohem label out of range",
        lambda: get_loss("ohem")(torch.randn(2, 3, 4), torch.full((2, 4), 3)),
        r"ohem_cross_entropy: target label 3 is neither a class in \[0, 3\)",
    ),
    (
        "binary without background",
        lambda: DiceLoss(mode="binary", include_background=False),
        r'dice: include_background=False has no channel to leave out in mode="binary"',
    ),
    (
        "an unknown mode built directly",
        lambda: LovaszLoss(mode="binarry"),  # type: ignore[arg-type]
        r"lovasz: mode must be one of 'multiclass', 'multilabel', 'binary', got 'binarry'",
    ),
    (
        "class weights that require grad",
        lambda: JaccardLoss(class_weights=torch.ones(3, requires_grad=True)),
        r"jaccard: class_weights must not require grad",
    ),
]


@pytest.mark.parametrize(
    ("case", "call", "message"), BAD_MODE_INPUTS, ids=[c[0] for c in BAD_MODE_INPUTS]
)
def test_bad_inputs_name_the_loss_and_what_was_expected(
    case: str, call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("dice", {"mode": "binarry"}, r"mode"),
        ("tversky", {"gamma": 0.0}, r"gamma"),
        ("tversky", {"gamma": -1.0}, r"gamma"),
        ("jaccard", {"class_weights": [1.0, -1.0]}, r"class_weights"),
        ("dice", {"include_background": "no"}, r"include_background"),
        ("ohem_cross_entropy", {"thresh": 1.5}, r"thresh"),
        ("ohem_cross_entropy", {"min_kept": -1}, r"min_kept"),
        ("ohem_cross_entropy", {"min_kept": 0.5}, r"min_kept"),
    ],
)
def test_bad_arguments_are_config_errors(name: str, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LossConfigError, match=message):
        get_loss(name, **kwargs)


# ------------------------------------------------------------------ registry contract
def test_dice_and_jaccard_inherit_one_constructor_and_tversky_declares_its_own() -> None:
    """One constructor for the region losses; the schema (and the IDE) read its signature.
    Tversky's differs (``alpha``, ``beta``, ``gamma``), so it declares its own."""
    assert DiceLoss.__init__ is JaccardLoss.__init__
    assert "__init__" not in vars(DiceLoss) and "__init__" not in vars(JaccardLoss)
    assert "__init__" in vars(TverskyLoss)
    shared = [
        "num_classes", "mode", "smooth", "class_weights", "include_background",
        "ignore_index", "reduction",
    ]  # fmt: skip
    for name in ("dice", "jaccard"):
        assert [p.name for p in get_entry(name).parameters] == shared
        assert list(inspect.signature(get_entry(name).loss_class).parameters) == shared
    tversky = [p.name for p in get_entry("tversky").parameters]
    assert set(tversky) == {*shared, "alpha", "beta", "gamma"}
    descriptions = {p.name: p.description for p in get_entry("jaccard").parameters}
    assert "intersection and the union" in descriptions["smooth"]  # Jaccard's own words
    schema = get_entry("dice").schema.model_json_schema()["properties"]
    assert schema["mode"]["enum"] == ["multiclass", "multilabel", "binary"]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("dice", {"mode": "binary", "class_weights": [2.0]}),
        ("jaccard", {"mode": "multilabel", "include_background": False, "smooth": 0.5}),
        ("tversky", {"mode": "multilabel", "gamma": 0.75, "class_weights": [1.0, 0.5]}),
        ("lovasz", {"mode": "binary", "per_image": True}),
        ("focal_pixelwise", {"mode": "multilabel", "alpha": [1.0, 2.0]}),
        ("ohem_cross_entropy", {"thresh": 0.5, "min_kept": 64, "class_weights": [1.0, 3.0]}),
    ],
)
def test_specs_of_directly_built_losses_rebuild_them(name: str, kwargs: dict[str, Any]) -> None:
    """A loss built directly (no registry record) is read back from its attributes."""
    cls = get_entry(name).loss_class
    loss = cls(**{k: torch.tensor(v) if k == "class_weights" else v for k, v in kwargs.items()})
    assert "_autotimm_loss_arguments" not in vars(loss)  # nothing recorded: read from attributes
    spec = LossSpec.of(loss)
    assert spec is not None
    rebuilt = spec.build()
    assert type(rebuilt) is cls
    for key, value in kwargs.items():
        got = getattr(rebuilt, key)
        if isinstance(got, torch.Tensor):
            assert torch.equal(got, torch.tensor(value)), key
        else:
            assert got == value, key
    assert getattr(rebuilt, "target", None) == getattr(loss, "target", None)


def test_sigmoid_focal_core_takes_empty_inputs_with_a_weight() -> None:
    """The focal core that the sigmoid modes share with ``focal`` once failed to reshape an
    empty input when a weight was given (``[0, C]`` logits with index targets, or an empty
    batch of multi-label masks with class weights)."""
    from autotimm.losses.functional import sigmoid_focal_loss_with_indices

    logits = torch.zeros(0, 3, requires_grad=True)
    value = sigmoid_focal_loss_with_indices(logits, torch.zeros(0, dtype=torch.long))
    assert value.item() == 0.0 and _grad(value, logits).shape == (0, 3)


# ------------------------------------------------------------------ robustness of every mode
@dataclass(frozen=True)
class ModeCase:
    """A loss (registry name and arguments) and the kind of inputs its mode takes."""

    name: str
    kwargs: dict[str, Any]

    @property
    def mode(self) -> str:
        return str(self.kwargs.get("mode", "multiclass"))

    def inputs(
        self, *, scale: float, dtype: torch.dtype, nothing: bool, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        channels = 1 if self.mode == "binary" else 3
        leaf = torch.randn(2, channels, 4, 4, generator=generator) * scale
        if self.mode == "multiclass":
            target = torch.randint(0, channels, (2, 4, 4), generator=generator)
        elif self.mode == "binary":  # [B, H, W] masks
            target = (torch.rand(2, 4, 4, generator=generator) > 0.5).long()
        else:
            target = (torch.rand(2, channels, 4, 4, generator=generator) > 0.5).float()
        target[0, 0] = IGNORE
        if nothing:
            target.fill_(IGNORE)
        return leaf.to(dtype).requires_grad_(), target


MODE_CASES = {
    "dice-binary": ModeCase("dice", {"mode": "binary"}),
    "dice-multilabel-weights-no-background": ModeCase(
        "dice",
        {"mode": "multilabel", "class_weights": [0.5, 1.0, 2.0], "include_background": False},
    ),
    "dice-multiclass-weights-no-background": ModeCase(
        "dice", {"class_weights": [0.5, 1.0, 2.0], "include_background": False}
    ),
    "jaccard-binary": ModeCase("jaccard", {"mode": "binary", "smooth": 0.0}),
    "jaccard-multilabel": ModeCase("jaccard", {"mode": "multilabel"}),
    "tversky-binary-gamma-0.75": ModeCase("tversky", {"mode": "binary", "gamma": 0.75}),
    "tversky-multilabel-gamma-2": ModeCase(
        "tversky", {"mode": "multilabel", "gamma": 2.0, "alpha": 0.3, "beta": 0.7}
    ),
    "tversky-multiclass-gamma-0.5-smooth-0": ModeCase(
        "tversky", {"gamma": 0.5, "smooth": 0.0, "class_weights": [1.0, 2.0, 3.0]}
    ),
    "focal_pixelwise-binary": ModeCase("focal_pixelwise", {"mode": "binary", "gamma": 0.5}),
    "focal_pixelwise-multilabel-alpha": ModeCase(
        "focal_pixelwise", {"mode": "multilabel", "alpha": [1.0, 0.5, 2.0]}
    ),
    "lovasz-binary": ModeCase("lovasz", {"mode": "binary"}),
    "lovasz-multilabel-per-image": ModeCase("lovasz", {"mode": "multilabel", "per_image": True}),
    "ohem-min-kept": ModeCase("ohem_cross_entropy", {"min_kept": 8, "thresh": 0.5}),
}
CASE_IDS = sorted(MODE_CASES)


def _build(case: ModeCase, **overrides: Any) -> nn.Module:
    return get_loss(case.name, **{**case.kwargs, **overrides})


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_modes_finite_at_extreme_logits(case_id: str, scale: float) -> None:
    case = MODE_CASES[case_id]
    leaf, target = case.inputs(scale=scale, dtype=torch.float32, nothing=False)
    for reduction in ("mean", "sum", "none"):
        value = _build(case, reduction=reduction)(leaf, target)
        assert torch.isfinite(value).all(), (case_id, reduction, value)
        assert torch.isfinite(_grad(value.float(), leaf)).all(), (case_id, reduction)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_modes_nothing_to_learn_gives_zero_with_a_zero_gradient(case_id: str) -> None:
    case = MODE_CASES[case_id]
    leaf, target = case.inputs(scale=1.0, dtype=torch.float32, nothing=True)
    for reduction in ("mean", "sum"):
        value = _build(case, reduction=reduction)(leaf, target)
        assert value.shape == () and value.item() == 0.0, (case_id, reduction, value)
        grad = _grad(value, leaf)
        assert (grad == 0).all(), (case_id, reduction)


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("shape", [(0, 4, 4), (2, 0, 0)])
def test_modes_empty_batches_and_images(case_id: str, shape: tuple[int, int, int]) -> None:
    case = MODE_CASES[case_id]
    channels = 1 if case.mode == "binary" else 3
    logits = torch.randn(shape[0], channels, *shape[1:], requires_grad=True)
    if case.mode == "multilabel":
        target = torch.zeros(logits.shape)
    else:
        target = torch.zeros(shape, dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        value = _build(case, reduction=reduction)(logits, target)
        assert torch.isfinite(value).all(), (case_id, reduction)
        assert torch.isfinite(_grad(value, logits)).all()


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_modes_autocast_bfloat16(case_id: str, scale: float) -> None:
    case = MODE_CASES[case_id]
    leaf, target = case.inputs(scale=scale, dtype=torch.bfloat16, nothing=False)
    loss = _build(case)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(leaf, target)
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    grad = _grad(value, leaf)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()
    # the same values in float32 give the same loss: nothing was computed in bfloat16 inside
    torch.testing.assert_close(value, loss(leaf.detach().float(), target), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_modes_float16_inputs(case_id: str, scale: float) -> None:
    case = MODE_CASES[case_id]
    leaf, target = case.inputs(scale=scale, dtype=torch.float16, nothing=False)
    value = _build(case)(leaf, target)
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    grad = _grad(value, leaf)
    assert grad.dtype == torch.float16 and torch.isfinite(grad).all()


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_modes_nan_predictions_give_a_nan_loss(case_id: str) -> None:
    case = MODE_CASES[case_id]
    leaf, target = case.inputs(scale=1.0, dtype=torch.float32, nothing=False)
    nan = torch.full_like(leaf, float("nan"))
    for reduction in ("mean", "sum", "none"):
        assert torch.isnan(_build(case, reduction=reduction)(nan, target)).any(), reduction


@pytest.mark.slow
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_modes_torch_compile_fullgraph_matches_eager(case_id: str) -> None:
    # the region losses share one forward, which dynamo compiles once per configuration: start
    # from an empty cache so that earlier tests' configurations do not count to its limit (8)
    torch._dynamo.reset()
    case = MODE_CASES[case_id]
    loss = _build(case)
    compiled = torch.compile(loss, fullgraph=True)
    leaf, target = case.inputs(scale=1.0, dtype=torch.float32, nothing=False, seed=3)
    other = leaf.detach().clone().requires_grad_()
    expected, value = loss(leaf, target), compiled(other, target)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_grad(value, other), _grad(expected, leaf), rtol=1e-4, atol=1e-6)

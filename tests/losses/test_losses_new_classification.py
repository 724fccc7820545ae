"""The classification losses of issue 12 against their references, in float64, values and
gradients: ``asymmetric`` against timm's ``AsymmetricLossMultiLabel``, ``bce_with_logits``
(label smoothing, class indices) against timm's ``BinaryCrossEntropy``, ``softmax_focal``
against ``focal_pixelwise`` and cross entropy, ``poly1`` against torch's cross entropy and the
formula of Leng et al. 2022."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from timm.loss import AsymmetricLossMultiLabel, BinaryCrossEntropy

from autotimm.losses import (
    AsymmetricLoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    LossConfigError,
    Poly1Loss,
    SoftmaxFocalLoss,
    get_entry,
    get_loss,
)

SETTINGS = settings(max_examples=30, deadline=None)
D = torch.float64
reductions = st.sampled_from(["mean", "sum", "none"])


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-10, rtol: float = 1e-8) -> None:
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    torch.testing.assert_close(ours.to(D), ref.to(D), atol=atol, rtol=rtol)


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return grad


def _value_and_grad(
    loss_fn: object, logits: torch.Tensor, *args: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    leaf = logits.clone().requires_grad_()
    value = loss_fn(leaf, *args)  # type: ignore[operator]
    return value.detach(), _grad(value, leaf)


@contextlib.contextmanager
def _timm_in_float64() -> Iterator[None]:
    """timm's ``AsymmetricLossMultiLabel`` casts its inputs with ``.float()``; made the identity
    here, its own code computes in float64, an exact reference for ours."""
    original = torch.Tensor.float
    torch.Tensor.float = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    try:
        yield
    finally:
        torch.Tensor.float = original  # type: ignore[method-assign]


# ------------------------------------------------------------------ asymmetric
@st.composite
def multi_label_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` (float64, some beyond the eps bound) and multi-hot or soft targets."""
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    scale = draw(st.sampled_from([0.5, 3.0, 12.0]))
    logits = torch.randn(n, c, generator=generator, dtype=D) * scale
    target = torch.rand(n, c, generator=generator, dtype=D)
    if draw(st.booleans()):
        target = (target > 0.6).to(D)
    return logits, target


@SETTINGS
@given(
    problem=multi_label_problem(),
    gammas=st.tuples(
        st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0, 2.7]), st.sampled_from([0.0, 1.0, 0.5, 3.0])
    ),
    clip=st.sampled_from([None, 0.0, 0.05, 0.3]),
    eps=st.sampled_from([1e-8, 1e-4]),
    smoothing=st.sampled_from([0.0, 0.1]),
    weighted=st.booleans(),
    reduction=reductions,
)
def test_asymmetric_equals_timm(
    problem: tuple[torch.Tensor, torch.Tensor],
    gammas: tuple[float, float],
    clip: float | None,
    eps: float,
    smoothing: float,
    weighted: bool,
    reduction: str,
) -> None:
    logits, target = problem
    gamma_neg, gamma_pos = gammas
    weight = torch.rand(logits.shape[1], dtype=D) if weighted else None
    arguments = {"gamma_neg": gamma_neg, "gamma_pos": gamma_pos, "clip": clip, "eps": eps}
    ours = AsymmetricLoss(
        **arguments, label_smoothing=smoothing, weight=weight, reduction=reduction
    )
    theirs = AsymmetricLossMultiLabel(
        **arguments, smoothing=smoothing, weight=weight, reduction=reduction
    )
    value, grad = _value_and_grad(ours, logits, target)
    with _timm_in_float64():
        ref_value, ref_grad = _value_and_grad(theirs, logits, target)
    _close(value, ref_value, atol=1e-9)
    finite = torch.isfinite(ref_grad)  # timm's gradient is NaN where 1 - p_t = 0 and gamma < 1
    assert torch.isfinite(grad).all()
    _close(grad[finite], ref_grad[finite], atol=1e-9)
    if (gamma_neg >= 1 and gamma_pos >= 1) or gamma_neg == gamma_pos == 0:
        assert finite.all()


@pytest.mark.parametrize("dtype", [torch.bool, torch.long, torch.float32])
def test_asymmetric_binary_fast_path_equals_the_autograd_path(dtype: torch.dtype) -> None:
    """0/1 targets take the analytic kernel (in cache-sized steps, mixed here with steps of
    soft targets through a tiny step size); soft targets take autograd. Both are timm's."""
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 7, generator=generator) * 6
    hard = (torch.rand(50, 7, generator=generator) > 0.7).to(dtype)
    loss = AsymmetricLoss(reduction="none")
    value, grad = _value_and_grad(loss, logits, hard)
    with _timm_in_float64():
        ref_value, ref_grad = _value_and_grad(
            AsymmetricLossMultiLabel(reduction="none"), logits.double(), hard.double()
        )
    _close(value, ref_value, atol=1e-6, rtol=1e-5)
    _close(grad, ref_grad, atol=1e-6, rtol=1e-5)


def test_asymmetric_in_cache_sized_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    import autotimm.losses.functional._chunked as chunked

    monkeypatch.setattr(chunked, "_CHUNK", 5)
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(40, 3, generator=generator, dtype=D) * 8
    target = (torch.rand(40, 3, generator=generator, dtype=D) > 0.5).to(D)
    weight = torch.rand(3, dtype=D)
    for reduction in ("mean", "sum", "none"):
        ours = AsymmetricLoss(weight=weight, reduction=reduction)
        with _timm_in_float64():
            theirs = AsymmetricLossMultiLabel(weight=weight, reduction=reduction)
            expected = _value_and_grad(theirs, logits, target)
        for got, want in zip(_value_and_grad(ours, logits, target), expected, strict=True):
            _close(got, want, atol=1e-10)


def test_asymmetric_keeps_the_float32_tail_of_negatives() -> None:
    """Without clip, a negative with logit x costs p^4 min(softplus(x), -log eps): timm's
    float32 ``1 - sigmoid(x)`` misses it by more than 1e-3 from about x = 16; ours does not."""
    x = torch.tensor([[12.0, 14.0, 16.0, 17.0, 18.0]])
    y = torch.zeros_like(x)
    x64 = x.double()
    exact = F.softplus(x64).clamp_max(-torch.log(torch.tensor(1e-8, dtype=D)))
    exact = exact * torch.sigmoid(x64) ** 4
    ours = AsymmetricLoss(clip=None, reduction="none")(x, y)
    theirs = AsymmetricLossMultiLabel(clip=None, reduction="none")(x, y)
    assert ((ours.double() - exact).abs() / exact).max() < 1e-6
    assert ((theirs.double() - exact).abs() / exact)[0, 2:].min() > 1e-3


def test_asymmetric_gradient_stays_finite_where_timm_is_nan() -> None:
    """gamma < 1: a clipped negative (p < clip) and saturated logits have 1 - p_t = 0."""
    logits = torch.tensor([[-5.0, 3.0, -30.0, 40.0]])
    target = torch.tensor([[0.0, 1.0, 1.0, 1.0]])
    arguments = {"gamma_neg": 0.5, "gamma_pos": 0.5, "clip": 0.05}
    _, ours = _value_and_grad(AsymmetricLoss(**arguments, reduction="sum"), logits, target)
    _, theirs = _value_and_grad(
        AsymmetricLossMultiLabel(**arguments, reduction="sum"), logits, target
    )
    assert torch.isfinite(ours).all()
    assert torch.isnan(theirs).any()
    assert ours[0, 0] == 0  # clipped: no loss, no gradient
    finite = torch.isfinite(theirs)
    _close(ours[finite], theirs[finite], atol=1e-7)


@SETTINGS
@given(problem=multi_label_problem(), clip=st.sampled_from([None, 0.05]))
def test_asymmetric_law_bounds(
    problem: tuple[torch.Tensor, torch.Tensor], clip: float | None
) -> None:
    """0 <= loss <= -log(eps) per element, and with no focusing and no clip it is BCE
    capped at -log(eps)."""
    logits, target = problem
    eps = 1e-6
    loss = AsymmetricLoss(clip=clip, eps=eps, reduction="none")(logits, target)
    assert (loss >= 0).all() and (loss <= -torch.log(torch.tensor(eps, dtype=D)) + 1e-12).all()
    plain = AsymmetricLoss(gamma_neg=0, gamma_pos=0, clip=None, eps=eps, reduction="none")
    cap = -torch.log(torch.tensor(eps, dtype=D))
    expected = torch.lerp(
        F.softplus(logits).clamp_max(cap), F.softplus(-logits).clamp_max(cap), target
    )
    _close(plain(logits, target), expected)


def test_asymmetric_arguments_are_validated() -> None:
    for bad in ({"eps": 0.0}, {"eps": 1.0}, {"clip": 1.5}, {"gamma_neg": -1.0}):
        with pytest.raises(LossConfigError, match=next(iter(bad))):
            get_loss("asymmetric", **bad)
    with pytest.raises(ValueError, match=r"asymmetric: target value 2.0 is outside"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.full((2, 3), 2.0))
    with pytest.raises(ValueError, match=r"asymmetric: the target must have the prediction's"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"asymmetric: weight of shape \(4,\) does not"):
        AsymmetricLoss(weight=torch.ones(4))(torch.zeros(2, 3), torch.zeros(2, 3))


# ------------------------------------------------------------------ bce_with_logits, timm's way
@st.composite
def bce_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` with class indices ``[N]``, dense 0/1 or dense soft targets."""
    n, c = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(n, c, generator=generator, dtype=D) * 3
    kind = draw(st.sampled_from(["indices", "hard", "soft"]))
    if kind == "indices":
        return logits, torch.randint(0, c, (n,), generator=generator)
    target = torch.rand(n, c, generator=generator, dtype=D)
    return logits, (target > 0.5).to(D) if kind == "hard" else target


@SETTINGS
@given(
    problem=bce_problem(),
    smoothing=st.sampled_from([0.0, 0.1, 0.3]),
    threshold=st.sampled_from([None, 0.2, 0.5]),
    smooth_dense=st.booleans(),
    options=st.integers(0, 3),
    reduction=st.sampled_from(["mean", "sum"]),
)
def test_bce_with_logits_equals_timm_binary_cross_entropy(
    problem: tuple[torch.Tensor, torch.Tensor],
    smoothing: float,
    threshold: float | None,
    smooth_dense: bool,
    options: int,
    reduction: str,
) -> None:
    logits, target = problem
    classes = logits.shape[1]
    weight = torch.rand(classes, dtype=D) if options & 1 else None
    pos_weight = torch.rand(classes, dtype=D) * 3 if options & 2 else None
    ours = BCEWithLogitsLoss(
        label_smoothing=smoothing,
        target_threshold=threshold,
        smooth_dense=smooth_dense,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
    )
    theirs = BinaryCrossEntropy(
        smoothing=smoothing,
        target_threshold=threshold,
        smooth_dense=smooth_dense,
        weight=weight,
        pos_weight=pos_weight,
        reduction=reduction,
    )
    value, grad = _value_and_grad(ours, logits, target)
    ref_value, ref_grad = _value_and_grad(theirs, logits, target)
    _close(value, ref_value)
    _close(grad, ref_grad)


def test_bce_with_logits_class_indices_are_one_hot_rows() -> None:
    logits = torch.randn(5, 4, 3, dtype=D)  # [N, C, d]: indices [N, d] along dimension 1
    labels = torch.randint(0, 4, (5, 3))
    one_hot = F.one_hot(labels, 4).movedim(-1, 1).to(D)
    plain = BCEWithLogitsLoss(reduction="none")
    _close(
        plain(logits, labels), F.binary_cross_entropy_with_logits(logits, one_hot, reduction="none")
    )
    smoothed = BCEWithLogitsLoss(label_smoothing=0.2, reduction="none")(logits, labels)
    soft = one_hot * (1 - 0.2) + 0.2 / 4
    _close(smoothed, F.binary_cross_entropy_with_logits(logits, soft, reduction="none"))
    # dense targets are not smoothed unless smooth_dense: mixup has done it already
    dense = BCEWithLogitsLoss(label_smoothing=0.2, reduction="none")(logits, one_hot)
    _close(dense, plain(logits, labels))


def test_bce_with_logits_says_once_when_its_label_smoothing_has_nothing_to_smooth() -> None:
    """Dense targets (as a model one-hot encodes them) are not smoothed: a warning, not silence."""
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
    dense = F.one_hot(labels, 3).float()
    loss = BCEWithLogitsLoss(label_smoothing=0.1)
    with pytest.warns(UserWarning, match=r"label_smoothing=0\.1 smooths class-index targets only"):
        loss(logits, dense)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss(logits, dense)  # once per loss
        BCEWithLogitsLoss(label_smoothing=0.1)(logits, labels)  # class indices: smoothed
        BCEWithLogitsLoss(label_smoothing=0.1, smooth_dense=True)(logits, dense)
        BCEWithLogitsLoss()(logits, dense)


def test_a_classifier_with_smoothed_bce_warns_and_its_own_label_smoothing_smooths() -> None:
    from autotimm import ImageClassifier

    logits, labels = torch.randn(2, 4), torch.tensor([0, 3])
    spec = {"name": "bce_with_logits", "params": {"label_smoothing": 0.1}}
    model = ImageClassifier("resnet10t", num_classes=4, loss_fn=spec, pretrained=False)
    with pytest.warns(UserWarning, match="set the model's label_smoothing"):
        model.compute_loss(logits, labels)
    # the model's label_smoothing is timm's smoothing of one-hot targets, as the loss's own
    smoothing = ImageClassifier(
        "resnet10t", num_classes=4, loss_fn="bce_with_logits", label_smoothing=0.1,
        pretrained=False,
    )
    _, mixed = smoothing.mix_batch(torch.zeros(2, 3, 32, 32), labels)
    expected = BCEWithLogitsLoss(label_smoothing=0.1)(logits, labels)
    torch.testing.assert_close(smoothing.compute_loss(logits, mixed)[0], expected)


def test_bce_with_logits_index_target_errors() -> None:
    logits = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"bce_with_logits: target label 3 is neither a class"):
        BCEWithLogitsLoss()(logits, torch.tensor([0, 1, 3, 2]))
    with pytest.raises(ValueError, match=r"bce_with_logits: num_classes=5 but the prediction"):
        BCEWithLogitsLoss(num_classes=5)(logits, torch.tensor([0, 1, 2, 2]))
    with pytest.raises(ValueError, match=r"float targets of shape \(4,\) look like class indices"):
        BCEWithLogitsLoss()(logits, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"expected class-index targets of shape \(4,\)"):
        BCEWithLogitsLoss()(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"pos_weight of shape \(2,\) does not broadcast"):
        BCEWithLogitsLoss(pos_weight=torch.ones(2))(logits, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(LossConfigError, match="target_threshold"):
        get_loss("bce_with_logits", target_threshold=1.5)


# ------------------------------------------------------------------ softmax_focal
@st.composite
def index_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``[N, C]`` (float64, ``C >= 2``) and class indices with some -100 (ignored)."""
    n, c = draw(st.integers(1, 7)), draw(st.integers(2, 5))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(n, c, generator=generator, dtype=D) * draw(st.sampled_from([0.3, 3.0]))
    target = torch.randint(0, c, (n,), generator=generator)
    ignored = torch.rand(n, generator=generator) < draw(st.sampled_from([0.0, 0.3, 1.0]))
    return logits, target.masked_fill(ignored, -100)


@SETTINGS
@given(
    problem=index_problem(),
    gamma=st.sampled_from([0.0, 0.5, 2.0, 3.3]),
    alpha=st.sampled_from(["none", "scalar", "per-class"]),
    reduction=reductions,
)
def test_softmax_focal_equals_focal_pixelwise_on_one_pixel(
    problem: tuple[torch.Tensor, torch.Tensor], gamma: float, alpha: str, reduction: str
) -> None:
    logits, target = problem
    classes = logits.shape[1]
    alpha_value = {"none": None, "scalar": 0.7, "per-class": [0.5 + i for i in range(classes)]}[
        alpha
    ]
    arguments = {"gamma": gamma, "alpha": alpha_value, "reduction": reduction}
    value, grad = _value_and_grad(SoftmaxFocalLoss(**arguments), logits, target)
    pixelwise = get_loss("focal_pixelwise", **arguments, ignore_index=-100)
    pixel_value, pixel_grad = _value_and_grad(
        pixelwise, logits[:, :, None, None], target[:, None, None]
    )
    if reduction == "none":
        pixel_value = pixel_value[:, 0, 0]
    # one function: equal but for the last bits of log_softmax on the two memory layouts
    _close(value, pixel_value, atol=1e-14, rtol=1e-13)
    _close(grad, pixel_grad[:, :, 0, 0], atol=1e-14, rtol=1e-13)
    # the textbook formula: -w_y (1 - p_y)^gamma log p_y over the kept samples
    valid = target != -100
    safe = target.clamp_min(0)
    log_p = logits.log_softmax(1).gather(1, safe[:, None])[:, 0]
    weights = {"none": 1.0, "scalar": 0.7}.get(alpha)
    w = torch.tensor(alpha_value, dtype=D)[safe] if weights is None else weights
    per_sample = torch.where(valid, -w * (1 - log_p.exp()) ** gamma * log_p, 0.0)
    expected = {"none": per_sample, "sum": per_sample.sum()}.get(
        reduction, per_sample.sum() / valid.sum().clamp_min(1)
    )
    _close(value, expected)


@SETTINGS
@given(problem=index_problem(), reduction=reductions)
def test_softmax_focal_gamma_zero_is_cross_entropy(
    problem: tuple[torch.Tensor, torch.Tensor], reduction: str
) -> None:
    logits, target = problem
    loss = SoftmaxFocalLoss(gamma=0.0, reduction=reduction)
    value, grad = _value_and_grad(loss, logits, target)
    ref_value, ref_grad = _value_and_grad(
        lambda x, t: F.cross_entropy(x, t, ignore_index=-100, reduction=reduction), logits, target
    )
    if reduction == "mean" and (target == -100).all():
        ref_value, ref_grad = torch.zeros((), dtype=D), torch.zeros_like(ref_grad)  # not NaN
    if reduction == "none":
        ref_value = torch.where(target == -100, 0.0, ref_value)
    _close(value, ref_value)
    _close(grad, ref_grad)


def test_softmax_focal_errors() -> None:
    with pytest.raises(ValueError, match=r"softmax_focal: target label 4 is neither"):
        SoftmaxFocalLoss()(torch.zeros(3, 4), torch.tensor([0, 4, 1]))
    with pytest.raises(ValueError, match=r"softmax_focal: class weights of shape \(2,\)"):
        SoftmaxFocalLoss(alpha=[1.0, 2.0])(torch.zeros(3, 4), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"softmax_focal: the logits have 1 channel"):
        SoftmaxFocalLoss()(torch.zeros(3, 1), torch.tensor([0, 0, 0]))
    with pytest.raises(LossConfigError, match="gamma"):
        get_loss("softmax_focal", gamma=-1)


# ------------------------------------------------------------------ poly1
@SETTINGS
@given(
    problem=index_problem(),
    smoothing=st.sampled_from([0.0, 0.1]),
    weighted=st.booleans(),
    probabilities=st.booleans(),
    reduction=reductions,
)
def test_poly1_with_epsilon_zero_is_torch_cross_entropy(
    problem: tuple[torch.Tensor, torch.Tensor],
    smoothing: float,
    weighted: bool,
    probabilities: bool,
    reduction: str,
) -> None:
    logits, target = problem
    classes = logits.shape[1]
    weight = torch.rand(classes, dtype=D) + 0.1 if weighted else None
    if probabilities:
        target = torch.rand(logits.shape, dtype=D).softmax(1)
    elif (target == -100).all() and reduction == "mean":
        target = target.clamp_min(0)  # torch's 0/0 is NaN; ours is 0 (tested elsewhere)
    torch_ce = torch.nn.CrossEntropyLoss(
        weight=weight, ignore_index=-100, label_smoothing=smoothing, reduction=reduction
    )
    ours = Poly1Loss(epsilon=0.0, weight=weight, label_smoothing=smoothing, reduction=reduction)
    value, grad = _value_and_grad(ours, logits, target)
    ref_value, ref_grad = _value_and_grad(torch_ce, logits, target)
    _close(value, ref_value)
    _close(grad, ref_grad)


@SETTINGS
@given(
    problem=index_problem(),
    epsilon=st.sampled_from([-1.0, 1.0, 2.0]),
    smoothing=st.sampled_from([0.0, 0.2]),
    reduction=reductions,
)
def test_poly1_equals_the_papers_formula(
    problem: tuple[torch.Tensor, torch.Tensor], epsilon: float, smoothing: float, reduction: str
) -> None:
    """Leng et al. 2022, appendix code: ``CE + epsilon * sum(smooth_labels * (1 - softmax))``
    (``pt = sum(labels * softmax)`` without smoothing), per non-ignored sample."""
    logits, target = problem
    classes = logits.shape[1]
    valid = target != -100
    safe = target.clamp_min(0)
    smooth_labels = F.one_hot(safe, classes).to(D) * (1 - smoothing) + smoothing / classes

    def papers(x: torch.Tensor) -> torch.Tensor:
        one_minus_pt = (smooth_labels * (1 - x.softmax(1))).sum(1)
        ce = F.cross_entropy(x, safe, label_smoothing=smoothing, reduction="none")
        per_sample = torch.where(valid, ce + epsilon * one_minus_pt, 0.0)
        return {"none": per_sample, "sum": per_sample.sum()}.get(
            reduction, per_sample.sum() / valid.sum().clamp_min(1)
        )

    loss = Poly1Loss(epsilon=epsilon, label_smoothing=smoothing, reduction=reduction)
    value, grad = _value_and_grad(loss, logits, target)
    ref_value, ref_grad = _value_and_grad(lambda x, _: papers(x), logits, target)
    _close(value, ref_value)
    _close(grad, ref_grad)
    if reduction == "none":  # the law: poly1 - CE = epsilon (1 - p_t) >= 0 for epsilon >= 0
        ce = CrossEntropyLoss(label_smoothing=smoothing, reduction="none")(logits, target)
        extra = (value - ce) / epsilon
        assert (extra >= -1e-12).all() and (extra <= 1 + 1e-12).all()


def test_poly1_errors_and_bounds() -> None:
    with pytest.raises(LossConfigError, match="epsilon"):
        get_loss("poly1", epsilon=-1.5)
    with pytest.raises(ValueError, match=r"poly1: target label 3 is neither"):
        Poly1Loss()(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match=r"poly1: float targets of shape \(2,\) look like"):
        Poly1Loss()(torch.zeros(2, 3), torch.tensor([0.0, 2.0]))


# ------------------------------------------------------------------ the registry entries
def test_new_classification_losses_are_registered_with_their_metadata() -> None:
    expected = {
        "asymmetric": ("dense", AsymmetricLoss),
        "softmax_focal": ("class_indices", SoftmaxFocalLoss),
        "poly1": ("class_indices", Poly1Loss),
        "bce_with_logits": ("dense", BCEWithLogitsLoss),
    }
    for name, (target, cls) in expected.items():
        entry = get_entry(name)
        assert entry.loss_class is cls and "classification" in entry.tasks
        assert entry.expects == "logits" and entry.target == target
    parameters = {p.name for p in get_entry("bce_with_logits").parameters}
    assert {"label_smoothing", "target_threshold", "smooth_dense"} <= parameters


@SETTINGS
@given(problem=index_problem(), gammas=st.tuples(st.floats(0, 4), st.floats(0, 4)))
def test_softmax_focal_law_at_most_cross_entropy_and_decreasing_in_gamma(
    problem: tuple[torch.Tensor, torch.Tensor], gammas: tuple[float, float]
) -> None:
    """(1 - p_t)^gamma <= 1: the focal loss of a sample is at most its cross entropy, and
    smaller for a larger gamma."""
    logits, target = problem
    low, high = sorted(gammas)
    ce = SoftmaxFocalLoss(gamma=0.0, reduction="none")(logits, target)
    focal_low = SoftmaxFocalLoss(gamma=low, reduction="none")(logits, target)
    focal_high = SoftmaxFocalLoss(gamma=high, reduction="none")(logits, target)
    assert (focal_high <= focal_low + 1e-12).all() and (focal_low <= ce + 1e-12).all()
    assert (focal_high >= 0).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_asymmetric_soft_targets_at_extreme_logits_are_finite(
    smoothing: float, scale: float
) -> None:
    """Soft targets (mixup) and label smoothing take the autograd path: finite there too,
    for exponents below 1 as well."""
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 4, generator=generator) * scale).requires_grad_()
    target = torch.rand(6, 4, generator=generator)
    target[0] = torch.tensor([0.0, 1.0, 0.0, 1.0])
    for gammas in ((4.0, 1.0), (0.5, 0.3)):
        loss = AsymmetricLoss(
            gamma_neg=gammas[0], gamma_pos=gammas[1], label_smoothing=smoothing, reduction="sum"
        )(logits, target)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all()

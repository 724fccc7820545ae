"""Classification losses against torch.nn (float64 values and gradients) and textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autotimm.losses import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    MSELoss,
    NLLLoss,
    get_entry,
    get_loss,
)

SETTINGS = settings(max_examples=30, deadline=None)
D = torch.float64


def _close(ours: torch.Tensor, ref: torch.Tensor, atol: float = 1e-10) -> None:
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours.to(D), ref.to(D), atol=atol, rtol=1e-8)


def _grads(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.sum(), leaf)
    return grad


@st.composite
def class_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Logits [N, C, *extra] (float64), integer targets with some ignore_index=-100 entries."""
    n = draw(st.integers(1, 6))
    c = draw(st.integers(1, 5))
    extra = draw(st.lists(st.integers(1, 3), max_size=2))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, *extra, generator=generator, dtype=D) * draw(
        st.sampled_from([0.1, 1.0, 5.0])
    )
    target = torch.randint(0, c, (n, *extra), generator=generator)
    ignore = torch.rand(target.shape, generator=generator) < draw(st.sampled_from([0, 0.3, 0.9]))
    return logits, target.masked_fill(ignore, -100), c


reductions = st.sampled_from(["mean", "sum", "none"])


@SETTINGS
@given(
    problem=class_problem(),
    reduction=reductions,
    smoothing=st.sampled_from([0.0, 0.1, 0.7]),
    weighted=st.booleans(),
)
def test_cross_entropy_equals_torch(
    problem: tuple[torch.Tensor, torch.Tensor, int],
    reduction: str,
    smoothing: float,
    weighted: bool,
) -> None:
    logits, target, c = problem
    weight = torch.rand(c, dtype=D) + 0.1 if weighted else None
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = CrossEntropyLoss(
        weight=weight, label_smoothing=smoothing, reduction=reduction, num_classes=c
    )(x1, target)
    ref = nn.CrossEntropyLoss(weight=weight, label_smoothing=smoothing, reduction=reduction)(
        x2, target
    )
    if (target == -100).all() and reduction == "mean":  # torch: NaN; ours: 0 with zero grad
        assert ours.item() == 0.0
        assert torch.equal(_grads(ours, x1), torch.zeros_like(logits))
        return
    _close(ours, ref)
    _close(_grads(ours, x1), _grads(ref, x2))


def test_cross_entropy_textbook_formula() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 0.0]], dtype=D)
    target = torch.tensor([0, 2])
    expected = -(torch.log_softmax(logits, 1)[[0, 1], [0, 2]]).mean()
    assert CrossEntropyLoss()(logits, target).item() == pytest.approx(expected.item())
    assert CrossEntropyLoss()(logits[1], target[1]).item() == pytest.approx(math.log(3))


@SETTINGS
@given(problem=class_problem(), reduction=reductions, weighted=st.booleans())
def test_cross_entropy_probability_targets_equal_torch(
    problem: tuple[torch.Tensor, torch.Tensor, int], reduction: str, weighted: bool
) -> None:
    logits, _, c = problem
    probs = torch.softmax(torch.randn_like(logits), 1)
    weight = torch.rand(c, dtype=D) + 0.1 if weighted else None
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = CrossEntropyLoss(weight=weight, label_smoothing=0.1, reduction=reduction)(x1, probs)
    ref = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1, reduction=reduction)(x2, probs)
    _close(ours, ref)
    _close(_grads(ours, x1), _grads(ref, x2))


@SETTINGS
@given(problem=class_problem(), reduction=reductions, weighted=st.booleans())
def test_nll_equals_torch(
    problem: tuple[torch.Tensor, torch.Tensor, int], reduction: str, weighted: bool
) -> None:
    logits, target, c = problem
    weight = torch.rand(c, dtype=D) + 0.1 if weighted else None
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = NLLLoss(weight=weight, reduction=reduction)(torch.log_softmax(x1, 1), target)
    ref = nn.NLLLoss(weight=weight, reduction=reduction)(torch.log_softmax(x2, 1), target)
    if (target == -100).all() and reduction == "mean":
        assert ours.item() == 0.0
        assert torch.isfinite(_grads(ours, x1)).all()
        return
    _close(ours, ref)
    _close(_grads(ours, x1), _grads(ref, x2))


@st.composite
def dense_problem(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    generator = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    logits = torch.randn(shape, generator=generator, dtype=D) * 3
    target = torch.rand(shape, generator=generator, dtype=D)
    if draw(st.booleans()):
        target = target.round()
    return logits, target


@SETTINGS
@given(problem=dense_problem(), reduction=reductions, options=st.integers(0, 3))
def test_bce_with_logits_equals_torch(
    problem: tuple[torch.Tensor, torch.Tensor], reduction: str, options: int
) -> None:
    logits, target = problem
    last = logits.shape[-1]
    weight = torch.rand(last, dtype=D) if options & 1 else None
    pos_weight = torch.rand(last, dtype=D) * 3 if options & 2 else None
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction=reduction)(x1, target)
    ref = nn.BCEWithLogitsLoss(weight=weight, pos_weight=pos_weight, reduction=reduction)(
        x2, target
    )
    _close(ours, ref)
    _close(_grads(ours, x1), _grads(ref, x2))


@SETTINGS
@given(problem=dense_problem(), reduction=reductions, weighted=st.booleans())
def test_bce_on_probabilities_equals_torch_and_formula(
    problem: tuple[torch.Tensor, torch.Tensor], reduction: str, weighted: bool
) -> None:
    logits, target = problem
    weight = torch.rand(logits.shape[-1], dtype=D) if weighted else None
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = BCELoss(weight=weight, reduction=reduction)(torch.sigmoid(x1), target)
    ref = nn.BCELoss(weight=weight, reduction=reduction)(torch.sigmoid(x2), target)
    _close(ours, ref)
    _close(_grads(ours, x1), _grads(ref, x2))
    p = torch.sigmoid(logits)
    textbook = -(target * p.log() + (1 - target) * (1 - p).log())
    if weight is not None:
        textbook = textbook * weight
    expected = {"none": textbook, "sum": textbook.sum(), "mean": textbook.mean()}[reduction]
    _close(ours, expected, atol=1e-8)


@SETTINGS
@given(problem=dense_problem(), reduction=reductions)
def test_mse_equals_torch(problem: tuple[torch.Tensor, torch.Tensor], reduction: str) -> None:
    logits, target = problem
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    _close(MSELoss(reduction=reduction)(x1, target), F.mse_loss(x2, target, reduction=reduction))
    _close(
        _grads(MSELoss(reduction=reduction)(x1, target), x1),
        _grads(F.mse_loss(x2, target, reduction=reduction), x2),
    )


def test_registry_names_and_metadata() -> None:
    assert get_entry("ce").loss_class is CrossEntropyLoss
    assert get_entry("cross_entropy").aliases == ("ce",)
    assert get_entry("bce").expects == "probabilities" and get_entry("bce").target == "dense"
    assert get_entry("mse").expects == "probabilities" and get_entry("mse").target == "dense"
    assert get_entry("nll").expects == "log_probabilities"
    assert get_entry("bce_with_logits").target == "dense"
    for name in ("cross_entropy", "nll", "bce", "bce_with_logits", "mse"):
        assert get_entry(name).tasks[0] == "classification"
        assert "num_classes" in {p.name for p in get_entry(name).parameters}
    # the standard segmentation losses among them are registered for segmentation too
    for name in ("cross_entropy", "bce", "bce_with_logits"):
        assert get_entry(name).tasks == ("classification", "segmentation")
    built = get_loss("ce", weight=[1.0, 2.0, 3.0], ignore_index=3)
    assert isinstance(built, CrossEntropyLoss)
    assert torch.equal(built.weight, torch.tensor([1.0, 2.0, 3.0]))


def test_weights_move_with_the_module_and_are_in_the_state_dict() -> None:
    loss = CrossEntropyLoss(weight=torch.tensor([1.0, 2.0]))
    assert "weight" in loss.state_dict()
    assert loss.double().weight.dtype == torch.float64


def test_classification_validation_errors() -> None:
    logits = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"target label 7 .*\[0, 3\).*shape \(4, 3\)"):
        CrossEntropyLoss()(logits, torch.tensor([0, 1, 7, -100]))
    with pytest.raises(ValueError, match=r"target label -5 .*ignore_index=-100"):
        NLLLoss()(logits, torch.tensor([0, 1, -5, 2]))
    with pytest.raises(ValueError, match=r"num_classes=5 .* 3 classes.*\(4, 3\)"):
        CrossEntropyLoss(num_classes=5)(logits, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"shape \(4,\).*target shape \(5,\)"):
        CrossEntropyLoss()(logits, torch.tensor([0, 1, 2, 0, 1]))
    with pytest.raises(ValueError, match=r"class weights of shape \(2,\)"):
        CrossEntropyLoss(weight=torch.ones(2))(logits, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match=r"prediction's shape.*\(4, 3\).*\(4, 2\)"):
        BCEWithLogitsLoss()(logits, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"num_classes=2"):
        BCEWithLogitsLoss(num_classes=2)(logits, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"prediction value 1.5 is outside \[0.0, 1.0\]"):
        BCELoss()(torch.full((2, 2), 1.5), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"num_classes=4"):
        MSELoss(num_classes=4)(logits, torch.zeros(4, 3))


def test_uint8_targets_and_unbatched_input() -> None:
    logits = torch.randn(5, 4, 3, 3)
    target = torch.randint(0, 4, (5, 3, 3))
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(CrossEntropyLoss()(logits, target.to(torch.uint8)), expected)
    torch.testing.assert_close(
        NLLLoss()(torch.log_softmax(logits, 1), target.to(torch.int32)), expected
    )

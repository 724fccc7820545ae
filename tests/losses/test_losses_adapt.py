"""What a caller feeds a loss, what the loss takes, whether they fit, and the adaptation.

``autotimm.losses.adapt`` is shared by the models, the FCOS criterion and (soon) composite
losses; everything in it is read from the registry's metadata, so these tests use custom
registered losses as freely as built-in ones.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autotimm.losses import get_entry, get_loss, get_loss_registry, register_custom_loss
from autotimm.losses.adapt import (
    LossFeed,
    LossTakes,
    adapt_to_loss,
    class_weights_argument,
    fit_problem,
    fitting_losses,
    takes_of,
)

LABELS = LossFeed(task="classification", target="class_indices", prediction=("N", "C"))
MULTI_HOT = LossFeed(task="classification", target="dense", prediction=("N", "C"))
PIXELS = LossFeed(
    task="segmentation", target="class_indices", prediction=("B", "C", "H", "W"), ignore_index=255
)
MASKS = LossFeed(task="segmentation", target="dense", prediction=("K", "28", "28"))
BOXES = LossFeed(task="detection", target="boxes", prediction=("F", "4"))


def _takes(name: str) -> LossTakes | None:
    return takes_of(None, get_entry(name))


# --------------------------------------------------------------------------- adaptation
def test_adaptation_follows_what_the_loss_takes() -> None:
    logits = torch.randn(3, 4)
    labels = torch.tensor([0, 3, 1])
    one_hot = nn.functional.one_hot(labels, 4).float()

    pred, target = adapt_to_loss(LABELS, _takes("ce"), logits, labels)
    assert pred is logits and target is labels
    pred, target = adapt_to_loss(LABELS, _takes("bce"), logits, labels)  # probabilities, dense
    assert torch.allclose(pred, logits.sigmoid()) and torch.equal(target, one_hot)
    pred, target = adapt_to_loss(LABELS, _takes("nll"), logits, labels)  # log-probabilities
    assert torch.allclose(pred, logits.log_softmax(1)) and target is labels
    pred, target = adapt_to_loss(LABELS, _takes("mse"), logits, labels)
    assert torch.allclose(pred, logits.sigmoid()) and torch.equal(target, one_hot)
    pred, target = adapt_to_loss(MULTI_HOT, _takes("bce_with_logits"), logits, one_hot)
    assert pred is logits and torch.equal(target, one_hot)
    # undeclared (an unregistered instance without attributes): as fed
    assert adapt_to_loss(LABELS, None, logits, labels) == (logits, labels)


def test_probability_losses_on_class_indices_get_a_softmax_and_ignored_pixels_no_class() -> None:
    class ProbLoss(nn.Module):
        def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return probs.mean()

    logits = torch.randn(2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, 0, 0] = 255
    register_custom_loss("probs_idx", ProbLoss, expects="probabilities")
    register_custom_loss("dense_seg", type("DenseLoss", (ProbLoss,), {}), target="dense")
    pred, _ = adapt_to_loss(PIXELS, _takes("probs_idx"), logits, masks)
    assert torch.allclose(pred, logits.softmax(1))
    pred, target = adapt_to_loss(PIXELS, _takes("dense_seg"), logits, masks)
    assert pred is logits and target.shape == (2, 3, 4, 4)
    assert target[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]
    assert torch.equal(target[1].argmax(0), masks[1])


@settings(max_examples=60, deadline=None)
@given(
    classes=st.integers(1, 5),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_dense_targets_are_one_hot_along_the_class_dimension(
    classes: int, shape: list[int], seed: int
) -> None:
    """The law of the class-index to dense conversion, for any layout: every kept label is
    a one-hot vector at its class (one channel: 1 where the label is 1), every ignored label
    an all-zero vector, and nothing else changes."""
    generator = torch.Generator().manual_seed(seed)
    dims = ("N", "C", *[f"S{i}" for i in range(len(shape) - 1)])
    feed = LossFeed(task="segmentation", target="class_indices", prediction=dims, ignore_index=255)
    labels = torch.randint(0, max(classes, 2), shape, generator=generator)
    labels[torch.rand(shape, generator=generator) < 0.2] = 255
    logits = torch.randn(shape[0], classes, *shape[1:], generator=generator)
    _, dense = adapt_to_loss(feed, _takes("bce_with_logits"), logits, labels)
    assert dense.shape == logits.shape and dense.dtype == logits.dtype
    kept = labels != 255
    if classes == 1:
        assert torch.equal(dense[:, 0], ((labels == 1) & kept).float())
    else:
        assert torch.equal(dense.sum(1), kept.float())
        assert torch.equal(dense.argmax(1)[kept], labels[kept])


def test_labels_that_no_dense_target_can_hold_are_refused() -> None:
    with pytest.raises(ValueError, match=r"class index 4 .* in \[0, 3\) or ignore_index=255"):
        adapt_to_loss(PIXELS, _takes("bce"), torch.zeros(1, 3, 2, 2), torch.full((1, 2, 2), 4))
    one_channel = LossFeed(task="classification", target="class_indices", prediction=("N", "C"))
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        adapt_to_loss(one_channel, _takes("bce"), torch.zeros(2, 1), torch.tensor([1, 2]))


@settings(max_examples=40, deadline=None)
@given(classes=st.integers(1, 6), spatial=st.integers(0, 3))
def test_broadcast_class_weights_weigh_each_class_along_the_class_dimension(
    classes: int, spatial: int
) -> None:
    dims = ("N", "C", *[f"S{i}" for i in range(spatial)])
    feed = LossFeed(task="segmentation", target="dense", prediction=dims)
    weights = [float(c + 1) for c in range(classes)]
    shaped = torch.tensor(class_weights_argument(feed, weights, broadcast=True))
    expanded = torch.broadcast_to(shaped, (2, classes, *[3] * spatial))
    for c in range(classes):
        assert bool((expanded[:, c] == weights[c]).all())
    assert class_weights_argument(feed, weights, broadcast=False) == weights


# --------------------------------------------------------------------------- fit
@pytest.mark.parametrize(
    ("feed", "name", "reason"),
    [
        (PIXELS, "focal", r"last dimension \(\[\.\.\., C\]\).*dimension 1"),
        (PIXELS, "giou", "it takes boxes, not class indices"),
        (PIXELS, "fcos", "it takes structured inputs"),
        (BOXES, "dice", "it takes class indices, not boxes"),
        (MASKS, "cross_entropy", "targets are dense"),
        (MULTI_HOT, "nll", "targets are dense"),
    ],
)
def test_what_does_not_fit_says_why(feed: LossFeed, name: str, reason: str) -> None:
    entry = get_entry(name)
    problem = fit_problem(feed, takes_of(None, entry), forward=entry.loss_class.forward)
    assert problem is not None and re.search(reason, problem), problem


def test_one_channel_class_index_feeds_only_fit_dense_losses() -> None:
    feed = LossFeed(
        task="segmentation", target="class_indices", prediction=("B", "C", "H", "W"), num_classes=1
    )
    assert "softmax over one channel" in (fit_problem(feed, _takes("dice")) or "")
    assert fit_problem(feed, _takes("bce_with_logits")) is None
    # undeclared: it would get class indices for one channel
    assert "declare target='dense'" in (fit_problem(feed, None) or "")


def test_soft_targets_fit_only_losses_that_declare_them() -> None:
    mixed = LossFeed(
        task="classification", target="dense", prediction=("N", "C"), soft_targets=True
    )
    assert fit_problem(mixed, _takes("cross_entropy")) is None
    assert fit_problem(mixed, _takes("bce_with_logits")) is None
    assert "class probabilities, which it does not take" in (
        fit_problem(mixed, _takes("nll")) or ""
    )
    assert fit_problem(mixed, _takes("dice")) is not None


def test_the_loss_own_num_classes_must_be_the_feeds() -> None:
    feed = LossFeed(
        task="classification", target="class_indices", prediction=("N", "C"), num_classes=3
    )
    assert fit_problem(feed, _takes("ce"), num_classes=3) is None
    assert "num_classes=5, but this prediction has 3 classes" in (
        fit_problem(feed, _takes("ce"), num_classes=5) or ""
    )
    assert "no class dimension" in (fit_problem(MASKS, _takes("bce"), num_classes=3) or "")


def test_the_call_signature_must_take_what_the_caller_passes() -> None:
    class ThreeInputs(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return a.sum()

    class Varargs(nn.Module):
        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return inputs[0].sum()

    assert "cannot be called with the 2 positional inputs" in (
        fit_problem(LABELS, None, forward=ThreeInputs().forward) or ""
    )
    assert fit_problem(LABELS, None, forward=Varargs().forward) is None
    assert fit_problem(LABELS, None, forward=ThreeInputs.forward) is not None  # unbound


def test_fitting_losses_are_what_fit_problem_accepts() -> None:
    for feed in (LABELS, MULTI_HOT, PIXELS, MASKS, BOXES):
        names = fitting_losses(feed, get_loss_registry())
        for entry in get_loss_registry():
            if entry.builds_for_caller:  # weighted_sum fits what its terms fit: not listed
                assert entry.name not in names
                continue
            fits = fit_problem(feed, takes_of(None, entry), forward=entry.loss_class.forward)
            assert (entry.name in names) == (fits is None), (feed, entry.name)
    boxes = ["ciou", "diou", "giou", "iou", "l1", "smooth_l1"]
    assert fitting_losses(BOXES, get_loss_registry()) == boxes


# --------------------------------------------------------------------------- instance kinds
class _ModalLoss(nn.Module):
    """A class-index loss whose ``mode="binary"`` instances take dense targets."""

    def __init__(self, mode: str = "multiclass") -> None:
        super().__init__()
        self.mode = mode

    @property
    def target(self) -> str:
        return "dense" if self.mode == "binary" else "class_indices"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, target)


def test_instance_attributes_narrow_the_registered_kinds() -> None:
    register_custom_loss("modal", _ModalLoss, task="segmentation", soft_targets=True)
    binary = get_loss("modal", mode="binary")
    takes = takes_of(binary, get_entry("modal"))
    assert takes == LossTakes(target="dense", soft_targets=True)
    assert takes_of(get_loss("modal"), get_entry("modal")) == LossTakes(soft_targets=True)
    assert fit_problem(MASKS, takes) is None
    assert fit_problem(MASKS, takes_of(get_loss("modal"), get_entry("modal"))) is not None


def test_unregistered_instances_declare_with_attributes_or_are_called_as_fed() -> None:
    class Declared(nn.Module):
        expects = "probabilities"

    class NotADeclaration(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.target = torch.zeros(3)  # a tensor named target is not a target kind

    assert takes_of(Declared(), None) == LossTakes(expects="probabilities")
    assert takes_of(NotADeclaration(), None) is None
    assert takes_of(nn.L1Loss(), None) is None

    class Misspelled(nn.Module):
        target = "denes"

    with pytest.raises(ValueError, match=r"Misspelled.target = 'denes' is not a target kind"):
        takes_of(Misspelled(), None)


def test_feeds_are_checked_when_described() -> None:
    with pytest.raises(ValueError, match="class-index targets need a class dimension"):
        LossFeed(task="segmentation", target="class_indices", prediction=("N", "H", "W"))
    with pytest.raises(ValueError, match="target must be one of"):
        LossFeed(task="segmentation", target="masks", prediction=("N",))  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {"target": "dense", "prediction": ("N",)}
    with pytest.raises(ValueError, match="task must be one of"):
        LossFeed(task="ranking", **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- soft targets
def test_mixed_labels_fit_soft_losses_and_mixed_multi_hot_vectors_only_dense_ones() -> None:
    """Issue 12, section 3: mixed-up labels are soft targets. Class probabilities fit a
    class-index loss that takes soft targets (cross entropy); mixed multi-hot vectors (several
    classes per sample) fit only dense losses that take soft targets."""
    mixed = LossFeed(
        task="classification", target="dense", prediction=("N", "C"), soft_targets=True
    )
    mixed_multi_hot = LossFeed(
        task="classification",
        target="dense",
        prediction=("N", "C"),
        soft_targets=True,
        multi_label=True,
    )
    ce, nll, bce = (takes_of(None, get_entry(name)) for name in ("cross_entropy", "nll", "bce"))
    assert fit_problem(mixed, ce) is None and fit_problem(mixed_multi_hot, bce) is None
    assert "class probabilities, which it does not take" in str(fit_problem(mixed, nll))
    assert "mixed multi-hot vectors" in str(fit_problem(mixed_multi_hot, ce))
    assert "cross_entropy" in fitting_losses(mixed, get_loss_registry())
    assert "cross_entropy" not in fitting_losses(mixed_multi_hot, get_loss_registry())
    assert "nll" not in fitting_losses(mixed, get_loss_registry())

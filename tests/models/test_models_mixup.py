"""Issue 12, section 3: Mixup and CutMix in ``ImageClassifier`` (``timm.data.Mixup``).

Training batches are mixed and their targets become probabilities, so only losses that take
soft targets are accepted (refused otherwise when the model is built, naming those that fit);
validation is untouched; multi-label and one-output models mix their dense targets.
"""

from __future__ import annotations

import math
import random
import warnings
from typing import Any

import numpy as np
import pytest
import timm
import torch
from timm.data import Mixup
from torch import nn

from autotimm import ImageClassifier
from autotimm.losses import LossMismatchError, get_loss_registry, register_loss
from autotimm.losses.adapt import fitting_losses
from autotimm.models.classifier import MixedTargets

BACKBONE = "resnet10t"


def _model(**kwargs: Any) -> ImageClassifier:
    return ImageClassifier(BACKBONE, pretrained=False, **kwargs)


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _batch(size: int = 4, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(size, 3, 32, 32, generator=g), torch.randint(
        0, classes, (size,), generator=g
    )


# --------------------------------------------------------------------------- which losses
@pytest.mark.parametrize("loss_fn", ["nll", "focal_pixelwise", ["cross_entropy", "nll"]])
def test_a_loss_that_takes_no_soft_targets_is_refused_naming_those_that_fit(
    loss_fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_backbone(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the backbone was built before the loss was checked")

    monkeypatch.setattr(timm, "create_model", no_backbone)
    with pytest.raises(LossMismatchError) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _model(num_classes=3, mixup_alpha=0.2, loss_fn=loss_fn)
    feed = ImageClassifier.loss_slots({"num_classes": 3, "mixup_alpha": 0.2})["loss_fn"].feed
    fitting = fitting_losses(feed, get_loss_registry())
    assert {"cross_entropy", "bce_with_logits"} <= set(fitting) and "nll" not in fitting
    message = str(raised.value)
    assert "dense class probabilities, which it does not take" in message
    assert "mixup_alpha: the training targets are mixed class probabilities" in message
    assert (
        f"Registered losses that fit loss_fn{'[1]' if isinstance(loss_fn, list) else ''}: "
        in message
    )
    assert ", ".join(fitting) in message


@pytest.mark.parametrize(
    "mixing", [{"mixup_alpha": 0.2}, {"cutmix_alpha": 1.0}, {"label_smoothing": 0.1}]
)
def test_every_way_of_mixing_asks_for_soft_targets(mixing: dict[str, float]) -> None:
    with pytest.raises(LossMismatchError, match="soft targets"):
        _model(num_classes=3, loss_fn="nll", **mixing)
    _model(num_classes=3, loss_fn="nll")  # unmixed, nll is fine
    assert _model(num_classes=3, **mixing).loss.name == "cross_entropy"


class SoftL1(nn.Module):
    """A custom loss on probabilities against class probabilities."""

    def __init__(self) -> None:
        super().__init__()

    def forward(self, probabilities: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (probabilities - target).abs().mean()


def test_a_custom_loss_fits_when_its_registration_says_it_takes_soft_targets() -> None:
    register_loss("soft_l1_hard", task="classification", expects="probabilities", target="dense")(
        SoftL1
    )
    with pytest.raises(LossMismatchError, match="soft_l1_hard"):
        _model(num_classes=3, mixup_alpha=0.2, loss_fn="soft_l1_hard")
    register_loss(
        "soft_l1",
        task="classification",
        expects="probabilities",
        target="dense",
        soft_targets=True,
        override=True,
    )(SoftL1)
    model = _model(num_classes=3, mixup_alpha=0.2, loss_fn="soft_l1")
    model.train()
    images, labels = _batch()
    mixed_images, mixed = model.mix_batch(images.clone(), labels)
    logits = model(mixed_images)
    expected = (logits.sigmoid() - mixed.probabilities).abs().mean()  # dense: sigmoids
    torch.testing.assert_close(model.compute_loss(logits, mixed)[0], expected)


# --------------------------------------------------------------------------- the training step
def test_training_batches_are_mixed_as_timm_mixes_them_and_the_loss_takes_the_mix() -> None:
    settings = {"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "mix_prob": 0.9, "label_smoothing": 0.1}
    model = _model(num_classes=3, **settings)
    images, labels = _batch()
    reference = Mixup(
        mixup_alpha=0.4, cutmix_alpha=1.0, prob=0.9, label_smoothing=0.1, num_classes=3
    )
    for seed in range(6):
        _seed(seed)
        mixed_images, mixed = model.mix_batch(images.clone(), labels)
        _seed(seed)
        expected_images, expected_targets = reference(images.clone(), labels)
        assert isinstance(mixed, MixedTargets)
        assert torch.equal(mixed_images, expected_images)
        assert torch.equal(mixed.probabilities, expected_targets)
        torch.testing.assert_close(mixed.probabilities.sum(1), torch.ones(4))
    logits = torch.randn(4, 3)
    loss, _ = model.compute_loss(logits, mixed)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, mixed.probabilities))


@pytest.mark.parametrize("name", ["cross_entropy", "poly1", "asymmetric", "bce_with_logits"])
def test_each_soft_target_classification_loss_takes_the_mixed_probabilities(name: str) -> None:
    """The loss of a mixed batch is that loss on the mixed probabilities (no one-hot, no argmax)."""
    model = _model(num_classes=3, mixup_alpha=0.4, loss_fn=name)
    images, labels = _batch()
    _seed(0)
    _, mixed = model.mix_batch(images.clone(), labels)
    logits = torch.randn(4, 3, requires_grad=True)
    loss, _ = model.compute_loss(logits, mixed)
    expected = get_loss_registry().get_loss(name)(logits, mixed.probabilities)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_the_training_step_mixes_and_validation_is_untouched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lightning.pytorch.LightningModule.log", lambda *a, **k: None)
    mixed_model = _model(num_classes=3, mixup_alpha=1.0, class_weights=[1.0, 2.0, 0.5])
    plain_model = _model(num_classes=3, class_weights=[1.0, 2.0, 0.5])
    plain_model.load_state_dict(mixed_model.state_dict(), strict=False)
    seen: list[torch.Tensor] = []
    for model in (mixed_model, plain_model):
        model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    images, labels = _batch()
    batch = {"image": images, "label": labels}
    mixed_model.eval(), plain_model.eval()
    for stage in ("validation_step", "test_step"):
        seen.clear()
        ours = getattr(mixed_model, stage)(batch, 0)
        theirs = getattr(plain_model, stage)(batch, 0)
        assert torch.equal(ours, theirs)  # the same weighted loss on the labels
        assert torch.equal(seen[0], images) and torch.equal(seen[1], images)
    _seed(0)
    seen.clear()
    mixed_model.training_step({"image": images.clone(), "label": labels}, 0)
    assert not torch.equal(seen[0], images)  # alpha 1: mixed with probability 1


def test_multi_label_mixup_mixes_multi_hot_targets() -> None:
    model = _model(num_classes=4, multi_label=True, mixup_alpha=0.5, label_smoothing=0.2)
    assert model.loss.name == "bce_with_logits" and model.loss.feed.soft_targets
    images = torch.randn(4, 3, 32, 32)
    targets = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 1]]).float()
    _seed(3)
    mixed_images, mixed = model.mix_batch(images.clone(), targets)
    lam = (mixed_images - images.flip(0)).flatten().dot((images - images.flip(0)).flatten()) / (
        (images - images.flip(0)).flatten().square().sum()
    )
    smoothed = targets * 0.8 + 0.1
    expected = smoothed * lam + smoothed.flip(0) * (1 - lam)
    torch.testing.assert_close(mixed.probabilities, expected, rtol=1e-4, atol=1e-5)
    loss, _ = model.compute_loss(torch.zeros(4, 4), mixed)
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0)))
    # mixed multi-hot vectors are not class probabilities: a softmax loss does not fit them
    with pytest.raises(LossMismatchError, match="mixed multi-hot vectors"):
        _model(num_classes=4, multi_label=True, mixup_alpha=0.5, loss_fn="cross_entropy")


def test_a_one_output_classifier_mixes_the_probability_of_class_1() -> None:
    model = _model(num_classes=1, mixup_alpha=0.3)
    labels = torch.tensor([1, 0, 0, 1])
    _seed(0)
    _, mixed = model.mix_batch(torch.randn(4, 3, 32, 32), labels)
    assert mixed.probabilities.shape == (4, 1)
    probability = mixed.probabilities[:, 0]
    torch.testing.assert_close(probability[0], torch.tensor(1.0))  # 1 mixed with 1
    torch.testing.assert_close(probability[1], torch.tensor(0.0))  # 0 mixed with 0
    lam = probability[3]  # 1 mixed with 0 of the flipped batch
    assert 0 <= lam <= 1
    torch.testing.assert_close(probability + probability.flip(0), labels + labels.flip(0).float())
    assert torch.isfinite(model.compute_loss(torch.zeros(4, 1), mixed)[0])
    assert torch.isfinite(model.compute_loss(torch.zeros(4, 1), labels)[0])  # validation


def test_an_odd_batch_mixes_all_but_its_last_image() -> None:
    model = _model(num_classes=3, mixup_alpha=1.0, label_smoothing=0.3)
    images, labels = _batch(size=5)
    _seed(0)
    mixed_images, mixed = model.mix_batch(images.clone(), labels)
    assert torch.equal(mixed_images[4], images[4])
    assert not torch.equal(mixed_images[:4], images[:4])
    last = torch.full((3,), 0.1)
    last[labels[4]] = 0.8
    torch.testing.assert_close(mixed.probabilities[4], last)
    _, single = model.mix_batch(images[:1].clone(), labels[:1])
    assert single.probabilities.shape == (1, 3)


def test_label_smoothing_alone_smooths_the_training_targets() -> None:
    model = _model(num_classes=4, label_smoothing=0.2)
    images, labels = _batch(classes=4)
    mixed_images, mixed = model.mix_batch(images.clone(), labels)
    assert torch.equal(mixed_images, images)
    expected = torch.full((4, 4), 0.05)
    expected[torch.arange(4), labels] = 0.85
    torch.testing.assert_close(mixed.probabilities, expected)


def test_training_accuracy_reads_the_dominant_class_of_the_mix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lightning.pytorch.LightningModule.log", lambda *a, **k: None)
    model = _model(num_classes=3, label_smoothing=0.1)
    labels = torch.tensor([0, 1, 2, 1])
    outputs = torch.nn.functional.one_hot(labels, 3).float()
    _, mixed = model.mix_batch(torch.randn(4, 3, 32, 32), labels)
    model.update_metrics("train", torch.zeros(1), outputs, mixed)
    assert model.train_acc.compute().item() == 1.0


# --------------------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mixup_alpha": -0.1}, "mixup_alpha must be a finite number >= 0"),
        ({"mixup_alpha": float("nan")}, "mixup_alpha must be a finite number >= 0"),
        ({"cutmix_alpha": "1"}, "cutmix_alpha must be a finite number >= 0"),
        ({"mixup_alpha": 0.2, "mix_prob": 1.5}, r"mix_prob must be in \[0, 1\]"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
        ({"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_mixing_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model(num_classes=3, **kwargs)


def test_the_mixing_settings_are_hyperparameters_that_rebuild_the_model() -> None:
    settings = {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "mix_prob": 0.5, "label_smoothing": 0.1}
    model = _model(
        num_classes=3, loss_fn=["cross_entropy", {"name": "bce", "weight": 0.5}], **settings
    )
    assert {k: model.hparams[k] for k in settings} == settings
    again = ImageClassifier(**model.hparams)
    assert again.mixup is not None and again.mixup.mix_prob == 0.5
    assert again.loss.spec == model.loss.spec and again.eval_loss is not None
    assert again.eval_loss.feed is not None and not again.eval_loss.feed.soft_targets
    assert _model(num_classes=3).mixup is None


@pytest.mark.slow
def test_the_classifier_overfits_a_tiny_set_with_mixup_on() -> None:
    """Four distinct images, one per class: trained with mixup and CutMix on, the model still
    learns to tell them apart."""
    _seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend on a shared machine
    try:
        _overfit_with_mixup()
    finally:
        torch.set_num_threads(threads)


def _overfit_with_mixup() -> None:
    images = torch.randn(4, 3, 32, 32)
    labels = torch.arange(4)
    model = ImageClassifier(
        BACKBONE,
        num_classes=4,
        pretrained=False,
        mixup_alpha=0.4,
        cutmix_alpha=1.0,
        mix_prob=0.8,
        lr=3e-3,
        scheduler="none",
        weight_decay=0.0,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):
        mixed_images, mixed = model.mix_batch(images.clone(), labels)
        loss, _ = model.compute_loss(model(mixed_images), mixed)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(images).argmax(1)
        loss, _ = model.compute_loss(model(images), labels)
    assert torch.equal(predicted, labels), predicted
    assert loss.item() < 0.5

"""A model and its losses (issue 10): every loss that fits a model trains, pickles and reloads;
a loss that does not fit is refused when the model is built; the model's values reach the
loss as its registration says.

Which losses fit is computed here from the registry (``Model.loss_slots`` and
``fitting_losses``), so a newly registered built-in loss is covered without editing this file.
"""

from __future__ import annotations

import io
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import timm
import torch
from torch import nn

from autotimm import ImageClassifier, InstanceSegmentor, ObjectDetector, SemanticSegmentor
from autotimm.losses import (
    FCOSLoss,
    FocalLoss,
    LossConfigError,
    LossMismatchError,
    LossTaskWarning,
    get_loss,
    get_loss_registry,
    register_custom_loss,
)
from autotimm.losses.adapt import fitting_losses

BACKBONE = "resnet10t"
TINY: dict[type, dict[str, Any]] = {
    ImageClassifier: {},
    SemanticSegmentor: {"decoder_channels": 16},
    ObjectDetector: {"fpn_channels": 16, "head_convs": 1, "compute_map": False},
    InstanceSegmentor: {
        "fpn_channels": 16,
        "head_convs": 1,
        "mask_channels": 8,
        "mask_convs": 1,
        "compute_map": False,
    },
}


def _model(model_cls: type, **kwargs: Any) -> Any:
    return model_cls(BACKBONE, pretrained=False, **{**TINY[model_cls], **kwargs})


def _det_batch(masks: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    batch: dict[str, Any] = {
        "image": torch.randn(2, 3, 64, 64),
        "boxes": [
            torch.tensor([[4.0, 6.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]),
            torch.zeros(0, 4),
        ],
        "labels": [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)],
    }
    if masks:
        mask = torch.zeros(2, 64, 64, dtype=torch.uint8)
        mask[0, 6:28, 4:30] = 1
        mask[1, 30:62, 34:60] = 1
        batch["masks"] = [mask, torch.zeros(0, 64, 64, dtype=torch.uint8)]
    return batch


def _labels(n: int, classes: int, multi_label: bool = False) -> dict[str, Any]:
    torch.manual_seed(0)
    label = (
        torch.randint(0, 2, (n, classes)).float()
        if multi_label
        else torch.randint(0, max(classes, 2), (n,))
    )
    return {"image": torch.randn(n, 3, 32, 32), "label": label}


def _masks(classes: int) -> dict[str, Any]:
    torch.manual_seed(0)
    masks = torch.randint(0, max(classes, 2), (2, 32, 32))
    masks[:, :2] = 255
    return {"image": torch.randn(2, 3, 32, 32), "mask": masks}


# each model's loss arguments, with the init arguments that change what the model feeds
SETUPS: list[tuple[str, type, dict[str, Any], str, Callable[[], Any]]] = [
    ("classifier", ImageClassifier, {"num_classes": 3}, "loss_fn", lambda: _labels(4, 3)),
    (
        "classifier-multi-label",
        ImageClassifier,
        {"num_classes": 3, "multi_label": True},
        "loss_fn",
        lambda: _labels(4, 3, multi_label=True),
    ),
    ("classifier-binary", ImageClassifier, {"num_classes": 1}, "loss_fn", lambda: _labels(4, 1)),
    ("segmentor", SemanticSegmentor, {"num_classes": 3}, "loss_fn", lambda: _masks(3)),
    ("segmentor-binary", SemanticSegmentor, {"num_classes": 1}, "loss_fn", lambda: _masks(1)),
    ("detector-cls", ObjectDetector, {"num_classes": 2}, "cls_loss_fn", _det_batch),
    ("detector-reg", ObjectDetector, {"num_classes": 2}, "reg_loss_fn", _det_batch),
    (
        "instance-mask",
        InstanceSegmentor,
        {"num_classes": 2},
        "mask_loss_fn",
        lambda: _det_batch(masks=True),
    ),
]


def _fitting_cases() -> list[Any]:
    cases = []
    for label, model_cls, init, argument, batch in SETUPS:
        feed = model_cls.loss_slots(init)[argument].feed
        for name in fitting_losses(feed, get_loss_registry()):
            cases.append(pytest.param(model_cls, init, argument, name, batch, id=f"{label}-{name}"))
    return cases


def _same_loss(model: Any, clone: Any, batch: dict[str, Any]) -> None:
    """The clone has the same weights and the same loss module, which gives the same loss."""
    assert type(clone.loss.module) is type(model.loss.module)
    assert clone.loss.spec == model.loss.spec and clone.loss.takes == model.loss.takes
    state, cloned = model.state_dict(), clone.state_dict()
    assert state.keys() == cloned.keys()
    assert all(torch.equal(state[k], cloned[k]) for k in state)
    model.eval()
    clone.eval()
    with torch.no_grad():
        for m in (model, clone):
            images, targets = m.unpack_batch(batch)
            m._value = m.compute_loss(m.step_outputs(images), targets)[0]
    assert torch.isfinite(model._value) and torch.equal(model._value, clone._value)


# --------------------------------------------------------------------------- row a: pickling
@pytest.mark.parametrize(("model_cls", "init", "argument", "name", "batch"), _fitting_cases())
def test_every_model_with_every_fitting_builtin_loss_trains_pickles_and_reloads(
    model_cls: type,
    init: dict[str, Any],
    argument: str,
    name: str,
    batch: Callable[[], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lightning.pytorch.LightningModule.log", lambda *a, **k: None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossTaskWarning)
        model = _model(model_cls, **init, **{argument: name})
    loss = model.training_step(batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    _same_loss(model, pickle.loads(pickle.dumps(model)), batch())
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    _same_loss(model, torch.load(buffer, weights_only=False), batch())


class ScaledCrossEntropy(nn.Module):
    """A custom registered loss (module level, so that pickle finds its class)."""

    def __init__(self, num_classes: int, scale: float = 1.0, ignore_index: int = -100) -> None:
        super().__init__()
        self.num_classes, self.scale, self.ignore_index = num_classes, scale, ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(logits, target, ignore_index=self.ignore_index)
        return self.scale * loss


@pytest.mark.parametrize("model_cls", [ImageClassifier, SemanticSegmentor])
def test_a_custom_registered_loss_and_a_composite_pickle(model_cls: type) -> None:
    register_custom_loss("scaled_ce_pickle", ScaledCrossEntropy)
    batch = _labels(4, 3) if model_cls is ImageClassifier else _masks(3)
    for loss_fn in (
        "scaled_ce_pickle",
        {"name": "combined_segmentation", "params": {"dice_weight": 2.0}},
        ScaledCrossEntropy(num_classes=3, scale=0.5, ignore_index=255),  # a registered class
        ["cross_entropy", {"name": "bce_with_logits", "weight": 0.5, "label": "bce"}],  # a list
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LossTaskWarning)
            model = _model(model_cls, num_classes=3, loss_fn=loss_fn)
        _same_loss(model, pickle.loads(pickle.dumps(model)), batch)


def test_a_mixed_up_classifier_pickles() -> None:
    model = _model(ImageClassifier, num_classes=3, mixup_alpha=0.2, cutmix_alpha=1.0)
    clone = pickle.loads(pickle.dumps(model))
    assert clone.hparams["mixup_alpha"] == 0.2
    _same_loss(model, clone, _labels(4, 3))


# --------------------------------------------------------------------------- row d: refused
REFUSED = [
    (SemanticSegmentor, {"loss_fn": "focal"}, "loss_fn", "focal", "last dimension"),
    (SemanticSegmentor, {"loss_fn": "giou"}, "loss_fn", "giou", "it takes boxes"),
    (SemanticSegmentor, {"loss_fn": "fcos"}, "loss_fn", "fcos", "structured inputs"),
    (ImageClassifier, {"loss_fn": "fcos"}, "loss_fn", "fcos", "structured inputs"),
    (ObjectDetector, {"reg_loss_fn": "dice"}, "reg_loss_fn", "dice", "not boxes"),
    (ObjectDetector, {"cls_loss_fn": "fcos"}, "cls_loss_fn", "fcos", "structured inputs"),
    (ObjectDetector, {"cls_loss_fn": "ce"}, "cls_loss_fn", "ce", "targets are dense"),
    (
        ImageClassifier,
        {"loss_kwargs": {"num_classes": 5}},
        "loss_fn",
        "cross_entropy",
        "num_classes=5, but this prediction has 3 classes",
    ),
    (InstanceSegmentor, {"mask_loss_fn": "ce"}, "mask_loss_fn", "ce", "targets are dense"),
    (InstanceSegmentor, {"mask_loss_fn": "dice"}, "mask_loss_fn", "dice", "targets are dense"),
    (InstanceSegmentor, {"mask_loss_fn": "lovasz"}, "mask_loss_fn", "lovasz", "targets are dense"),
    (
        InstanceSegmentor,
        {"mask_loss_fn": "bce_with_logits", "mask_loss_kwargs": {"num_classes": 3}},
        "mask_loss_fn",
        "bce_with_logits",
        "no class dimension",
    ),
]


@pytest.mark.parametrize(("model_cls", "kwargs", "argument", "name", "why"), REFUSED)
def test_a_loss_the_model_cannot_feed_is_refused_before_anything_is_built(
    model_cls: type,
    kwargs: dict[str, Any],
    argument: str,
    name: str,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_backbone(*args: Any, **kw: Any) -> None:
        raise AssertionError("the backbone was built before the loss was checked")

    monkeypatch.setattr(timm, "create_model", no_backbone)
    with pytest.raises(LossMismatchError) as caught:
        model_cls(BACKBONE, num_classes=3, pretrained=False, **kwargs)
    error = caught.value
    feed = model_cls.loss_slots({"num_classes": 3})[argument].feed
    fitting = fitting_losses(feed, get_loss_registry())
    assert (error.argument, error.fitting) == (argument, tuple(fitting)) and fitting
    message = str(error)
    assert f"{model_cls.__name__} cannot use {argument}={name!r}: " in message
    assert why in message and f"feeds {argument} {feed.describe()}" in message
    assert f"Registered losses that fit {argument}: {', '.join(fitting)}." in message
    assert pickle.loads(pickle.dumps(error)).fitting == error.fitting


def test_fcos_components_must_fit_their_slots() -> None:
    with pytest.raises(
        LossConfigError, match=r"reg_loss: fcos cannot use reg_loss='cross_entropy'"
    ):
        get_loss("fcos", reg_loss="cross_entropy")
    fitting = r"Registered losses that fit cls_loss: asymmetric, bce, .*focal"
    with pytest.raises(LossConfigError, match=fitting):
        get_loss("fcos", cls_loss="dice")
    with pytest.raises(LossConfigError, match=r"reg_loss.*it takes structured inputs, not boxes"):
        get_loss("fcos", reg_loss="fcos")


def test_a_loss_for_another_task_that_fits_is_used_with_a_warning() -> None:
    with pytest.warns(LossTaskWarning, match=r"registered for segmentation, not classification"):
        model = _model(ImageClassifier, num_classes=3, loss_fn="focal_pixelwise")
    assert model.loss.name == "focal_pixelwise"
    with pytest.warns(LossTaskWarning) as caught:
        _model(ImageClassifier, num_classes=3, loss_fn="dice")
    fitting = "Losses registered for classification that fit loss_fn: asymmetric, bce, "
    assert fitting in str(caught[0].message)
    register_custom_loss("task_free", ScaledCrossEntropy)  # no task: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model(ImageClassifier, num_classes=3, loss_fn="task_free")
        _model(SemanticSegmentor, num_classes=3, loss_fn="ce")  # registered for both


# --------------------------------------------------------------------------- row c: masks
@pytest.mark.parametrize(
    "name",
    fitting_losses(InstanceSegmentor.loss_slots({})["mask_loss_fn"].feed, get_loss_registry()),
)
def test_every_mask_loss_that_fits_gets_no_model_context_and_trains(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: dict[str, float] = {}
    monkeypatch.setattr(
        "lightning.pytorch.LightningModule.log",
        lambda self, key, value, *a, **k: logged.__setitem__(key, float(value)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LossTaskWarning)
        model = _model(InstanceSegmentor, num_classes=3, mask_loss_fn=name)
    assert getattr(model.mask_loss.module, "num_classes", None) is None
    assert "num_classes" not in model.hparams["mask_loss_fn"]["params"]
    loss = model.training_step(_det_batch(masks=True), 0)
    loss.backward()
    assert torch.isfinite(loss) and logged["train/loss_mask"] > 0


def test_bce_with_logits_mask_loss_trains_on_a_three_class_model() -> None:
    """Before: the model's num_classes (3) reached the mask loss, which then checked it
    against the masks' 28 rows and failed at the first step."""
    model = _model(InstanceSegmentor, num_classes=3, mask_loss_fn="bce_with_logits")
    images, targets = model.unpack_batch(_det_batch(masks=True))
    loss, parts = model.compute_loss(model.step_outputs(images), targets)
    assert torch.isfinite(loss) and torch.isfinite(parts["loss_mask"])


class _ModalMaskLoss(nn.Module):
    """Like a region loss with ``mode``: ``"binary"`` instances take dense targets."""

    def __init__(self, mode: str = "multiclass", num_classes: int | None = None) -> None:
        super().__init__()
        self.mode, self.num_classes = mode, num_classes

    @property
    def target(self) -> str:
        return "dense" if self.mode == "binary" else "class_indices"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert target.shape == logits.shape and target.is_floating_point()
        return nn.functional.binary_cross_entropy_with_logits(logits, target)


def test_a_loss_instance_that_narrows_to_dense_targets_is_a_mask_loss() -> None:
    register_custom_loss("modal_mask", _ModalMaskLoss, task="segmentation")
    binary = {"name": "modal_mask", "params": {"mode": "binary"}}
    model = _model(InstanceSegmentor, num_classes=3, mask_loss_fn=binary)
    assert model.mask_loss.target == "dense" and model.mask_loss.module.num_classes is None
    images, targets = model.unpack_batch(_det_batch(masks=True))
    assert torch.isfinite(model.compute_loss(model.step_outputs(images), targets)[0])
    with pytest.raises(LossMismatchError, match="mask_loss_fn='modal_mask'"):
        _model(InstanceSegmentor, num_classes=3, mask_loss_fn="modal_mask")


# --------------------------------------------------------------------------- row e: weights
WEIGHTS = [1.0, 5.0, 1.0]


@pytest.mark.parametrize(
    ("model_cls", "init", "loss_fn", "read"),
    [
        (ImageClassifier, {}, None, lambda m: m.weight),
        (ImageClassifier, {"loss_fn": "nll"}, None, lambda m: m.weight),
        (ImageClassifier, {"multi_label": True}, None, lambda m: m.weight),
        (SemanticSegmentor, {}, "ce", lambda m: m.weight),
        (SemanticSegmentor, {}, "focal_pixelwise", lambda m: m.class_alpha),
        (SemanticSegmentor, {}, None, lambda m: m.class_weights),
        (SemanticSegmentor, {}, "bce_with_logits", lambda m: m.weight.reshape(-1)),
    ],
)
def test_class_weights_reach_the_loss_parameter_its_registration_names(
    model_cls: type, init: dict[str, Any], loss_fn: str | None, read: Callable[[Any], Any]
) -> None:
    kwargs = {**init, **({"loss_fn": loss_fn} if loss_fn else {})}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # applied: no "not used" warning
        model = _model(model_cls, num_classes=3, class_weights=WEIGHTS, **kwargs)
    assert read(model.loss.module).tolist() == WEIGHTS
    # stored with the loss, so a reloaded model has them whatever its own class_weights
    again = model_cls(**{**model.hparams, "class_weights": None})
    assert read(again.loss.module).tolist() == WEIGHTS


def test_weighted_cross_entropy_is_torchs_weighted_cross_entropy() -> None:
    model = _model(ImageClassifier, num_classes=3, class_weights=WEIGHTS)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 1, 1, 0])
    expected = nn.functional.cross_entropy(logits, labels, weight=torch.tensor(WEIGHTS))
    assert model.loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    segmentor = _model(
        SemanticSegmentor, num_classes=3, loss_fn="bce_with_logits", class_weights=WEIGHTS
    )
    assert segmentor.loss.module.weight.shape == (3, 1, 1)  # broadcast along [B, C, H, W]
    masks = torch.randint(0, 3, (2, 4, 4))
    pixel_logits = torch.randn(2, 3, 4, 4)
    one_hot = nn.functional.one_hot(masks, 3).permute(0, 3, 1, 2).float()
    weight = torch.tensor(WEIGHTS)[:, None, None].expand_as(pixel_logits)
    expected = nn.functional.binary_cross_entropy_with_logits(pixel_logits, one_hot, weight=weight)
    assert segmentor.loss(pixel_logits, masks).item() == pytest.approx(expected.item(), rel=1e-6)


def test_class_weights_warn_only_for_a_loss_without_a_per_class_weight_parameter() -> None:
    with pytest.warns(UserWarning, match="loss 'lovasz' has no per-class weight parameter"):
        _model(SemanticSegmentor, num_classes=3, loss_fn="lovasz", class_weights=WEIGHTS)
    with pytest.warns(UserWarning, match="loss instance whose arguments are already set"):
        _model(ImageClassifier, num_classes=3, loss_fn=get_loss("ce"), class_weights=WEIGHTS)


def test_a_custom_loss_declares_its_per_class_weight_parameter() -> None:
    class Reweighted(nn.Module):
        def __init__(self, per_class: torch.Tensor | None = None) -> None:
            super().__init__()
            self.per_class = per_class

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(logits, target, weight=self.per_class)

    register_custom_loss("reweighted", Reweighted, class_weights="per_class")
    model = _model(ImageClassifier, num_classes=3, loss_fn="reweighted", class_weights=WEIGHTS)
    assert model.loss.module.per_class.tolist() == WEIGHTS


# --------------------------------------------------------------------------- row f: spec dicts
@pytest.mark.parametrize(
    ("loss_fn", "message"),
    [
        (
            {"name": "ce", "parms": {"label_smoothing": 0.1}},
            r"unknown key 'parms' \(did you mean 'params'\?\)",
        ),
        ({"name": "ce", "params": {}, "weight": [1, 2]}, "unknown key 'weight'"),
        ({"name": "ce", "params": [0.1]}, "'params' of a loss spec maps argument names to values"),
    ],
)
def test_a_loss_spec_dict_is_as_strict_as_loss_spec(loss_fn: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _model(ImageClassifier, num_classes=3, loss_fn=loss_fn)


# --------------------------------------------------------------------------- one channel
def test_a_one_output_classifier_is_binary_classification(monkeypatch: pytest.MonkeyPatch) -> None:
    logged: dict[str, float] = {}
    monkeypatch.setattr(
        "lightning.pytorch.LightningModule.log",
        lambda self, key, value, *a, **k: logged.__setitem__(
            key, float(value.compute() if hasattr(value, "compute") else value)
        ),
    )
    model = _model(ImageClassifier, num_classes=1)
    assert model.loss.name == "bce_with_logits" and model.loss.target == "dense"
    batch = _labels(4, 1)
    logits = model(batch["image"])
    expected = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], batch["label"].float())
    assert model.loss(logits, batch["label"]).item() == pytest.approx(expected.item(), rel=1e-6)
    model.validation_step(batch, 0)
    accuracy = ((logits[:, 0] > 0).long() == batch["label"]).float().mean().item()
    assert logged["val/acc"] == pytest.approx(accuracy)
    probabilities = model.predict_step(batch, 0)
    assert torch.allclose(probabilities, logits.sigmoid())
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        model.training_step({"image": batch["image"], "label": torch.tensor([0, 1, 2, 1])}, 0)
    for softmax_loss in ("cross_entropy", "nll", "focal_pixelwise"):
        with pytest.raises(LossMismatchError, match="softmax over one channel is constant"):
            _model(ImageClassifier, num_classes=1, loss_fn=softmax_loss)


def test_a_one_channel_segmentor_defaults_to_a_loss_that_fits() -> None:
    model = _model(SemanticSegmentor, num_classes=1)
    assert model.loss.name == "bce_with_logits"
    assert model.hparams["loss_fn"]["name"] == "bce_with_logits"


# --------------------------------------------------------------------------- FCOS sums
def test_fcos_builds_summed_components_itself_the_detector_knows_nothing_of_it() -> None:
    """The rule lives in ``FCOSLoss``: given directly, a registered component left at its
    default reduction is rebuilt with ``reduction="sum"`` (before, it was kept at "mean"
    with a warning unless a model rebuilt it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        criterion = FCOSLoss(cls_loss=FocalLoss(alpha=0.5), reg_loss="ciou")
    assert criterion.cls_loss.reduction == "sum" and criterion.cls_loss.alpha == 0.5
    assert criterion.reg_loss.reduction == "sum"
    with pytest.warns(UserWarning, match="expects a summed loss"):
        FCOSLoss(cls_loss=get_loss("focal", reduction="mean"))  # chosen: kept, reported


def test_fcos_adapts_a_component_that_takes_probabilities() -> None:
    criterion = FCOSLoss(cls_loss="bce", num_classes=3)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 3, 2, 3, 1])
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0]] * 5)
    criterion(logits, boxes, torch.zeros(5), labels, boxes, torch.ones(5))
    one_hot = (labels[:, None] == torch.arange(3)).float()
    expected = nn.functional.binary_cross_entropy(logits.sigmoid(), one_hot, reduction="sum") / 3
    assert criterion.last_components["cls"].item() == pytest.approx(expected.item(), rel=1e-5)

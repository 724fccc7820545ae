"""The four models: shapes, argument errors, loss resolution and adaptation, logging, weights.

Everything here is fast (tiny backbones and inputs, no training loop); training, checkpoints
and the trainer have their own test modules.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import autotimm
from autotimm import ImageClassifier, InstanceSegmentor, ObjectDetector, SemanticSegmentor
from autotimm.losses import (
    FocalLoss,
    LossConfigError,
    LossMismatchError,
    LossSpec,
    UnknownLossError,
    get_loss_registry,
    register_custom_loss,
)
from autotimm.models import backbones
from autotimm.models.fcos import assign_fcos_targets
from autotimm.models.optim import configure_optimizer, create_adamw, warmup_cosine

BACKBONE = "resnet10t"
TINY_DET = {"pretrained": False, "fpn_channels": 32, "head_convs": 1}
TINY_INST = {**TINY_DET, "mask_channels": 16, "mask_convs": 1}


def _tiny(model_cls: type, **kwargs: Any) -> Any:
    extra = {
        ImageClassifier: {},
        SemanticSegmentor: {"decoder_channels": 32},
        ObjectDetector: TINY_DET,
        InstanceSegmentor: TINY_INST,
    }[model_cls]
    return model_cls(BACKBONE, **{"pretrained": False, **extra, **kwargs})


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """Capture ``LightningModule.log`` calls of models used outside a Trainer."""
    values: dict[str, float] = {}

    def log(self: Any, name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        values[name] = float(value) if isinstance(value, (torch.Tensor, float, int)) else value

    monkeypatch.setattr("lightning.pytorch.LightningModule.log", log)
    return values


def _det_batch(with_masks: bool = False) -> dict[str, Any]:
    boxes = [torch.tensor([[4.0, 6.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]), torch.zeros(0, 4)]
    batch: dict[str, Any] = {
        "image": torch.randn(2, 3, 64, 64),
        "boxes": boxes,
        "labels": [torch.tensor([0, 1]), torch.zeros(0, dtype=torch.long)],
    }
    if with_masks:
        masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
        masks[0, 6:28, 4:30] = 1
        masks[1, 30:62, 34:60] = 1
        batch["masks"] = [masks, torch.zeros(0, 64, 64, dtype=torch.uint8)]
    return batch


# --------------------------------------------------------------------------- public API, shapes
def test_everything_is_importable_from_autotimm() -> None:
    for name in ("ImageClassifier", "SemanticSegmentor", "ObjectDetector", "InstanceSegmentor"):
        assert getattr(autotimm, name) is getattr(autotimm.models, name)
    assert autotimm.AutoTrainer.__module__ == "autotimm.trainer"
    assert sorted(autotimm.models.__all__) == [
        "ImageClassifier",
        "InstanceSegmentor",
        "ObjectDetector",
        "SemanticSegmentor",
    ]


def test_classifier_outputs_logits() -> None:
    model = _tiny(ImageClassifier, num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("size", [(64, 64), (50, 70)])
def test_segmentor_outputs_logits_at_input_resolution(size: tuple[int, int]) -> None:
    model = _tiny(SemanticSegmentor, num_classes=4)
    assert model(torch.randn(2, 3, *size)).shape == (2, 4, *size)
    assert model.predict(torch.randn(1, 3, *size)).shape == (1, *size)


def test_detector_outputs_five_levels_and_predictions() -> None:
    model = _tiny(ObjectDetector, num_classes=3)
    out = model(torch.randn(2, 3, 64, 64))
    assert [t.shape[1] for t in out["cls_logits"]] == [3] * 5
    assert [t.shape[-1] for t in out["cls_logits"]] == [8, 4, 2, 1, 1]
    assert model.strides == [8, 16, 32, 64, 128]
    predictions = model.predict(torch.randn(2, 3, 64, 64))
    assert len(predictions) == 2
    assert set(predictions[0]) == {"boxes", "scores", "labels"}
    assert predictions[0]["boxes"].shape[1:] == (4,)
    assert model.training  # predict restores the mode


def test_instance_segmentor_predicts_masks_at_input_resolution() -> None:
    model = _tiny(InstanceSegmentor, num_classes=2, score_thresh=0.0)  # keep detections
    (prediction,) = model.predict(torch.randn(1, 3, 64, 48))
    k = prediction["boxes"].shape[0]
    assert k > 0
    assert prediction["masks"].shape == (k, 64, 48) and prediction["masks"].dtype == torch.bool


@pytest.mark.parametrize(
    "module",
    [
        "autotimm.models.backbones",
        "autotimm.models.batches",
        "autotimm.models.checks",
        "autotimm.models.fcos",
        "autotimm.models.heads",
        "autotimm.models.hparams",
        "autotimm.models.optim",
        "autotimm.models.classifier",
        "autotimm.models.segmentor",
        "autotimm.models.detector",
        "autotimm.models.instance_segmentor",
        "autotimm.trainer",
    ],
)
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(
        importlib.import_module(module), optionflags=doctest.ELLIPSIS, raise_on_error=False
    )
    assert result.attempted > 0 and result.failed == 0


# --------------------------------------------------------------------------- argument errors
@pytest.mark.parametrize(
    "model_cls", [ImageClassifier, SemanticSegmentor, ObjectDetector, InstanceSegmentor]
)
@pytest.mark.parametrize("num_classes", [0, -1, 2.5, "3", True])
def test_bad_num_classes_names_the_argument(model_cls: type, num_classes: Any) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        model_cls(BACKBONE, num_classes=num_classes, pretrained=False)


@pytest.mark.parametrize("model_cls", [ImageClassifier, SemanticSegmentor, ObjectDetector])
def test_unknown_backbone_names_the_argument_and_suggests(model_cls: type) -> None:
    with pytest.raises(ValueError, match=r"backbone 'resnet1B' is not a timm model.*resnet18"):
        model_cls("resnet1B", num_classes=2, pretrained=False)


@pytest.mark.parametrize("model_cls", [ImageClassifier, SemanticSegmentor, ObjectDetector])
def test_wrong_image_shape_is_a_clear_error(model_cls: type) -> None:
    model = _tiny(model_cls, num_classes=2)
    with pytest.raises(ValueError, match=r"images must have shape \[B, 3, H, W\]"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.randn(1, 1, 32, 32))
    with pytest.raises(TypeError, match="floating point"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_detector_rejects_labels_out_of_range(logged: dict[str, float]) -> None:
    model = _tiny(ObjectDetector, num_classes=2)
    batch = _det_batch()
    batch["labels"][0] = torch.tensor([0, 2])
    with pytest.raises(ValueError, match=r"labels'\] must be in \[0, num_classes=2\)"):
        model.training_step(batch, 0)


def test_detector_needs_a_pyramid_backbone() -> None:
    with pytest.raises(ValueError, match="three feature levels of increasing stride"):
        ObjectDetector("vit_tiny_patch16_224", num_classes=2, pretrained=False)


# --------------------------------------------------------------------------- detection input (10 i)
BAD_BOXES = [  # (boxes of batch item 1, what the error says about them)
    (
        torch.tensor([[4.0, 6.0, 30.0, 28.0], [60.0, 30.0, 34.0, 62.0]]),
        r"\[1\] = .*box 1\) has x2 < x1",
    ),
    (
        torch.tensor([[4.0, 28.0, 30.0, 6.0], [34.0, 30.0, 60.0, 62.0]]),
        r"\[0\] = .*box 0\) has y2 < y1",
    ),
    (
        torch.tensor([[4.0, 6.0, 30.0, 28.0], [34.0, float("nan"), 60.0, 62.0]]),
        r"\[1\] = .*box 1\) is not finite",
    ),
    (
        torch.tensor([[4.0, 6.0, float("inf"), 28.0], [34.0, 30.0, 60.0, 62.0]]),
        r"\[0\] = .*box 0\) is not finite",
    ),
]


@pytest.mark.parametrize("model_cls", [ObjectDetector, InstanceSegmentor])
@pytest.mark.parametrize(("boxes", "message"), BAD_BOXES)
def test_malformed_boxes_name_the_batch_item_and_the_box(
    model_cls: type, boxes: torch.Tensor, message: str, logged: dict[str, float]
) -> None:
    model = _tiny(model_cls, num_classes=2)
    batch = _det_batch(with_masks=model_cls is InstanceSegmentor)
    batch["boxes"] = [torch.zeros(0, 4), boxes]  # batch item 1
    batch["labels"] = [torch.zeros(0, dtype=torch.long), torch.tensor([0, 1])]
    if "masks" in batch:
        batch["masks"] = batch["masks"][::-1]
    with pytest.raises(ValueError, match=r"targets\[1\]\['boxes'\]" + message) as error:
        model.training_step(batch, 0)
    assert "(batch item 1, box" in str(error.value)
    targets = [{k: batch[k][i] for k in ("boxes", "labels")} for i in range(2)]
    for target, masks in zip(targets, batch.get("masks", [None, None])):
        if masks is not None:
            target["masks"] = masks
    with pytest.raises(ValueError, match=message):  # torchvision-style batches too
        model.validation_step((batch["image"], targets), 0)


@pytest.mark.parametrize("model_cls", [ObjectDetector, InstanceSegmentor])
@pytest.mark.parametrize("key", ["boxes", "labels", "masks"])
def test_target_lists_shorter_than_the_batch_are_a_clear_error(
    model_cls: type, key: str, logged: dict[str, float]
) -> None:
    model = _tiny(model_cls, num_classes=2)
    batch = _det_batch(with_masks=True)
    if key == "masks" and model_cls is ObjectDetector:
        del batch["masks"]
        key = "boxes"
    batch[key] = batch[key][:1]
    with pytest.raises(
        ValueError, match=rf"batch\['{key}'\] has 1 entries for a batch of 2 images.*item 1"
    ):
        model.training_step(batch, 0)
    images, targets = batch["image"], [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}]
    with pytest.raises(ValueError, match="targets has 1 entries for a batch of 2 images"):
        model.training_step((images, targets), 0)


def test_degenerate_but_ordered_boxes_and_empty_float_labels_are_accepted(
    logged: dict[str, float],
) -> None:
    model = _tiny(ObjectDetector, num_classes=2)
    batch = _det_batch()
    batch["boxes"][0] = torch.tensor([[4.0, 6.0, 4.0, 28.0], [34.0, 30.0, 60.0, 62.0]])
    batch["labels"][1] = torch.zeros(0)  # an empty float tensor holds no class index
    assert torch.isfinite(model.training_step(batch, 0))
    batch["labels"][0] = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="must be integer class indices"):
        model.training_step(batch, 0)


# --------------------------------------------------------------------------- binary segmentation
@pytest.mark.parametrize(
    "loss_fn", ["combined_segmentation", "dice", "jaccard", "lovasz", "tversky", "ce"]
)
def test_one_channel_segmentor_with_a_softmax_loss_is_refused_at_construction(
    loss_fn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_backbone(*args: Any, **kw: Any) -> None:
        raise AssertionError("the backbone was built before the loss was checked")

    monkeypatch.setattr(timm, "create_model", no_backbone)
    with pytest.raises(LossMismatchError, match=r"one channel.*num_classes=2.*bce_with_logits"):
        SemanticSegmentor(BACKBONE, num_classes=1, loss_fn=loss_fn, pretrained=False)
    with pytest.raises(LossMismatchError, match="declare target='dense'"):
        SemanticSegmentor(BACKBONE, num_classes=1, loss_fn=nn.BCEWithLogitsLoss(), pretrained=False)


@pytest.mark.parametrize("loss_fn", ["bce_with_logits", "bce", "mask"])
def test_one_channel_segmentor_trains_on_the_binary_mask_with_a_dense_loss(
    loss_fn: str, logged: dict[str, float]
) -> None:
    model = _tiny(SemanticSegmentor, num_classes=1, loss_fn=loss_fn)
    images = torch.randn(2, 3, 32, 32)
    masks = torch.randint(0, 2, (2, 32, 32))
    loss = model.training_step({"image": images, "mask": masks}, 0)
    loss.backward()
    assert model.head.classifier.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model(images)
        loss, _ = model.compute_loss(outputs, masks)
    logits = outputs[:, 0]
    if loss_fn != "mask":  # bce and bce_with_logits: the mean BCE with the mask as target
        expected = nn.functional.binary_cross_entropy_with_logits(logits, masks.float())
        assert loss.item() == pytest.approx(expected.item(), rel=1e-4)
    assert model.predict(images).tolist() == (logits > 0).long().tolist()
    masks[0, 0, :4] = 255  # ignored pixels are allowed (dense losses count them as background)
    model.validation_step({"image": images, "mask": masks}, 0)
    assert {"val/loss", "val/miou", "val/pixel_acc"} <= set(logged)
    masks[1, 0, 0] = 2
    with pytest.raises(ValueError, match=r"num_classes=1 \(binary segmentation\).*\[2\]"):
        model.training_step({"image": images, "mask": masks}, 0)


# --------------------------------------------------------------------------- loss resolution
@pytest.mark.parametrize(
    ("model_cls", "kwargs"),
    [
        (ImageClassifier, {"loss_kwargs": {"label_smoothing": 2.0}}),
        (ImageClassifier, {"loss_fn": "nll", "loss_kwargs": {"smoothing": 0.1}}),
        (SemanticSegmentor, {"loss_fn": "dice", "loss_kwargs": {"smooth": "lots"}}),
        (ObjectDetector, {"cls_loss_kwargs": {"gamma": -1.0}}),
        (ObjectDetector, {"reg_loss_kwargs": {"eps": 0.0}}),
        (InstanceSegmentor, {"mask_loss_kwargs": {"pos_wieght": 2.0}}),
    ],
)
def test_bad_loss_kwargs_fail_at_construction_before_anything_is_built(
    model_cls: type, kwargs: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_backbone(*args: Any, **kw: Any) -> None:
        raise AssertionError("the backbone was built before the loss arguments were checked")

    monkeypatch.setattr(timm, "create_model", no_backbone)
    with pytest.raises(LossConfigError):
        model_cls(BACKBONE, num_classes=3, pretrained=False, **kwargs)


def test_unknown_loss_name_fails_at_construction() -> None:
    with pytest.raises(UnknownLossError, match="Did you mean 'dice'"):
        SemanticSegmentor(BACKBONE, num_classes=3, loss_fn="dcie", pretrained=False)


class CountingLoss(nn.Module):
    """A custom loss that needs the model's ``num_classes``."""

    def __init__(self, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        assert logits.shape[1] == self.num_classes
        return self.scale * nn.functional.cross_entropy(logits, target)


@pytest.mark.parametrize("model_cls", [ImageClassifier, SemanticSegmentor])
def test_custom_registered_loss_by_name_gets_num_classes(model_cls: type) -> None:
    with get_loss_registry().temporary():
        register_custom_loss("counting", CountingLoss, alias="cnt")
        model = _tiny(model_cls, num_classes=7, loss_fn="cnt", loss_kwargs={"scale": 0.5})
        assert isinstance(model.loss.module, CountingLoss)
        assert (model.loss.module.num_classes, model.loss.module.scale) == (7, 0.5)
        assert model.hparams["loss_fn"] == {
            "name": "counting",
            "params": {"num_classes": 7, "scale": 0.5},
            "class_path": f"{CountingLoss.__module__}.CountingLoss",
        }


def test_explicit_loss_kwargs_win_over_context() -> None:
    model = _tiny(SemanticSegmentor, num_classes=3, loss_kwargs={"ignore_index": 0})
    assert model.loss.module.ignore_index == 0 and model.ignore_index == 255


def test_loss_instance_is_used_as_given() -> None:
    custom = nn.CrossEntropyLoss(label_smoothing=0.1)
    model = _tiny(ImageClassifier, num_classes=3, loss_fn=custom)
    assert model.loss.module is custom
    with pytest.raises(TypeError, match="already set"):
        _tiny(ImageClassifier, num_classes=3, loss_fn=custom, loss_kwargs={"x": 1})


def test_loss_spec_and_dict_are_accepted() -> None:
    spec = LossSpec(name="focal_pixelwise", params={"gamma": 1.0})
    for loss_fn in (spec, spec.model_dump(mode="json")):
        model = _tiny(SemanticSegmentor, num_classes=3, loss_fn=loss_fn)
        assert model.loss.module.gamma == 1.0 and model.loss.module.num_classes == 3


def test_required_class_weights_fall_back_to_uniform_with_a_warning() -> None:
    class Balanced(nn.Module):
        def __init__(self, class_weights: torch.Tensor) -> None:
            super().__init__()
            self.ce = nn.CrossEntropyLoss(weight=class_weights)

        def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return self.ce(input, target)

    with get_loss_registry().temporary():
        register_custom_loss("balanced", Balanced)
        with pytest.warns(UserWarning, match="requires 'class_weights'"):
            model = _tiny(ImageClassifier, num_classes=4, loss_fn="balanced")
        assert model.loss.module.ce.weight.tolist() == [1.0] * 4
        given = _tiny(ImageClassifier, num_classes=2, loss_fn="balanced", class_weights=[1.0, 3.0])
        assert given.loss.module.ce.weight.tolist() == [1.0, 3.0]
        assert given.hparams["class_weights"] == [1.0, 3.0]  # plain list, not a tensor


def test_class_weights_reach_losses_that_take_them_and_warn_otherwise() -> None:
    weights = torch.tensor([1.0, 2.0, 3.0])
    model = _tiny(SemanticSegmentor, num_classes=3, class_weights=weights)
    assert model.loss.module.class_weights.tolist() == weights.tolist()
    assert model.hparams["class_weights"] == [1.0, 2.0, 3.0]
    dice = _tiny(SemanticSegmentor, num_classes=3, loss_fn="dice", class_weights=weights)
    assert dice.loss.module.class_weights.tolist() == weights.tolist()  # issue 12: dice takes them
    with pytest.warns(UserWarning, match="class_weights were given but loss 'lovasz' has no"):
        _tiny(SemanticSegmentor, num_classes=3, loss_fn="lovasz", class_weights=weights)
    with pytest.raises(ValueError, match="class_weights must have one weight per class"):
        _tiny(SemanticSegmentor, num_classes=3, class_weights=[1.0, 2.0])


@pytest.mark.parametrize(
    ("loss_type", "name"),
    [
        ("combined", "combined_segmentation"),
        ("ce", "cross_entropy"),
        ("dice", "dice"),
        ("focal", "focal_pixelwise"),
    ],
)
def test_deprecated_loss_type_maps_to_registry_losses(loss_type: str, name: str) -> None:
    with pytest.warns(FutureWarning, match=f"use loss_fn='{name}'"):
        model = _tiny(SemanticSegmentor, num_classes=3, loss_type=loss_type, dice_weight=1.5)
    assert model.hparams["loss_fn"]["name"] == name
    assert model.hparams["loss_type"] is None  # stored as loss_fn; reloading does not warn
    assert model.loss.module.ignore_index == 255


def test_loss_type_errors() -> None:
    with pytest.raises(ValueError, match="either loss_fn or the deprecated loss_type"):
        _tiny(SemanticSegmentor, num_classes=3, loss_fn="dice", loss_type="dice")
    with pytest.raises(ValueError, match="loss_type must be one of"):
        _tiny(SemanticSegmentor, num_classes=3, loss_type="lovasz")


def test_segmentor_default_loss_and_context() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = _tiny(SemanticSegmentor, num_classes=5, ce_weight=0.5, dice_weight=1.5)
    assert model.hparams["loss_fn"] == {
        "name": "combined_segmentation",
        "params": {"num_classes": 5, "ignore_index": 255, "ce_weight": 0.5, "dice_weight": 1.5},
        "class_path": "autotimm.losses.segmentation.CombinedSegmentationLoss",
    }


def test_multi_label_defaults_to_bce_with_logits_and_refuses_class_index_losses(
    logged: dict[str, float],
) -> None:
    model = _tiny(ImageClassifier, num_classes=4, multi_label=True)
    assert model.hparams["loss_fn"]["name"] == "bce_with_logits"
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    loss = model.training_step({"image": torch.randn(2, 3, 32, 32), "label": target}, 0)
    assert torch.isfinite(loss) and "train/acc" in logged
    binary = _tiny(ImageClassifier, num_classes=1, multi_label=True)  # one sigmoid output
    batch = {"image": torch.randn(2, 3, 32, 32), "label": torch.tensor([[1.0], [0.0]])}
    assert torch.isfinite(binary.training_step(batch, 0))
    with pytest.raises(LossMismatchError, match=r"takes class indices.*multi_label=True"):
        _tiny(ImageClassifier, num_classes=4, multi_label=True, loss_fn="cross_entropy")


# --------------------------------------------------------------------------- training steps
@pytest.mark.parametrize("loss_fn", ["cross_entropy", "nll", "bce", "bce_with_logits", "mse"])
def test_every_classification_loss_trains_the_classifier(
    loss_fn: str, logged: dict[str, float]
) -> None:
    model = _tiny(ImageClassifier, num_classes=3, loss_fn=loss_fn)
    loss = model.training_step(
        {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 1])}, 0
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.get_classifier().weight.grad.abs().sum() > 0
    assert "train/loss" in logged and "train/acc" in logged


@pytest.mark.parametrize(
    "loss_fn", ["combined_segmentation", "dice", "focal_pixelwise", "tversky", "cross_entropy"]
)
def test_segmentation_losses_train_and_log_components(
    loss_fn: str, logged: dict[str, float]
) -> None:
    model = _tiny(SemanticSegmentor, num_classes=3, loss_fn=loss_fn)
    masks = torch.randint(0, 3, (2, 32, 32))
    masks[:, :2] = 255
    loss = model.training_step({"image": torch.randn(2, 3, 32, 32), "mask": masks}, 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert "train/loss" in logged
    if loss_fn == "combined_segmentation":
        assert {"train/loss_ce", "train/loss_dice"} <= set(logged)
    model.validation_step({"image": torch.randn(2, 3, 32, 32), "mask": masks}, 0)
    assert {"val/loss", "val/miou", "val/pixel_acc"} <= set(logged)


def test_detector_logs_fcos_components_and_trains_on_empty_images(logged: dict[str, float]) -> None:
    model = _tiny(ObjectDetector, num_classes=2)
    loss = model.training_step(_det_batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert {"train/loss", "train/loss_cls", "train/loss_reg", "train/loss_centerness"} <= set(
        logged
    )
    # torchvision-style (images, targets) batches work too
    batch = _det_batch()
    targets = [{"boxes": b, "labels": lab} for b, lab in zip(batch["boxes"], batch["labels"])]
    assert torch.isfinite(model.training_step((batch["image"], targets), 0))


def test_instance_segmentor_trains_detection_and_mask_losses(logged: dict[str, float]) -> None:
    model = _tiny(InstanceSegmentor, num_classes=2)
    loss = model.training_step(_det_batch(with_masks=True), 0)
    loss.backward()
    assert logged["train/loss_mask"] > 0
    assert {"train/loss_cls", "train/loss_reg", "train/loss_centerness"} <= set(logged)
    for part in (model.mask_head, model.head, model.fpn):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    batch = _det_batch(with_masks=True)
    del batch["masks"]
    with pytest.raises(ValueError, match="needs 'masks'"):
        model.training_step(batch, 0)


def test_detector_loss_instances_are_rebuilt_to_sum() -> None:
    focal = FocalLoss(alpha=0.3, gamma=2.5)
    model = _tiny(ObjectDetector, num_classes=3, cls_loss_fn=focal)
    fcos = model.loss.module
    assert isinstance(fcos.cls_loss, FocalLoss)
    assert (fcos.cls_loss.alpha, fcos.cls_loss.gamma) == (0.3, 2.5)
    assert fcos.cls_loss.reduction == "sum" and fcos.reg_loss.reduction == "sum"
    assert model.hparams["cls_loss_fn"] == {
        "name": "focal",
        # num_classes is written down as the instance had it, so that reloading (which
        # passes the model's num_classes as context) rebuilds exactly this loss
        "params": {"alpha": 0.3, "gamma": 2.5, "reduction": "sum", "num_classes": None},
        "class_path": "autotimm.losses.detection.FocalLoss",
    }
    assert fcos.num_classes == 3 and fcos.cls_loss.num_classes is None


# --------------------------------------------------------------------------- FCOS targets
def test_fcos_assignment_center_sampling_smallest_box_and_background() -> None:
    points = torch.tensor([[4.0, 4.0], [12.0, 12.0], [28.0, 28.0], [60.0, 60.0]])
    strides = torch.full((4,), 8.0)
    ranges = torch.tensor([[0.0, 64.0]] * 4)
    boxes = torch.tensor([[0.0, 0.0, 32.0, 32.0], [8.0, 8.0, 16.0, 16.0]])
    cls, box, ctr = assign_fcos_targets(points, strides, ranges, boxes, torch.tensor([0, 1]), 2)
    # (4, 4): only the big box, but outside its 1.5-stride centre region -> background
    # (12, 12): both boxes contain it; the smaller one wins
    # (28, 28): outside the big box's centre region -> background; (60, 60): no box
    assert cls.tolist() == [2, 1, 2, 2]
    assert box[1].tolist() == [8.0, 8.0, 16.0, 16.0] and box[0].tolist() == [0.0] * 4
    assert ctr[1] == pytest.approx(1.0) and ctr[[0, 2, 3]].tolist() == [0.0, 0.0, 0.0]
    big_only = assign_fcos_targets(
        points[1:2], strides[:1], torch.tensor([[0.0, 4.0]]), boxes[:1], torch.tensor([0]), 2
    )
    assert big_only[0].tolist() == [2]  # outside the level's size range -> background


def test_fcos_assignment_without_boxes_is_all_background() -> None:
    cls, box, ctr = assign_fcos_targets(
        torch.zeros(5, 2),
        torch.full((5,), 8.0),
        torch.zeros(5, 2),
        torch.zeros(0, 4),
        torch.zeros(0, dtype=torch.long),
        num_classes=3,
    )
    assert cls.tolist() == [3] * 5 and box.abs().sum() == 0 and ctr.abs().sum() == 0


# --------------------------------------------------------------------------- optimisation
def _rates(total: int, warmup_ratio: float) -> list[float]:
    optimizer = create_adamw(nn.Linear(2, 2), lr=1.0, weight_decay=0.0)
    schedule = warmup_cosine(optimizer, total, warmup_ratio)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return rates


@settings(max_examples=25, deadline=None)
@given(total=st.integers(1, 60), warmup_ratio=st.floats(0.0, 0.95))
def test_warmup_cosine_schedule_is_linear_warmup_then_cosine_to_zero(
    total: int, warmup_ratio: float
) -> None:
    """torch's SequentialLR(LinearLR, CosineAnnealingLR) gives the textbook schedule."""
    warmup = round(warmup_ratio * total)
    span = max(1, total - warmup)
    expected = [
        (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / span))
        for s in range(total)
    ]
    assert _rates(total, warmup_ratio) == pytest.approx(expected, abs=1e-6)


def test_schedule_examples() -> None:
    assert _rates(20, 0.2)[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert _rates(20, 0.2)[12] == pytest.approx(0.5)
    assert _rates(5, 0.0)[0] == 1.0


def test_unknown_training_length_keeps_the_learning_rate_constant() -> None:
    with pytest.warns(UserWarning, match="training length is unknown"):
        config = configure_optimizer(
            nn.Linear(2, 2),
            lr=0.1,
            weight_decay=0.0,
            warmup_ratio=0.1,
            scheduler="cosine",
            total_steps=float("inf"),
        )
    assert isinstance(config, torch.optim.Optimizer)  # no schedule: a constant rate


def test_weight_decay_skips_biases_and_norms() -> None:
    model = _tiny(ImageClassifier, num_classes=2, lr=0.01, weight_decay=0.05, scheduler="none")
    optimizer = model.configure_optimizers()
    assert type(optimizer).__name__ == "AdamW"
    groups = {g["weight_decay"]: g for g in optimizer.param_groups}
    decay, no_decay = groups[0.05], groups[0.0]
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert optimizer.param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError, match="lr must be a positive number"):
        _tiny(ImageClassifier, num_classes=2, lr=0)
    with pytest.raises(ValueError, match="warmup_ratio must be in"):
        _tiny(ImageClassifier, num_classes=2, warmup_ratio=1.0)
    with pytest.raises(ValueError, match="scheduler must be"):
        _tiny(ImageClassifier, num_classes=2, scheduler="step")


# --------------------------------------------------------------------------- pretrained weights
class _Offline(OSError):
    pass


def test_unavailable_pretrained_weights_fail_fast_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    seen: dict[str, Any] = {}

    def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        seen["offline"] = constants.HF_HUB_OFFLINE
        if pretrained:
            raise LocalEntryNotFoundError("cannot find the requested files in the local cache")
        raise AssertionError("not reached")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(backbones, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(
        RuntimeError, match=r"Pretrained weights for backbone 'resnet18'.*pretrained=False"
    ):
        ImageClassifier("resnet18", num_classes=2)
    assert seen["offline"] is True  # no network: the hub was asked for cached files only
    assert constants.HF_HUB_OFFLINE is False  # and restored afterwards


def test_hf_hub_offline_skips_the_network_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe(timeout: float = 3.0) -> bool:
        raise AssertionError("probed the network although HF_HUB_OFFLINE is set")

    def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        raise _Offline("offline")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(backbones, "_hub_reachable", probe)
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(RuntimeError, match="could not be fetched"):
        SemanticSegmentor("resnet18", num_classes=2)


def test_other_backbone_errors_are_not_disguised(monkeypatch: pytest.MonkeyPatch) -> None:
    def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        raise TypeError("unexpected keyword argument")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(timm, "create_model", create_model)
    with pytest.raises(TypeError, match="unexpected keyword"):
        ImageClassifier("resnet18", num_classes=2)

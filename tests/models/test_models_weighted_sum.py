"""Issue 12, section 1 in models: a list of losses wherever one loss is taken.

``loss_fn=[...]`` (and ``cls_loss_fn``, ``reg_loss_fn``, ``mask_loss_fn``) is the
``weighted_sum`` of the terms: each term reaches the model's context exactly as that loss
alone would, is adapted to what it takes, is logged as ``{stage}/loss_<label or name>``, and
the checkpoint stores the list as plain data and rebuilds it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch.utils.data import DataLoader

from autotimm import (
    AutoTrainer,
    ImageClassifier,
    InstanceSegmentor,
    ObjectDetector,
    SemanticSegmentor,
)
from autotimm.losses import LossMismatchError, LossSpec, WeightedSumLoss
from autotimm.losses._rebuild import same_state

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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. class weights a term has no parameter for
        return model_cls(BACKBONE, pretrained=False, **{**TINY[model_cls], **kwargs})


def _labels() -> dict[str, Any]:
    torch.manual_seed(0)
    return {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 1])}


def _masks() -> dict[str, Any]:
    torch.manual_seed(0)
    mask = torch.randint(0, 3, (2, 32, 32))
    mask[0, :4] = 255
    return {"image": torch.randn(2, 3, 32, 32), "mask": mask}


def _boxes() -> dict[str, Any]:
    torch.manual_seed(0)
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 6:28, 4:30] = 1
    masks[1, 30:62, 34:60] = 1
    return {
        "image": torch.randn(2, 3, 64, 64),
        "boxes": [
            torch.tensor([[4.0, 6.0, 30.0, 28.0], [34.0, 30.0, 60.0, 62.0]]),
            torch.zeros(0, 4),
        ],
        "labels": [torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)],
        "masks": [masks, torch.zeros(0, 64, 64, dtype=torch.uint8)],
    }


LISTS = [
    (
        ImageClassifier,
        "loss_fn",
        ["cross_entropy", {"name": "bce", "weight": 0.5}, {"name": "mse", "label": "brier"}],
        ["loss_cross_entropy", "loss_bce", "loss_brier"],
        _labels,
    ),
    (
        SemanticSegmentor,
        "loss_fn",
        [{"name": "ce"}, {"name": "dice", "weight": 3.0}, "dice"],
        ["loss_cross_entropy", "loss_dice", "loss_dice_1"],
        _masks,
    ),
    (
        ObjectDetector,
        "cls_loss_fn",
        ["focal", {"name": "bce_with_logits", "weight": 0.5}],
        ["loss_focal", "loss_bce_with_logits", "loss_cls", "loss_reg"],
        _boxes,
    ),
    (
        ObjectDetector,
        "reg_loss_fn",
        ["giou", {"name": "diou", "weight": 0.5, "label": "distance"}],
        ["loss_giou", "loss_distance", "loss_cls", "loss_reg"],
        _boxes,
    ),
    (
        InstanceSegmentor,
        "mask_loss_fn",
        ["mask", {"name": "bce_with_logits", "params": {"pos_weight": 2.0}}],
        ["loss_mask", "loss_mask_mask", "loss_bce_with_logits", "loss_cls"],
        _boxes,
    ),
]


@pytest.mark.parametrize(
    ("model_cls", "argument", "terms", "keys", "batch"),
    LISTS,
    ids=[f"{m.__name__}.{a}" for m, a, *_ in LISTS],
)
def test_every_loss_argument_takes_a_list_and_logs_each_term(
    model_cls: type,
    argument: str,
    terms: list[Any],
    keys: list[str],
    batch: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged: dict[str, float] = {}

    def log(self: Any, key: str, value: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(value, torch.Tensor):  # the losses (not the metric objects)
            logged[key] = float(value)

    monkeypatch.setattr("lightning.pytorch.LightningModule.log", log)
    model = _model(model_cls, num_classes=3, **{argument: terms})
    stored = model.hparams[argument]
    assert stored["name"] == "weighted_sum" and len(stored["params"]["terms"]) == len(terms)
    loss = model.training_step(batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    for key in keys:
        assert f"train/{key}" in logged and torch.isfinite(torch.tensor(logged[f"train/{key}"]))


def test_the_segmentor_trains_on_exactly_the_weighted_sum_of_its_terms() -> None:
    model = _model(SemanticSegmentor, num_classes=3, loss_fn=["ce", {"name": "dice", "weight": 3}])
    images, masks = model.unpack_batch(_masks())
    logits = model(images)
    loss, parts = model.compute_loss(logits, masks)
    alone = [_model(SemanticSegmentor, num_classes=3, loss_fn=name).loss for name in ("ce", "dice")]
    by_hand = alone[0](logits, masks) + 3.0 * alone[1](logits, masks)
    assert torch.equal(loss, by_hand)
    assert torch.equal(parts["loss_cross_entropy"], alone[0](logits, masks).detach())


@pytest.mark.parametrize("term", ["cross_entropy", "focal_pixelwise", "combined", "dice", "lovasz"])
def test_the_models_context_reaches_each_term_exactly_as_it_reaches_that_loss_alone(
    term: str,
) -> None:
    context = {"num_classes": 3, "ignore_index": 7, "class_weights": [1.0, 2.0, 0.5]}
    listed = _model(SemanticSegmentor, loss_fn=["tversky", term], dice_weight=2.5, **context)
    alone = _model(SemanticSegmentor, loss_fn=term, dice_weight=2.5, **context)
    module = listed.loss.module.losses[1]
    assert same_state(module, alone.loss.module)
    assert LossSpec.of(module) == alone.loss.spec
    batch = _masks()
    batch["mask"][batch["mask"] == 255] = 7
    _, masks = listed.unpack_batch(batch)
    logits = torch.randn(2, 3, 32, 32)
    listed.loss(logits, masks)
    torch.testing.assert_close(
        listed.loss.module.last_components[listed.loss.module.component_keys[1]],
        alone.loss(logits, masks).detach(),
    )


def test_a_term_that_takes_probabilities_gets_probabilities() -> None:
    model = _model(ImageClassifier, num_classes=3, loss_fn=["bce", "nll"])
    logits = torch.randn(4, 3, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1])
    expected = torch.nn.functional.binary_cross_entropy(
        logits.sigmoid(), torch.nn.functional.one_hot(labels, 3).double()
    ) + torch.nn.functional.nll_loss(logits.log_softmax(1), labels)
    torch.testing.assert_close(model.loss(logits, labels), expected)


def test_a_segmentation_and_a_detection_loss_are_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_backbone(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the backbone was built before the loss was checked")

    monkeypatch.setattr(timm, "create_model", no_backbone)
    with pytest.raises(LossMismatchError) as raised:
        SemanticSegmentor(BACKBONE, num_classes=3, loss_fn=["dice", "giou"], pretrained=False)
    message = str(raised.value)
    assert message.startswith("SemanticSegmentor cannot use loss_fn[1]='giou': it takes boxes")
    assert "Registered losses that fit loss_fn[1]: " in message
    with pytest.raises(LossMismatchError, match=r"cls_loss_fn\[1\]='dice'"):
        ObjectDetector(BACKBONE, num_classes=3, cls_loss_fn=["focal", "dice"], pretrained=False)


def test_the_detector_builds_every_term_summed_as_fcos_needs() -> None:
    model = _model(ObjectDetector, num_classes=3, cls_loss_fn=["focal", "bce_with_logits"])
    terms = model.loss.module.cls_loss
    assert isinstance(terms, WeightedSumLoss)
    assert [m.reduction for m in terms.losses] == ["sum", "sum"]
    assert (
        model.hparams["cls_loss_fn"]["params"]["terms"][0]["params"] == {}
    )  # the feed's, not stored


def test_a_weighted_sum_instance_is_rebuilt_for_the_model() -> None:
    instance = WeightedSumLoss(terms=["cross_entropy", "bce"])
    model = _model(ImageClassifier, num_classes=3, loss_fn=instance)
    assert model.loss.module is not instance
    assert model.hparams["loss_fn"] == LossSpec.of(instance).model_dump(mode="json")  # type: ignore[union-attr]
    images, labels = model.unpack_batch(_labels())
    assert torch.isfinite(model.compute_loss(model(images), labels)[0])


def test_a_list_with_loss_kwargs_is_refused() -> None:
    with pytest.raises(ValueError, match="give each term its own params"):
        _model(SemanticSegmentor, num_classes=3, loss_fn=["dice", "ce"], loss_kwargs={"smooth": 1})


@pytest.mark.parametrize(
    ("model_cls", "argument", "terms", "keys", "batch"),
    [LISTS[1], LISTS[2]],
    ids=["SemanticSegmentor", "ObjectDetector"],
)
def test_checkpoints_store_the_list_as_plain_data_and_rebuild_it(
    model_cls: type,
    argument: str,
    terms: list[Any],
    keys: list[str],
    batch: Any,
    tmp_path: Path,
) -> None:
    model = _model(model_cls, num_classes=3, **{argument: terms})
    trainer = AutoTrainer(
        default_root_dir=tmp_path,
        max_steps=1,
        accelerator="cpu",
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader([batch()], batch_size=None)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    for key in keys:
        assert f"val/{key}" in trainer.logged_metrics
    path = trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    stored = torch.load(path, weights_only=True)["hyper_parameters"][argument]
    assert stored == model.hparams[argument] and stored["name"] == "weighted_sum"
    assert [t["name"] for t in stored["params"]["terms"]] == [
        LossSpec(name=t if isinstance(t, str) else t["name"]).name for t in terms
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = model_cls.load_from_checkpoint(path)
    assert loaded.hparams[argument] == stored
    (before,) = [m for m in model.loss.modules() if isinstance(m, WeightedSumLoss)]
    (after,) = [m for m in loaded.loss.modules() if isinstance(m, WeightedSumLoss)]
    assert same_state(before, after) and before.terms == after.terms

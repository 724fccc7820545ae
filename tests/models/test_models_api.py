"""The shape of the models' API: explicit signatures, one loss attribute, one step template.

IDEs and the config CLI (jsonargparse) read the ``__init__`` signatures and docstrings, so
every argument is named, typed, defaulted where it has a default, and documented.
"""

from __future__ import annotations

import inspect
import pickle
import re
import warnings
from typing import Any

import pytest
import torch
from torch import nn

from autotimm import ImageClassifier, InstanceSegmentor, ObjectDetector, SemanticSegmentor
from autotimm.losses.model_loss import ModelLoss
from autotimm.models.task import TaskModel

BACKBONE = "resnet10t"
MODELS = [ImageClassifier, SemanticSegmentor, ObjectDetector, InstanceSegmentor]
TINY: dict[type, dict[str, Any]] = {
    ImageClassifier: {},
    SemanticSegmentor: {"decoder_channels": 32},
    ObjectDetector: {"fpn_channels": 32, "head_convs": 1},
    InstanceSegmentor: {"fpn_channels": 32, "head_convs": 1, "mask_channels": 16, "mask_convs": 1},
}


def _documented(model_cls: type) -> set[str]:
    """The names of the ``Args:`` section of the class docstring."""
    doc = inspect.getdoc(model_cls) or ""
    section = doc.split("Args:\n", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^    (\w+):", section, flags=re.MULTILINE))


@pytest.mark.parametrize("model_cls", MODELS)
def test_every_argument_is_explicit_typed_and_documented(model_cls: type) -> None:
    parameters = list(inspect.signature(model_cls.__init__).parameters.values())[1:]
    kinds = {p.kind for p in parameters}
    assert (
        inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    )
    untyped = [p.name for p in parameters if p.annotation is inspect.Parameter.empty]
    assert not untyped
    assert [p.name for p in parameters[:2]] == ["backbone", "num_classes"]
    assert all(p.default is not inspect.Parameter.empty for p in parameters[2:])
    assert _documented(model_cls) == {p.name for p in parameters}


def test_instance_segmentor_takes_every_detector_argument_with_its_default() -> None:
    detector = inspect.signature(ObjectDetector.__init__).parameters
    segmentor = inspect.signature(InstanceSegmentor.__init__).parameters
    for name, parameter in detector.items():
        assert name in segmentor, name
        assert segmentor[name].default == parameter.default, name
        assert segmentor[name].annotation == parameter.annotation, name
    model = InstanceSegmentor(
        BACKBONE, num_classes=2, pretrained=False, nms_thresh=0.3, **TINY[InstanceSegmentor]
    )
    assert model.nms_thresh == 0.3 and model.hparams["nms_thresh"] == 0.3
    assert set(detector) - {"self"} <= set(model.hparams)


@pytest.mark.parametrize("model_cls", MODELS)
def test_the_loss_has_one_name_on_a_model(model_cls: type) -> None:
    model = model_cls(BACKBONE, num_classes=2, pretrained=False, **TINY[model_cls])
    assert isinstance(model, TaskModel)
    assert isinstance(model.loss, ModelLoss) and isinstance(model.loss.module, nn.Module)
    assert not hasattr(model, "criterion")
    losses = [name for name, m in model.named_children() if isinstance(m, ModelLoss)]
    assert losses == (["loss", "mask_loss"] if model_cls is InstanceSegmentor else ["loss"])
    # the step template is the shared one: no model overrides the Lightning step hooks
    for hook in ("training_step", "validation_step", "test_step", "shared_step"):
        assert getattr(model_cls, hook) is getattr(TaskModel, hook), hook


@pytest.mark.parametrize("model_cls", MODELS)
def test_models_pickle_with_their_default_losses(model_cls: type) -> None:
    model = model_cls(BACKBONE, num_classes=2, pretrained=False, **TINY[model_cls])
    clone = pickle.loads(pickle.dumps(model))
    assert type(clone.loss.module) is type(model.loss.module)
    assert clone.loss.spec == model.loss.spec
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in clone.state_dict().items())


def test_model_loss_adapts_raw_logits_like_the_model_does() -> None:
    model = ImageClassifier(BACKBONE, num_classes=3, loss_fn="bce", pretrained=False)
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    expected = nn.functional.binary_cross_entropy(
        logits.sigmoid(), nn.functional.one_hot(labels, 3).float()
    )
    assert model.loss(logits, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert (model.loss.name, model.loss.expects, model.loss.target) == (
        "bce",
        "probabilities",
        "dense",
    )


def test_a_non_summed_fcos_component_is_reported_once() -> None:
    """The fcos criterion is the one place that checks its components are summed."""

    class L1Boxes(nn.Module):
        reduction = "mean"

        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return (pred - target).abs().mean()

    for kwargs in (
        {"reg_loss_fn": L1Boxes()},
        {"cls_loss_fn": {"name": "focal", "params": {"reduction": "mean"}}},
        {"cls_loss_kwargs": {"reduction": "mean"}},
    ):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ObjectDetector(
                BACKBONE, num_classes=2, pretrained=False, **TINY[ObjectDetector], **kwargs
            )
        summed = [w for w in caught if "expects a summed loss" in str(w.message)]
        assert len(summed) == 1, [str(w.message) for w in caught]

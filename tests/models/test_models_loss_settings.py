"""Loss settings a model cannot train with are refused when it is built, settings changed
after a build survive a rebuild, and mixing checks its labels (found by trying them as a user
would: reduction='none', a term labelled 'loss', ``loss.reduction = 'sum'``, bad labels with
mixup, another loss at load time)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from autotimm import ImageClassifier, InstanceSegmentor, ObjectDetector, SemanticSegmentor
from autotimm.losses import LossMismatchError, LossSpec, LossTaskWarning, get_loss

BACKBONE = "resnet10t"


def _segmentor(**kwargs: Any) -> SemanticSegmentor:
    return SemanticSegmentor(BACKBONE, num_classes=3, pretrained=False, **kwargs)


# --------------------------------------------------------------------------- refused when built
@pytest.mark.parametrize(
    ("loss_fn", "argument"),
    [
        ({"name": "cross_entropy", "params": {"reduction": "none"}}, "loss_fn"),
        (["dice", {"name": "cross_entropy", "params": {"reduction": "none"}}], "loss_fn[1]"),
    ],
)
def test_a_loss_that_gives_no_single_number_is_refused(loss_fn: Any, argument: str) -> None:
    with pytest.raises(LossMismatchError, match=r"reduction='none'") as raised:
        _segmentor(loss_fn=loss_fn)
    assert str(raised.value).startswith(f"SemanticSegmentor cannot use {argument}=")
    with pytest.raises(LossMismatchError, match=r"reduction='none'"):
        ObjectDetector(
            BACKBONE,
            num_classes=2,
            pretrained=False,
            cls_loss_fn={"name": "focal", "params": {"reduction": "none"}},
        )


@pytest.mark.parametrize(
    ("loss_fn", "message"),
    [
        ({"name": "cross_entropy", "params": {"weight": [1.0, 2.0]}}, "its weight has 2 values"),
        (["dice", {"name": "cross_entropy", "params": {"weight": [1, 2]}}], "its weight has 2"),
        ({"name": "focal_pixelwise", "params": {"alpha": [1.0, 2.0, 3.0, 4.0]}}, "alpha has 4"),
    ],
)
def test_a_loss_weight_per_class_of_the_wrong_length_is_refused(loss_fn: Any, message: str) -> None:
    with pytest.raises(LossMismatchError, match=message) as raised:
        _segmentor(loss_fn=loss_fn)
    assert "this prediction has 3 classes" in str(raised.value)
    _segmentor(loss_fn="cross_entropy", class_weights=[1, 2, 3])  # the model's own: fine


# --------------------------------------------------------------------------- logged names
def test_every_term_is_logged_as_loss_underscore_its_label() -> None:
    model = _segmentor(
        loss_fn=[
            "dice",
            {"name": "cross_entropy", "label": "loss"},
            {"name": "jaccard", "label": "lossy"},
        ]
    )
    model.loss(torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 8, 8)))
    assert sorted(model.loss.components()) == ["loss_dice", "loss_loss", "loss_lossy"]


# --------------------------------------------------------------------------- set after a build
def test_a_reduction_set_after_the_build_is_kept_by_the_spec_and_by_a_model() -> None:
    logits, labels = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    ce = get_loss("cross_entropy")
    ce.reduction = "sum"
    assert LossSpec.of(ce).params == {"reduction": "sum"}
    torch.testing.assert_close(LossSpec.of(ce).build()(logits, labels), ce(logits, labels))
    mix = get_loss("weighted_sum", terms=["cross_entropy", "poly1"])
    mix.reduction = "sum"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ImageClassifier(BACKBONE, num_classes=3, loss_fn=mix, pretrained=False)
    assert model.loss.module.reduction == "sum"
    torch.testing.assert_close(model.loss(logits, labels), mix(logits, labels))
    rebuilt = LossSpec.model_validate(model.hparams["loss_fn"]).build()
    torch.testing.assert_close(rebuilt(logits, labels), mix(logits, labels))


# --------------------------------------------------------------------------- mixing checks labels
@pytest.mark.parametrize(
    ("kwargs", "labels", "message"),
    [
        (
            {"num_classes": 3, "mixup_alpha": 0.2},
            [0, 1, 3, 1],
            "label 3 is not a class in \\[0, 3\\)",
        ),
        ({"num_classes": 3, "label_smoothing": 0.1}, [0, -1, 2, 1], "label -1 is not a class"),
        (
            {"num_classes": 1, "mixup_alpha": 0.2},
            [0, 1, 2, 1],
            "label 2 is not a class in \\[0, 2\\)",
        ),
        (
            {"num_classes": 3, "multi_label": True, "mixup_alpha": 0.2},
            [[0, 1, 2], [1, 0, 0], [0, 0, 1], [1, 1, 1]],
            "target value 2 is outside \\[0, 1\\]",
        ),
    ],
)
def test_mixing_checks_the_labels_before_timm_one_hot_encodes_them(
    kwargs: dict[str, Any], labels: list[Any], message: str
) -> None:
    model = ImageClassifier(BACKBONE, pretrained=False, **kwargs)
    with pytest.raises(ValueError, match=message):
        model.mix_batch(torch.randn(4, 3, 32, 32), torch.tensor(labels))


# --------------------------------------------------------------------------- another loss at load
def test_weights_load_into_a_model_with_another_loss_keeping_its_own_loss_state() -> None:
    trained = _segmentor(class_weights=[1, 2, 3], loss_fn=["cross_entropy", "dice"])
    state = trained.state_dict()
    other = _segmentor(loss_fn=["cross_entropy", "lovasz", "dice"])
    own = {k: v.clone() for k, v in other.state_dict().items() if k.startswith("loss.")}
    with pytest.warns(UserWarning, match="the loss keeps the state it was built with"):
        other.load_state_dict(state)  # strict
    assert all(torch.equal(other.state_dict()[k], v) for k, v in own.items())
    network = [k for k in state if not k.startswith("loss.")]
    assert all(torch.equal(other.state_dict()[k], state[k]) for k in network)  # weights loaded
    same = _segmentor(class_weights=[1, 2, 3], loss_fn=["cross_entropy", "dice"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        same.load_state_dict(state)


def test_a_detector_list_term_of_another_task_is_warned_about_once_by_its_argument() -> None:
    with pytest.warns(LossTaskWarning) as caught:
        ObjectDetector(BACKBONE, num_classes=2, pretrained=False, cls_loss_fn=["bce"])
    messages = [str(w.message) for w in caught if issubclass(w.category, LossTaskWarning)]
    assert len(messages) == 1 and "cls_loss_fn[0]" in messages[0], messages


# --------------------------------------------------------------------------- segmentation modes
@pytest.mark.parametrize(
    ("model_class", "kwargs", "message"),
    [
        (
            SemanticSegmentor,
            {"num_classes": 2, "loss_fn": {"name": "dice", "params": {"mode": "binary"}}},
            "mode='binary' takes one channel (the foreground), and this prediction has 2",
        ),
        (
            SemanticSegmentor,
            {"num_classes": 3, "loss_fn": {"name": "lovasz", "params": {"mode": "binary"}}},
            "mode='binary' takes one channel",
        ),
        (
            SemanticSegmentor,
            {
                "num_classes": 1,
                "loss_fn": {
                    "name": "dice",
                    "params": {"mode": "multilabel", "include_background": False},
                },
            },
            "the only channel of this prediction",
        ),
        (
            InstanceSegmentor,
            {
                "num_classes": 2,
                "mask_loss_fn": {"name": "jaccard", "params": {"mode": "multilabel"}},
            },
            "no channel dimension: it would score each row of a mask on its own",
        ),
        (
            InstanceSegmentor,
            {
                "num_classes": 2,
                "mask_loss_fn": ["mask", {"name": "tversky", "params": {"mode": "binary"}}],
            },
            "mode='binary' takes logits [B, 1, H, W]",
        ),
    ],
)
def test_a_segmentation_mode_that_cannot_take_the_prediction_is_refused_when_built(
    model_class: type, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(LossMismatchError) as raised:
        model_class(BACKBONE, pretrained=False, **kwargs)
    assert message in str(raised.value)


def test_the_modes_that_fit_still_train() -> None:
    binary = _segmentor_of(1, {"name": "dice", "params": {"mode": "binary"}})
    multilabel = _segmentor_of(
        3, {"name": "jaccard", "params": {"mode": "multilabel", "include_background": False}}
    )
    masks = InstanceSegmentor(
        BACKBONE,
        num_classes=2,
        pretrained=False,
        mask_loss_fn={"name": "focal_pixelwise", "params": {"mode": "multilabel"}},
    )
    assert binary.loss.target == multilabel.loss.target == masks.mask_loss.target == "dense"


def _segmentor_of(classes: int, loss_fn: Any) -> SemanticSegmentor:
    return SemanticSegmentor(BACKBONE, num_classes=classes, pretrained=False, loss_fn=loss_fn)

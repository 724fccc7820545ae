"""Warnings name the line the user wrote, not a frame inside autotimm, torch or Lightning."""

from __future__ import annotations

import warnings

import pytest
import torch

from autotimm import ImageClassifier, SemanticSegmentor
from autotimm.losses import BCEWithLogitsLoss, LossTaskWarning

BACKBONE = "resnet10t"


def test_a_loss_warning_at_model_construction_names_the_users_line() -> None:
    with pytest.warns(LossTaskWarning) as caught:
        ImageClassifier(BACKBONE, num_classes=3, loss_fn="dice", pretrained=False)
    assert {w.filename for w in caught} == {__file__}
    with pytest.warns(UserWarning, match="no per-class weight parameter") as caught:
        SemanticSegmentor(
            BACKBONE, num_classes=3, loss_fn="lovasz", class_weights=[1, 2, 3], pretrained=False
        )
    assert {w.filename for w in caught} == {__file__}


def test_a_warning_from_a_loss_call_names_the_users_line() -> None:
    logits, dense = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.warns(UserWarning, match="smooths class-index targets only") as caught:
        BCEWithLogitsLoss(label_smoothing=0.1)(logits, dense)  # through nn.Module.__call__
    assert [w.filename for w in caught] == [__file__]
    spec = {"name": "bce_with_logits", "params": {"label_smoothing": 0.1}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ImageClassifier(BACKBONE, num_classes=3, loss_fn=spec, pretrained=False)
    with pytest.warns(UserWarning, match="smooths class-index targets only") as caught:
        model.compute_loss(logits, torch.tensor([0, 2]))  # model -> ModelLoss -> loss
    assert [w.filename for w in caught] == [__file__]

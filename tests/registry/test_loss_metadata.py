"""What a registration says a loss takes, beyond ``expects`` and ``target``: where it reads the
classes (``class_dim``), whether it takes soft targets, and which parameter takes per-class
weights. Each is checked when the loss is registered, as ``expects`` and ``target`` are."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from autotimm.losses import (
    LossRegistrationError,
    LossRegistry,
    describe,
    get_entry,
    register_loss,
)


class _Weighted(nn.Module):
    def __init__(self, weight: torch.Tensor | None = None, smooth: float = 1.0) -> None:
        super().__init__()
        self.weight, self.smooth = weight, smooth


class _ClassWeights(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        super().__init__()
        self.class_weights = class_weights


def test_defaults_are_torchs_conventions(registry: LossRegistry) -> None:
    entry = LossRegistry().register_loss("weighted", _Weighted)
    assert (entry.class_dim, entry.soft_targets, entry.class_weights) == (1, False, None)
    assert entry.class_weights_broadcast is False


def test_a_parameter_named_class_weights_is_the_per_class_weight_parameter() -> None:
    assert LossRegistry().register_loss("cw", _ClassWeights).class_weights == "class_weights"
    declared = LossRegistry().register_loss("w", _Weighted, class_weights="weight")
    assert declared.class_weights == "weight"


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"class_dim": 2}, r"Unknown class_dim 2; expected 1 .* or -1"),
        ({"class_dim": True}, "Unknown class_dim True"),
        ({"soft_targets": "yes"}, "soft_targets must be True or False"),
        (
            {"class_weights": "wieght"},
            r"class_weights='wieght' must name .*weight, smooth; did you mean 'weight'\?",
        ),
        ({"class_weights_broadcast": True}, "class_weights_broadcast=True needs class_weights"),
        ({"class_weights": "weight", "class_weights_broadcast": 1}, "must be True or False"),
    ],
)
def test_metadata_is_checked_at_registration(metadata: dict[str, Any], message: str) -> None:
    registry = LossRegistry()
    with pytest.raises(ValueError, match=message):
        registry.register_loss("weighted", _Weighted, **metadata)
    assert not registry.has_loss("weighted")


def test_the_decorator_takes_the_metadata_and_describe_shows_it(registry: LossRegistry) -> None:
    @register_loss(
        task="classification",
        target="dense",
        class_dim=-1,
        soft_targets=True,
        class_weights="weight",
        class_weights_broadcast=True,
    )
    class ChannelsLastLoss(_Weighted):
        pass

    entry = get_entry("channels_last")
    assert (entry.class_dim, entry.soft_targets, entry.class_weights) == (-1, True, "weight")
    assert entry.class_weights_broadcast
    text = describe("channels_last")
    assert "soft targets too" in text and "[..., C]; per-class weights: weight (broadcast)" in text
    with pytest.raises(LossRegistrationError, match="class_weights='nope' must name"):
        register_loss(task=None, class_weights="nope")(type("Other", (_Weighted,), {}))


@pytest.mark.parametrize(
    ("name", "class_weights", "broadcast", "soft", "class_dim"),
    [
        ("cross_entropy", "weight", False, True, 1),
        ("nll", "weight", False, False, 1),
        ("bce_with_logits", "weight", True, True, 1),
        ("bce", "weight", True, True, 1),
        ("mse", None, False, True, 1),
        ("focal", None, False, True, -1),
        ("focal_pixelwise", "alpha", False, False, 1),
        ("combined_segmentation", "class_weights", False, False, 1),
        ("dice", "class_weights", False, False, 1),
        ("mask", None, False, True, 1),
    ],
)
def test_builtin_losses_declare_what_they_take(
    name: str, class_weights: str | None, broadcast: bool, soft: bool, class_dim: int
) -> None:
    entry = get_entry(name)
    assert entry.class_weights == class_weights and entry.class_weights_broadcast == broadcast
    assert entry.soft_targets == soft and entry.class_dim == class_dim

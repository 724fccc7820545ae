"""LossSpec round trips, and the law of get_loss: a loss or a LossConfigError, nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from torch import nn

from autotimm.losses import (
    FocalLoss,
    LossConfigError,
    LossSpec,
    UnknownLossError,
    get_entry,
    get_loss,
    get_loss_registry,
    list_available_losses,
    register_custom_loss,
)

NAMES = list_available_losses()

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=300),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.text(max_size=6),
)
values = st.one_of(
    scalars,
    st.lists(st.floats(min_value=0, max_value=10, width=32), min_size=1, max_size=4),
    st.lists(scalars, max_size=3),
    st.builds(lambda n: torch.ones(n), st.integers(min_value=1, max_value=4)),
    st.dictionaries(st.text(max_size=3), scalars, max_size=2),
)


@st.composite
def kwargs_for(draw: st.DrawFn, name: str) -> dict[str, Any]:
    real = [p.name for p in get_entry(name).parameters]
    keys = draw(
        st.lists(
            st.one_of(
                st.sampled_from(real) if real else st.nothing(), st.text(min_size=1, max_size=8)
            ),
            max_size=4,
            unique=True,
        )
    )
    return {key: draw(values) for key in keys}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(NAMES))
def test_arbitrary_kwargs_build_a_loss_or_raise_loss_config_error(
    data: st.DataObject, name: str
) -> None:
    kwargs = data.draw(kwargs_for(name))
    try:
        loss = get_loss(name, **kwargs)
    except LossConfigError as error:
        assert error.loss_name == name
        assert error.problems
        assert all(p.argument in str(error) for p in error.problems)
    else:
        assert isinstance(loss, nn.Module)


good_params: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "focal": st.fixed_dictionaries(
        {},
        optional={
            "alpha": st.one_of(st.none(), st.floats(0, 1)),
            "gamma": st.floats(0, 5),
            "reduction": st.sampled_from(["mean", "sum", "none"]),
        },
    ),
    "cross_entropy": st.fixed_dictionaries(
        {},
        optional={
            "weight": st.lists(st.floats(0.125, 5, width=32), min_size=3, max_size=3),
            "label_smoothing": st.floats(0, 1),
            "ignore_index": st.integers(-100, 255),
        },
    ),
    "dice": st.fixed_dictionaries(
        {},
        optional={"num_classes": st.integers(1, 50), "smooth": st.floats(0, 10)},
    ),
    "combined_segmentation": st.fixed_dictionaries(
        {"num_classes": st.integers(1, 5)},
        optional={
            "ce_weight": st.floats(0, 3),
            "dice_weight": st.floats(0, 3),
            "class_weights": st.builds(lambda n: torch.rand(n) + 0.1, st.just(5)),
        },
    ),
}


@settings(max_examples=100, deadline=None)
@given(data=st.data(), name=st.sampled_from(sorted(good_params)))
def test_loss_spec_round_trips_through_json(data: st.DataObject, name: str) -> None:
    params = data.draw(good_params[name])
    spec = LossSpec(name=name, params=params)
    dumped = spec.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped  # plain JSON all the way down
    again = LossSpec.model_validate(dumped)
    assert again == spec
    assert LossSpec.model_validate_json(spec.model_dump_json()) == spec
    assert again.build().__class__ is spec.build().__class__
    assert LossSpec.model_validate(again.model_dump(mode="json")).model_dump(mode="json") == dumped


def test_loss_spec_canonicalises_aliases_and_stores_tensors_as_lists() -> None:
    spec = LossSpec(name="ce", params={"weight": torch.tensor([1.0, 2.0]), "label_smoothing": 0.1})
    assert spec.model_dump(mode="json") == {
        "name": "cross_entropy",
        "params": {"weight": [1.0, 2.0], "label_smoothing": 0.1},
        "class_path": "autotimm.losses.classification.CrossEntropyLoss",
    }
    built = spec.build()
    assert torch.equal(built.weight, torch.tensor([1.0, 2.0]))
    assert LossSpec.model_validate("dice") == LossSpec(name="dice")


def test_loss_spec_rejects_what_would_not_build() -> None:
    with pytest.raises(LossConfigError, match="gamma: expected float >= 0"):
        LossSpec(name="focal", params={"gamma": -1.0})
    with pytest.raises(UnknownLossError, match="Did you mean 'dice'"):
        LossSpec(name="dcie")
    with pytest.raises(LossConfigError, match="alpha: expected float"):
        LossSpec.model_validate({"name": "focal", "params": {"alpha": object()}})
    with pytest.raises(LossConfigError, match=r"cls_loss=.*cannot be stored as plain data"):
        LossSpec(name="fcos", params={"cls_loss": get_loss("focal", reduction="sum")})
    with pytest.raises(ValidationError):  # not a registry problem: pydantic's own error
        LossSpec.model_validate({"name": "focal", "extra_key": 1})


def test_spec_of_a_directly_constructed_registered_loss() -> None:
    spec = LossSpec.of(FocalLoss(alpha=0.3, gamma=2.5))
    assert spec == LossSpec(name="focal", params={"alpha": 0.3, "gamma": 2.5})
    rebuilt = spec.build()
    assert isinstance(rebuilt, FocalLoss)
    assert LossSpec.of(get_loss("ce", label_smoothing=0.2)) == LossSpec(
        name="cross_entropy", params={"label_smoothing": 0.2}
    )
    assert LossSpec.of(nn.CrossEntropyLoss()) is None

    class SubFocal(FocalLoss):
        pass

    assert LossSpec.of(SubFocal(alpha=0.5)) is None  # not registered: no guessing


def test_spec_of_a_custom_loss_registered_after_construction() -> None:
    class Late(nn.Module):
        def __init__(self, k: int = 1) -> None:
            super().__init__()
            self.k = k

    with get_loss_registry().temporary():
        register_custom_loss("late", Late)
        spec = LossSpec.of(Late(k=4))
        assert spec == LossSpec(name="late", params={"k": 4})
        assert spec.build().k == 4


def test_resolve_loss_reports_bad_plain_data_as_loss_config_error() -> None:
    from autotimm.losses.resolve import resolve_loss

    with pytest.raises(LossConfigError, match="gama: unknown argument; did you mean 'gamma'"):
        resolve_loss({"name": "focal", "params": {"gama": 2.0}})
    resolved = resolve_loss(
        {"name": "dice", "params": {"smooth": 0.5}}, context={"num_classes": 3, "lr": 0.1}
    )
    assert resolved.spec == LossSpec(name="dice", params={"smooth": 0.5, "num_classes": 3})
    assert resolved.module.smooth == 0.5 and resolved.module.num_classes == 3


def test_tensor_parameters_take_plain_numbers_and_round_trip_through_specs() -> None:
    mask = get_loss("mask", pos_weight=2.0)
    assert torch.equal(mask.pos_weight, torch.tensor(2.0))
    spec = LossSpec.of(mask)
    assert spec == LossSpec(name="mask", params={"pos_weight": 2.0})
    rebuilt = LossSpec.model_validate_json(spec.model_dump_json()).build()
    assert torch.equal(rebuilt.pos_weight, torch.tensor(2.0))

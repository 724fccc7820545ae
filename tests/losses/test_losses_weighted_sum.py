"""Issue 12, section 1: ``weighted_sum``, any weighted mix of registered losses.

The loss alone (``get_loss``): exactly the weighted sum of its terms called by hand, values and
gradients; all-at-once validation naming each term; logged components; ``reduction="none"``;
plain-data specs. Built for a caller (``resolve_loss`` with a feed): each term resolved as it
would be alone and adapted to what it takes. Models and configs are in their own directories.
"""

from __future__ import annotations

import json
import pickle
import warnings
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from autotimm.losses import (
    LossConfigError,
    LossMismatchError,
    LossSpec,
    LossTaskWarning,
    WeightedSumLoss,
    describe,
    get_entry,
    get_loss,
    get_loss_registry,
    register_loss,
)
from autotimm.losses._rebuild import same_state
from autotimm.losses.adapt import LossFeed, adapt_to_loss, fitting_losses, takes_of
from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossCaller, resolve_loss
from autotimm.losses.terms import parse_terms

PIXELS = LossFeed(
    task="segmentation",
    target="class_indices",
    prediction=("B", "C", "H", "W"),
    num_classes=3,
    ignore_index=255,
)
LABELS = LossFeed(
    task="classification", target="class_indices", prediction=("N", "C"), num_classes=4
)


def _seg(seed: int = 0, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 3, 5, 5, generator=g, dtype=dtype).requires_grad_()
    target = torch.randint(0, 3, (2, 5, 5), generator=g)
    return logits, target


def _grad(value: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(value.sum(), leaf)
    return grad


# --------------------------------------------------------------------------- the sum itself
def test_the_issue_example_is_exactly_the_weighted_sum_of_the_two_losses() -> None:
    loss = get_loss(
        "weighted_sum",
        terms=[
            {"name": "ce", "weight": 1.0},
            {"name": "dice", "weight": 3.0, "params": {"smooth": 0.5}},
        ],
    )
    assert isinstance(loss, WeightedSumLoss)
    logits, target = _seg()
    value = loss(logits, target)
    by_hand = get_loss("ce")(logits, target) + 3.0 * get_loss("dice", smooth=0.5)(logits, target)
    assert torch.equal(value, by_hand)
    assert torch.equal(_grad(value, logits), _grad(by_hand, logits))


@settings(max_examples=40, deadline=None)
@given(
    weights=st.lists(
        st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False),
        min_size=3,
        max_size=3,
    ),
    seed=st.integers(0, 2**16),
)
def test_any_weights_give_the_weighted_sum_by_hand_values_and_gradients(
    weights: list[float], seed: int
) -> None:
    names = ["cross_entropy", "dice", "focal_pixelwise"]
    loss = get_loss(
        "weighted_sum", terms=[{"name": n, "weight": w} for n, w in zip(names, weights)]
    )
    logits, target = _seg(seed)
    value = loss(logits, target)
    parts = [get_loss(n)(logits, target) for n in names]
    zero = torch.zeros((), dtype=torch.float64)
    by_hand = sum((w * part for w, part in zip(weights, parts) if w != 0), zero)
    torch.testing.assert_close(value, by_hand, rtol=1e-12, atol=0)
    expected_grad = (
        _grad(by_hand, logits) if any(weights) else torch.zeros_like(logits)  # 0: nothing to train
    )
    torch.testing.assert_close(_grad(value, logits), expected_grad, rtol=1e-12, atol=1e-300)
    for key, part in zip(names, parts):
        assert torch.equal(loss.last_components[key], part.detach())


def test_a_term_of_weight_zero_is_logged_but_not_trained_even_when_infinite() -> None:
    class _Infinite(nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return logits.sum() * float("inf")

    register_loss("infinite", task=None)(_Infinite)
    loss = get_loss("weighted_sum", terms=["dice", {"name": "infinite", "weight": 0}])
    logits, target = _seg()
    value = loss(logits, target)
    assert torch.equal(value, get_loss("dice")(logits, target))
    assert torch.isfinite(_grad(value, logits)).all()
    assert torch.isinf(loss.last_components["infinite"])
    nothing = get_loss("weighted_sum", terms=[{"name": "infinite", "weight": 0.0}])(logits, target)
    assert nothing.item() == 0.0 and torch.equal(_grad(nothing, logits), torch.zeros_like(logits))


def test_terms_may_be_bare_names_specs_and_nested_weighted_sums() -> None:
    inner = {
        "name": "weighted_sum",
        "params": {"terms": ["dice", {"name": "jaccard", "weight": 2}]},
    }
    loss = get_loss("weighted_sum", terms=["ce", LossSpec(name="lovasz"), inner])
    logits, target = _seg()
    dice, jaccard = get_loss("dice")(logits, target), get_loss("jaccard")(logits, target)
    expected = (
        get_loss("ce")(logits, target) + get_loss("lovasz")(logits, target) + (dice + 2 * jaccard)
    )
    torch.testing.assert_close(loss(logits, target), expected, rtol=1e-12, atol=0)


# --------------------------------------------------------------------------- validation
def test_every_problem_of_every_term_is_listed_at_once_naming_its_term() -> None:
    with pytest.raises(LossConfigError) as raised:
        get_loss(
            "weighted_sum",
            terms=[
                {"name": "ce", "wieght": 1.0},
                {"name": "dice", "weight": 3.0, "params": {"smoth": 0.5}},
                {"name": "dise"},
                {"name": "tversky", "weight": -1, "params": {"alpha": "high"}, "label": "a b"},
                {"name": "focal", "weight": float("nan")},
                7,
                {"params": {}},
            ],
        )
    error = raised.value
    assert error.loss_name == "weighted_sum"
    lines = [str(problem) for problem in error.problems]
    assert "terms[1] (dice): smoth: unknown argument; did you mean 'smooth'?" in lines
    assert "terms[0] (ce): wieght: unknown key" in lines[0] and "did you mean 'weight'" in lines[0]
    assert any(
        line.startswith("terms[2] (dise): name: Unknown loss 'dise'.") and "'dice'" in line
        for line in lines
    )
    assert "terms[3] (tversky): weight: expected a finite number >= 0, got -1 (int)" in lines
    assert any(line.startswith("terms[3] (tversky): alpha: expected float") for line in lines)
    assert any(line.startswith("terms[3] (tversky): label: expected a name") for line in lines)
    assert "terms[4] (focal): weight: expected a finite number >= 0, got nan (float)" in lines
    assert any(line.startswith("terms[5]: expected a loss name or a term") for line in lines)
    assert "terms[6]: name: missing; a term needs the registry name of a loss" in lines
    assert len(lines) == 9, lines
    assert str(error).count("\n  - ") == 9


@pytest.mark.parametrize(
    ("terms", "message"),
    [
        ([], "expected at least one term"),
        ("dice", "expected a list of terms"),
        ({"name": "dice"}, "expected a list of terms"),
        ([{"name": "dice", "weight": True}], "weight: expected a finite number >= 0, got True"),
        ([{"name": "dice", "weight": "2"}], "weight: expected a finite number >= 0, got '2'"),
        ([{"name": "dice", "weight": float("inf")}], "got inf"),
        ([{"name": "dice", "params": [1]}], "params: expected a mapping"),
        ([{"name": ""}], "name: expected the registry name of a loss"),
        ([{"name": "dice", "class_path": 3}], "class_path: expected 'module.QualName'"),
        (
            [{"name": "dice", "label": "x"}, {"name": "ce", "label": "x"}],
            "terms[1] (cross_entropy): label: 'x' is the label of terms[0] too",
        ),
        (
            [{"name": "cross_entropy", "params": {"weight": [1.0, -2.0]}}],
            "terms[0] (cross_entropy): weight:",
        ),
        ([{"name": "fcos", "params": {"cls_loss": nn.L1Loss()}}], "cannot be stored as plain data"),
    ],
)
def test_bad_terms_are_a_config_error_that_names_the_term(terms: Any, message: str) -> None:
    with pytest.raises(LossConfigError, match="weighted_sum") as raised:
        get_loss("weighted_sum", terms=terms)
    assert message in str(raised.value)
    with pytest.raises(LossConfigError):  # the same when the class is built directly
        WeightedSumLoss(terms=terms)
    with pytest.raises(LossConfigError):  # and when a spec is read back
        LossSpec(name="weighted_sum", params={"terms": terms})


def test_a_required_parameter_the_term_leaves_out_is_refused_only_when_nobody_supplies_it() -> None:
    class _NeedsClasses(nn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.num_classes = num_classes

        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return logits.mean() * 0 + self.num_classes

    register_loss("needs_classes", task=None)(_NeedsClasses)
    parse_terms(["needs_classes"])  # the term's shape is fine: a caller may supply it
    with pytest.raises(
        LossConfigError, match=r"terms\[0\] \(needs_classes\): num_classes: missing"
    ):
        get_loss("weighted_sum", terms=["needs_classes"])
    built = resolve_loss(["dice", "needs_classes"], feed=PIXELS, context={"num_classes": 3})
    assert built.module.losses[1].num_classes == 3


# --------------------------------------------------------------------------- logged parts
def test_components_are_keyed_by_label_or_name_unique_when_a_name_repeats() -> None:
    loss = get_loss(
        "weighted_sum",
        terms=[
            "dice",
            {"name": "dice", "params": {"smooth": 0.0}},
            {"name": "ce", "label": "dice_1"},
            "dice",
            {"name": "lovasz", "label": "boundary"},
        ],
    )
    assert loss.component_keys == ("dice", "dice_2", "dice_1", "dice_3", "boundary")
    logits, target = _seg()
    loss(logits, target)
    assert list(loss.last_components) == list(loss.component_keys)
    assert all(not v.requires_grad for v in loss.last_components.values())
    assert torch.equal(loss.last_components["dice_1"], get_loss("ce")(logits, target).detach())
    model_loss = ModelLoss(resolve_loss(loss, feed=PIXELS))
    model_loss(logits, target)
    assert sorted(model_loss.components()) == sorted(f"loss_{k}" for k in loss.component_keys)


def test_nested_components_are_logged_too() -> None:
    loss = ModelLoss(resolve_loss(["combined_segmentation", "lovasz"], feed=PIXELS))
    logits, target = _seg()
    loss(logits, target)
    assert set(loss.components()) == {
        "loss_combined_segmentation",
        "loss_lovasz",
        "loss_ce",
        "loss_dice",
    }


# --------------------------------------------------------------------------- reduction
def test_unreduced_terms_are_added_with_broadcasting() -> None:
    none = {"reduction": "none"}
    loss = get_loss(
        "weighted_sum",
        terms=[
            {"name": "ce", "params": none},
            {"name": "focal_pixelwise", "params": none, "weight": 0.5},
            {"name": "dice", "weight": 2.0},  # a scalar: added to every pixel
        ],
    )
    logits, target = _seg()
    value = loss(logits, target)
    expected = (
        get_loss("ce", reduction="none")(logits, target)
        + 0.5 * get_loss("focal_pixelwise", reduction="none")(logits, target)
        + 2.0 * get_loss("dice")(logits, target)
    )
    assert value.shape == (2, 5, 5)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)


def test_unreduced_terms_whose_shapes_do_not_broadcast_are_an_error_naming_them() -> None:
    loss = get_loss(
        "weighted_sum",
        terms=[
            {"name": "ce", "params": {"reduction": "none"}},
            {"name": "dice", "params": {"reduction": "none"}},
        ],
    )
    with pytest.raises(ValueError, match=r"cross_entropy \[2, 5, 5\], dice \[2, 3\]"):
        loss(*_seg())


def test_reduction_reads_what_the_terms_share_and_sets_every_term() -> None:
    loss = get_loss("weighted_sum", terms=["ce", {"name": "dice", "params": {"reduction": "sum"}}])
    assert loss.reduction is None
    loss.reduction = "sum"
    assert loss.reduction == "sum" and [m.reduction for m in loss.losses] == ["sum", "sum"]
    logits, target = _seg()
    expected = get_loss("ce", reduction="sum")(logits, target) + get_loss("dice", reduction="sum")(
        logits, target
    )
    torch.testing.assert_close(loss(logits, target), expected, rtol=1e-12, atol=0)


def test_a_caller_that_needs_summed_terms_gets_every_term_summed() -> None:
    feed = LossFeed(
        task="detection", target="dense", prediction=("M", "C"), num_classes=3, reduction="sum"
    )
    built = resolve_loss(["focal", {"name": "bce_with_logits", "weight": 0.5}], feed=feed)
    assert [m.reduction for m in built.module.losses] == ["sum", "sum"]
    assert built.module.reduction == "sum"


# --------------------------------------------------------------------------- terms must agree
def test_terms_that_take_different_inputs_are_refused_when_built_alone() -> None:
    with pytest.raises(LossMismatchError, match=r"terms\[1\] \(giou\) takes boxes") as raised:
        get_loss("weighted_sum", terms=["dice", "giou"])
    assert "segmentation losses with segmentation losses" in str(raised.value)


def test_a_segmentation_and_a_detection_loss_are_refused_for_a_caller_naming_the_term() -> None:
    with pytest.raises(LossMismatchError) as raised:
        resolve_loss(["dice", "giou"], feed=PIXELS, owner="SemanticSegmentor")
    message = str(raised.value)
    assert message.startswith("SemanticSegmentor cannot use loss_fn[1]='giou': it takes boxes")
    assert "Registered losses that fit loss_fn[1]:" in message and "dice" in message
    assert "weighted_sum" not in raised.value.fitting


def test_several_terms_that_do_not_fit_are_all_named() -> None:
    with pytest.raises(LossMismatchError) as raised:
        resolve_loss(["giou", "dice", "fcos"], feed=PIXELS, owner="SemanticSegmentor")
    message = str(raised.value)
    assert "cannot use 2 of the terms of loss_fn" in message
    assert "loss_fn[0]='giou'" in message and "loss_fn[2]='fcos'" in message


# --------------------------------------------------------------------------- built for a caller
def test_each_term_is_resolved_exactly_as_it_would_be_alone() -> None:
    context = {"num_classes": 3, "ignore_index": 255, "ce_weight": 2.0, "unused": 1}
    weights = (1.0, 2.0, 0.5)
    terms = [
        "cross_entropy",
        {"name": "focal_pixelwise", "params": {"gamma": 3.0}},
        "combined",
        "dice",
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = resolve_loss(terms, feed=PIXELS, context=context, class_weights=weights)
    alone = []
    with warnings.catch_warnings(record=True) as caught_alone:
        warnings.simplefilter("always")
        for term in [
            "cross_entropy",
            {"name": "focal_pixelwise", "params": {"gamma": 3.0}},
            "combined",
            "dice",
        ]:
            alone.append(resolve_loss(term, feed=PIXELS, context=context, class_weights=weights))
    for module, single in zip(built.module.losses, alone):
        assert same_state(module, single.module)
        assert LossSpec.of(module) == single.spec
    assert built.module.losses[0].weight.tolist() == list(weights)  # class weights reached it
    assert built.module.losses[2].ce_weight == 2.0  # a context value reached combined's
    # dice has no per-class weight parameter: warned once, as it is alone
    assert [str(w.message) for w in caught] == [str(w.message) for w in caught_alone]
    assert built.takes is None and built.spec is not None
    assert (
        built.spec.params["terms"][0]["params"] == {}
    )  # the context is not stored: it is the model's


def test_each_term_gets_the_input_it_takes() -> None:
    built = resolve_loss(["cross_entropy", "bce", {"name": "nll", "weight": 2.0}], feed=LABELS)
    loss = ModelLoss(built)
    logits = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 1, 2, 2, 0])
    value = loss(logits, labels)
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    expected = (
        torch.nn.functional.cross_entropy(logits, labels)
        + torch.nn.functional.binary_cross_entropy(logits.sigmoid(), one_hot)
        + 2.0 * torch.nn.functional.nll_loss(logits.log_softmax(1), labels)
    )
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(
        _grad(value, logits), _grad(expected, logits), rtol=1e-10, atol=1e-12
    )


def test_for_caller_adapts_each_term_as_adapt_to_loss_would() -> None:
    loss = WeightedSumLoss.for_caller(LossCaller(LABELS, {"num_classes": 4}), terms=["bce", "mse"])
    logits, labels = torch.randn(3, 4), torch.tensor([1, 0, 3])
    expected = 0.0
    for module in loss.losses:
        entry = get_loss_registry().entry_for_class(type(module))
        expected = expected + module(
            *adapt_to_loss(LABELS, takes_of(module, entry), logits, labels)
        )
    assert torch.equal(loss(logits, labels), expected)


def test_a_term_registered_for_another_task_warns_naming_its_place() -> None:
    with pytest.warns(
        LossTaskWarning,
        match=r"loss 'focal_pixelwise' is registered for segmentation.*loss_fn\[1\]",
    ):
        resolve_loss(["cross_entropy", "focal_pixelwise"], feed=LABELS)


def test_an_instance_given_to_a_caller_is_built_again_for_it() -> None:
    alone = WeightedSumLoss(terms=["cross_entropy", "bce"])  # built directly: no feed
    logits, labels = torch.randn(3, 4), torch.tensor([1, 0, 3])
    with pytest.raises(ValueError, match="bce"):  # alone, bce gets the class indices as given
        alone(logits, labels)
    built = resolve_loss(alone, feed=LABELS, context={"num_classes": 4})
    assert built.module is not alone and built.spec == LossSpec.of(alone)
    assert torch.isfinite(built.module(logits, labels))


def test_a_list_with_loss_kwargs_is_refused() -> None:
    with pytest.raises(ValueError, match="give each term its own params"):
        resolve_loss(["dice", "ce"], feed=PIXELS, kwargs={"smooth": 0.5})


def test_weighted_sum_is_not_listed_as_a_loss_that_fits() -> None:
    for feed in (PIXELS, LABELS):
        assert "weighted_sum" not in fitting_losses(feed, get_loss_registry())


# --------------------------------------------------------------------------- as plain data
def test_the_spec_is_plain_data_and_rebuilds_the_same_loss() -> None:
    loss = get_loss(
        "weighted_sum",
        terms=[
            {"name": "ce", "params": {"weight": torch.tensor([1.0, 2.0, 3.0])}, "label": "main"},
            {"name": "dice", "weight": 0.25},
        ],
    )
    spec = LossSpec.of(loss)
    assert spec is not None
    stored = json.loads(json.dumps(spec.model_dump(mode="json")))
    assert stored["params"]["terms"][0] == {
        "name": "cross_entropy",
        "params": {"weight": [1.0, 2.0, 3.0]},
        "weight": 1.0,
        "label": "main",
        "class_path": "autotimm.losses.classification.CrossEntropyLoss",
    }
    again = LossSpec.model_validate(stored).build()
    assert same_state(again, loss) and LossSpec.of(again) == spec
    logits, target = _seg()
    assert torch.equal(again(logits, target), loss(logits, target))


def test_a_directly_built_loss_reads_back_into_its_spec_and_pickles() -> None:
    loss = WeightedSumLoss(terms=["lovasz", {"name": "dice", "weight": 2.0}])
    spec = LossSpec.of(loss)
    assert spec is not None and [t["name"] for t in spec.params["terms"]] == ["lovasz", "dice"]
    loss(*_seg())  # its last components do not change what it is
    assert LossSpec.of(loss) == spec
    again = pickle.loads(pickle.dumps(loss))
    assert same_state(again, loss) and again.component_keys == loss.component_keys


# --------------------------------------------------------------------------- described
def test_describe_and_the_json_schema_show_the_terms_structure() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    text = describe("weighted_sum")
    assert (
        "terms: list[str | {name: str, params: dict = {}, weight: float >= 0 = 1.0, "
        "label: str | None = None}] required"
        in text
    )
    assert "expects:  what its caller feeds; each part gets what it takes" in text
    schema = get_entry("weighted_sum").schema.model_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    terms = schema["properties"]["terms"]
    assert schema["required"] == ["terms"] and terms["minItems"] == 1
    term = terms["items"]["anyOf"][1]
    assert term["properties"]["weight"] == {
        "type": "number",
        "minimum": 0,
        "default": 1.0,
        "description": term["properties"]["weight"]["description"],
    }
    good = {"terms": ["ce", {"name": "dice", "weight": 3, "params": {"smooth": 0.5}, "label": "d"}]}
    jsonschema.validate(good, schema)
    for bad in (
        {"terms": []},
        {"terms": [{"name": "dice", "weight": -1}]},
        {"terms": [{"name": "dice", "wieght": 1}]},
        {"terms": [{"name": "dice", "label": "a b"}]},
        {"terms": [{"weight": 1}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)

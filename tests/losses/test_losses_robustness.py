"""Robustness of every built-in loss: extreme logits, nothing to learn, low precision, compile,
and the contract with the registry (typed, documented constructors; light imports)."""

from __future__ import annotations

import doctest
import inspect
import subprocess
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import autotimm.losses.classification as classification
import autotimm.losses.detection as detection
import autotimm.losses.segmentation as segmentation
import autotimm.losses.weighted_sum as weighted_sum
from autotimm.losses import get_entry, get_loss, list_available_losses

BUILTIN_MODULES = (classification, detection, segmentation, weighted_sum)

CASE_ARGUMENTS: dict[str, dict[str, object]] = {
    # per-pixel terms (their values broadcast with reduction="none"), ignoring label 255
    "weighted_sum": {
        "terms": [
            {"name": "cross_entropy", "params": {"ignore_index": 255}},
            {"name": "focal_pixelwise", "weight": 0.5, "params": {"ignore_index": 255}},
        ]
    },
}
"""Arguments of the built-ins that :func:`make_case` cannot build with their defaults."""


@dataclass
class Case:
    """A loss, the leaf tensor its prediction is made from, and how to call it."""

    loss: nn.Module
    leaf: torch.Tensor
    call: Callable[[torch.Tensor], torch.Tensor]


def _boxes(n: int, generator: torch.Generator, scale: float) -> torch.Tensor:
    xy = (torch.rand(n, 2, generator=generator) - 0.5) * 2 * scale
    wh = torch.rand(n, 2, generator=generator) * scale
    wh[: n // 3] = 0  # degenerate boxes: points and lines
    return torch.cat([xy, xy + wh], 1)


def make_case(
    name: str,
    *,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float32,
    nothing: bool = False,
    seed: int = 0,
    compile: bool = False,
) -> Case:
    """``nothing``: every target ignored, or no elements at all where nothing can be ignored.

    ``compile``: call the loss through ``torch.compile(fullgraph=True)`` (no graph breaks).
    """
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape, generator=g) * scale).to(dtype).requires_grad_()

    module = get_loss(name, **CASE_ARGUMENTS.get(name, {}))
    loss: Callable[..., torch.Tensor] = (
        torch.compile(module, fullgraph=True) if compile else module
    )
    if name in ("cross_entropy", "nll", "softmax_focal", "poly1"):
        x = leaf(6, 4)
        target = torch.full((6,), -100) if nothing else torch.randint(0, 4, (6,), generator=g)
        if name == "nll":
            return Case(module, x, lambda p: loss(torch.log_softmax(p, 1), target))
        return Case(module, x, lambda p: loss(p, target))
    if name in ("bce_with_logits", "bce", "mse", "asymmetric"):
        n = 0 if nothing else 6
        x = leaf(n, 4)
        target = (torch.rand(n, 4, generator=g) > 0.5).float()
        if name in ("bce_with_logits", "asymmetric"):
            return Case(module, x, lambda p: loss(p, target))
        return Case(module, x, lambda p: loss(torch.sigmoid(p), target))
    if name in ("quality_focal", "varifocal"):  # IoU scores at a few classes, else 0
        n = 0 if nothing else 6
        x = leaf(n, 4)
        positive = torch.rand(n, 4, generator=g) > 0.7
        target = torch.where(positive, torch.rand(n, 4, generator=g), 0.0)
        return Case(module, x, lambda p: loss(p, target))
    if name == "distribution_focal":  # 17 bins per box side, distances in [0, 16]
        n = 0 if nothing else 6
        x = leaf(n, 4 * 17)
        target = torch.rand(n, 4, generator=g) * 16
        return Case(module, x, lambda p: loss(p, target))
    if name == "focal":
        x = leaf(6, 4)
        target = torch.full((6,), -1) if nothing else torch.randint(-1, 5, (6,), generator=g)
        return Case(module, x, lambda p: loss(p, target))
    if name in ("giou", "diou", "ciou", "iou", "l1", "smooth_l1"):
        n = 0 if nothing else 9
        pred = _boxes(n, g, max(scale, 1.0)).to(dtype).requires_grad_()
        target = _boxes(n, g, max(scale, 1.0))
        return Case(module, pred, lambda p: loss(p, target))
    if name == "centerness":
        n = 0 if nothing else 6
        x = leaf(n)
        target = torch.rand(n, generator=g)
        return Case(module, x, lambda p: loss(p, target))
    if name == "fcos":
        x = leaf(6, 3)
        boxes = _boxes(6, g, 10.0)
        box_pred = boxes + torch.rand(6, 4, generator=g)
        centerness = torch.randn(6, generator=g) * scale
        labels = torch.full((6,), -1) if nothing else torch.tensor([0, 1, 2, 3, -1, 2])
        centerness_targets = torch.rand(6, generator=g)
        return Case(
            module, x, lambda p: loss(p, box_pred, centerness, labels, boxes, centerness_targets)
        )
    if name == "mask":
        n = 0 if nothing else 3
        x = leaf(n, 4, 4)
        target = torch.rand(n, 4, 4, generator=g) > 0.5
        return Case(module, x, lambda p: loss(p, target))
    # semantic segmentation: logits [B, C, H, W], labels [B, H, W] with ignore_index 255
    x = leaf(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    target[0, 0] = 255
    if nothing:
        target.fill_(255)
    return Case(module, x, lambda p: loss(p, target))


NAMES = sorted(
    {
        name
        for task in ("classification", "detection", "segmentation")
        for name in list_available_losses(task=task)
        if get_entry(name).loss_class.__module__.startswith("autotimm.losses.")
    }
)


def test_every_builtin_is_covered() -> None:
    expected = {
        "bce", "bce_with_logits", "centerness", "ciou", "combined_segmentation",
        "cross_entropy", "diou", "fcos", "focal", "focal_pixelwise", "giou", "jaccard",
        "lovasz", "mask", "mse", "nll", "tversky", "dice", "ohem_cross_entropy",
        # issue 12: classification and detection
        "asymmetric", "softmax_focal", "poly1", "l1", "smooth_l1", "iou", "quality_focal",
        "varifocal", "distribution_focal",
    }  # fmt: skip
    assert expected <= set(NAMES)
    for name in NAMES:
        make_case(name)  # a case exists for every registered built-in


def _grad(loss: torch.Tensor, leaf: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(loss.float().sum(), leaf, allow_unused=True)
    return torch.zeros_like(leaf) if grad is None else grad


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_finite_at_extreme_logits(name: str, scale: float) -> None:
    case = make_case(name, scale=scale)
    for reduction in ("mean", "sum", "none"):
        case.loss.reduction = reduction
        value = case.call(case.leaf)
        assert torch.isfinite(value).all(), (name, reduction, value)
        assert torch.isfinite(_grad(value, case.leaf)).all(), (name, reduction)


@pytest.mark.parametrize("name", NAMES)
def test_nothing_to_learn_gives_zero_with_a_finite_gradient(name: str) -> None:
    case = make_case(name, nothing=True)
    for reduction in ("mean", "sum"):
        case.loss.reduction = reduction
        value = case.call(case.leaf)
        assert value.shape == ()
        assert value.item() == 0.0, (name, reduction)
        grad = _grad(value, case.leaf)
        assert torch.isfinite(grad).all() and (grad == 0).all(), (name, reduction)


SEGMENTATION = [
    "combined_segmentation", "dice", "focal_pixelwise", "jaccard", "lovasz", "ohem_cross_entropy",
    "tversky",
]  # fmt: skip


@pytest.mark.parametrize("name", SEGMENTATION)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 0), (0, 3), (3, 3)])
def test_segmentation_empty_batches_and_images(name: str, shape: tuple[int, ...]) -> None:
    logits = torch.randn(*shape, requires_grad=True)
    target = torch.zeros(shape[0], *shape[2:], dtype=torch.long)
    for reduction in ("mean", "sum", "none"):
        for per_image in (False, True) if name == "lovasz" else (False,):
            extra = {"per_image": per_image} if name == "lovasz" else {}
            value = get_loss(name, reduction=reduction, **extra)(logits, target)
            assert torch.isfinite(value).all()
            assert torch.isfinite(_grad(value, logits)).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_autocast_bfloat16(name: str, scale: float) -> None:
    case = make_case(name, scale=scale, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = case.call(case.leaf)
    assert value.dtype == torch.float32
    assert torch.isfinite(value).all()
    grad = _grad(value, case.leaf)
    assert grad.dtype == torch.bfloat16 and torch.isfinite(grad).all()
    # the same values in float32 give the same loss: nothing was computed in bfloat16 inside
    reference = make_case(name, scale=scale, dtype=torch.bfloat16)
    upcast = reference.leaf.detach().float()
    if name not in ("nll", "bce", "mse"):  # those preprocess in bfloat16 before the loss
        torch.testing.assert_close(value, reference.call(upcast), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_float16_inputs(name: str, scale: float) -> None:
    case = make_case(name, scale=min(scale, 6e4), dtype=torch.float16)
    value = case.call(case.leaf)
    assert value.dtype == torch.float32 and torch.isfinite(value).all()
    grad = _grad(value, case.leaf)
    assert grad.dtype == torch.float16 and torch.isfinite(grad).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_torch_compile_fullgraph_matches_eager(name: str) -> None:
    """Every built-in compiles as one graph (lovasz once failed on an ``out=`` view; FCOS
    counted ignored locations as background while compiling)."""
    eager = make_case(name, seed=3)
    compiled = make_case(name, seed=3, compile=True)
    expected, value = eager.call(eager.leaf), compiled.call(compiled.leaf)
    torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        _grad(value, compiled.leaf), _grad(expected, eager.leaf), rtol=1e-4, atol=1e-6
    )


@pytest.mark.slow
def test_torch_compile_focal_with_float_targets() -> None:
    logits = torch.randn(7, 5, requires_grad=True)  # focal with float targets
    target = (torch.rand(7, 5) > 0.5).float()
    focal = get_loss("focal", gamma=1.5)
    expected = focal(logits, target)
    value = torch.compile(focal, fullgraph=True)(logits, target)
    torch.testing.assert_close(value, expected)
    torch.testing.assert_close(_grad(value, logits), _grad(expected, logits))


# ------------------------------------------------------------------ the registry contract
@pytest.mark.parametrize("name", NAMES)
def test_constructor_is_typed_documented_and_exported(name: str) -> None:
    entry = get_entry(name)
    cls = entry.loss_class
    module = sys.modules[cls.__module__]
    assert module in BUILTIN_MODULES
    assert cls.__name__ in module.__all__
    signature = inspect.signature(cls)
    hints = typing.get_type_hints(cls.__init__, include_extras=True)
    for parameter in signature.parameters.values():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, (name, parameter)
        assert parameter.name in hints, (name, parameter.name)
    for info in entry.parameters:
        assert info.description, f"{name}.{info.name} is not documented in the Args section"
    assert ">>>" in (cls.__doc__ or ""), f"{cls.__name__} has no example"
    if entry.builds_for_caller:  # weighted_sum: each term reduces as its own params say
        assert list(signature.parameters) == ["terms"]
        return
    assert hints["reduction"] == typing.Literal["mean", "sum", "none"]
    assert signature.parameters["reduction"].default == "mean"
    schema = entry.schema.model_json_schema()
    assert set(schema["properties"]["reduction"]["enum"]) == {"mean", "sum", "none"}
    with pytest.raises(ValueError, match="reduction"):
        get_loss(name, reduction="avg")


def test_all_lists_exactly_the_registered_classes() -> None:
    registered = {get_entry(name).loss_class.__name__ for name in NAMES}
    exported = {name for module in BUILTIN_MODULES for name in module.__all__}
    assert exported == registered


def test_import_is_light() -> None:
    code = (
        "import sys, autotimm.losses\n"
        "heavy = [m for m in ('timm', 'lightning', 'torchvision', 'pytorch_lightning') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("module", BUILTIN_MODULES, ids=lambda m: m.__name__)
def test_docstring_examples_run(module: object) -> None:
    result = doctest.testmod(module, raise_on_error=False)  # type: ignore[arg-type]
    assert result.attempted > 0 and result.failed == 0


# ------------------------------------------------------------------ NaN in, NaN out
@pytest.mark.parametrize("name", ["dice", "jaccard", "tversky"])
def test_region_losses_pass_nan_through(name: str) -> None:
    """A segmentor whose outputs went NaN must not read 0 ("perfect") or any finite value:
    the NaN reaches the loss of its own sample, and only that one."""
    logits = torch.randn(2, 3, 4, 4)
    logits[1, 0, 2, 2] = float("nan")
    logits.requires_grad_()
    target = torch.randint(0, 3, (2, 4, 4))
    per_sample = get_loss(name, reduction="none")(logits, target)
    assert torch.isnan(per_sample[1]).all() and torch.isfinite(per_sample[0]).all()
    for reduction in ("mean", "sum"):
        value = get_loss(name, reduction=reduction)(logits, target)
        assert torch.isnan(value)
        assert torch.isnan(_grad(value, logits)).any()


@pytest.mark.parametrize("name", [n for n in NAMES if n != "bce"])  # bce: NaN is out of [0, 1]
def test_nan_predictions_give_a_nan_loss(name: str) -> None:
    case = make_case(name)
    nan_prediction = torch.full_like(case.leaf, float("nan")).requires_grad_()
    for reduction in ("mean", "sum", "none"):
        case.loss.reduction = reduction
        assert torch.isnan(case.call(nan_prediction)).any(), (name, reduction)


# ------------------------------------------------------------------ bad inputs
BAD_INPUTS: list[tuple[str, Callable[[], object], str]] = [
    (
        "bce target above 1",
        lambda: get_loss("bce")(torch.rand(2, 3), torch.full((2, 3), 2.0)),
        r"bce: target value 2.0 is outside \[0.0, 1.0\]",
    ),
    (
        "bce target below 0",
        lambda: get_loss("bce")(torch.rand(2, 3), torch.full((2, 3), -1.0)),
        r"bce: target value -1.0 is outside \[0.0, 1.0\]",
    ),
    (
        "mask float target 2",
        lambda: get_loss("mask")(torch.randn(2, 3, 3), torch.full((2, 3, 3), 2.0)),
        r"mask: target value 2.0 is outside \[0.0, 1.0\]",
    ),
    (
        "focal float target -1",
        lambda: get_loss("focal")(torch.randn(4, 3), torch.full((4, 3), -1.0)),
        r"focal: target value -1.0 is outside \[0.0, 1.0\]",
    ),
    (
        "focal float target 2",
        lambda: get_loss("focal")(torch.randn(4, 3), torch.full((4, 3), 2.0)),
        r"focal: target value 2.0 is outside \[0.0, 1.0\]",
    ),
    (
        "bce_with_logits float target 2",
        lambda: get_loss("bce_with_logits")(torch.randn(4, 3), torch.full((4, 3), 2.0)),
        r"bce_with_logits: target value 2.0 is outside \[0.0, 1.0\]",
    ),
    (
        "bce_with_logits NaN target",
        lambda: get_loss("bce_with_logits")(torch.randn(2), torch.tensor([0.0, float("nan")])),
        r"bce_with_logits: target value nan is outside \[0.0, 1.0\]",
    ),
    (
        "ce float class indices",
        lambda: get_loss("ce")(torch.randn(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0])),
        r"cross_entropy: float targets of shape \(4,\) look like class indices.*integer.*"
        r"class probabilities of the logits' shape \(4, 3\)",
    ),
    (
        "bce_with_logits pos_weight of the wrong shape",
        lambda: get_loss("bce_with_logits", pos_weight=torch.ones(5))(
            torch.randn(4, 3), torch.zeros(4, 3)
        ),
        r"bce_with_logits: pos_weight of shape \(5,\) does not broadcast to the prediction's "
        r"shape \(4, 3\)",
    ),
    (
        "mask pos_weight of the wrong shape",
        lambda: get_loss("mask", pos_weight=torch.ones(5))(
            torch.randn(2, 3, 3), torch.zeros(2, 3, 3)
        ),
        r"mask: pos_weight of shape \(5,\) does not broadcast",
    ),
    (
        "bce weight of the wrong shape",
        lambda: get_loss("bce", weight=torch.ones(5))(torch.rand(4, 3), torch.zeros(4, 3)),
        r"bce: weight of shape \(5,\) does not broadcast",
    ),
    (
        "ce weight that requires grad",
        lambda: get_loss("ce", weight=torch.ones(3, requires_grad=True)),
        r"cross_entropy: weight must not require grad",
    ),
    (
        "nll weight that requires grad (built directly)",
        lambda: classification.NLLLoss(weight=torch.ones(3, requires_grad=True)),
        r"nll: weight must not require grad",
    ),
    (
        "bce_with_logits pos_weight that requires grad",
        lambda: get_loss("bce_with_logits", pos_weight=torch.ones(3, requires_grad=True)),
        r"bce_with_logits: pos_weight must not require grad",
    ),
    (
        "combined class_weights that require grad",
        lambda: get_loss("combined", class_weights=torch.ones(3, requires_grad=True)),
        r"combined_segmentation: class_weights must not require grad",
    ),
    (
        "ce ignore_index beyond int64",
        lambda: get_loss("ce", ignore_index=10**20)(torch.randn(4, 3), torch.tensor([0, 1, 2, 0])),
        r"cross_entropy: ignore_index=100000000000000000000 is outside the range of integer "
        r"targets, \[-9223372036854775808, 9223372036854775807\]",
    ),
    (
        "focal ignore_index beyond int64",
        lambda: get_loss("focal", ignore_index=-(10**20))(
            torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
        ),
        r"focal: ignore_index=-100000000000000000000 is outside the range",
    ),
    (
        "dice ignore_index beyond int64",
        lambda: get_loss("dice", ignore_index=2**63)(
            torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
        ),
        r"dice: ignore_index=9223372036854775808 is outside the range",
    ),
]


@pytest.mark.parametrize(("case", "call", "message"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_name_the_loss_the_argument_and_the_range(
    case: str, call: Callable[[], object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        call()

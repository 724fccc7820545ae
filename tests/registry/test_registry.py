"""The loss registry: registration, validation, errors, listing, introspection, threads."""

from __future__ import annotations

import importlib
import re
import sys
import threading
from typing import Annotated, Literal

import pytest
import torch
from pydantic import BaseModel, Field
from torch import nn

from autotimm.losses import (
    DiceLoss,
    FocalLoss,
    LossConfigError,
    LossEntry,
    LossRegistrationError,
    LossRegistry,
    UnknownLossError,
    describe,
    get_entry,
    get_loss,
    get_loss_registry,
    get_schema,
    list_available_losses,
    register_custom_loss,
    register_loss,
)
from autotimm.losses.registry import _default_name


class ScaledLoss(nn.Module):
    """A tiny loss used to exercise the registry.

    Args:
        num_classes: How many classes the logits have.
        scale: Multiplies the loss; must be positive.
        mode: How to reduce.
        weight: Optional per-class weights.
    """

    def __init__(
        self,
        num_classes: int,
        scale: Annotated[float, Field(gt=0)] = 1.0,
        mode: Literal["mean", "sum"] = "mean",
        weight: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale
        self.mode = mode
        self.weight = weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return logits.float().mean() * self.scale


# ------------------------------------------------------------------ decorator
def test_decorator_returns_the_class_and_uses_the_default_name(registry: LossRegistry) -> None:
    @register_loss(task="segmentation")
    class FocalTverskyLoss(ScaledLoss):
        pass

    assert isinstance(FocalTverskyLoss, type) and FocalTverskyLoss.__name__ == "FocalTverskyLoss"
    assert registry.get_entry("focal_tversky").loss_class is FocalTverskyLoss
    assert registry.list_losses("segmentation").count("focal_tversky") == 1


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("FocalTverskyLoss", "focal_tversky"),
        ("MyBoxLoss", "my_box"),
        ("BCEWithLogitsLoss", "bce_with_logits"),
        ("Dice", "dice"),
        ("Loss", "loss"),
    ],
)
def test_default_name_is_snake_case_without_loss(class_name: str, expected: str) -> None:
    assert _default_name(class_name) == expected


def test_decorator_rejects_non_modules_and_bare_use(registry: LossRegistry) -> None:
    with pytest.raises(TypeError, match=r"subclass of torch\.nn\.Module"):
        register_loss(task="detection")(int)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="register_loss needs arguments"):
        register_loss(ScaledLoss, task="detection")  # type: ignore[arg-type]


def test_decorator_validates_task_and_accepts_tuples(registry: LossRegistry) -> None:
    with pytest.raises(ValueError, match="'classification', 'detection', 'segmentation'"):

        @register_loss(task="regression")  # type: ignore[arg-type]
        class BadTaskLoss(ScaledLoss):
            pass

    @register_loss("two_tasks", task=("detection", "segmentation"), alias=("tt", "t2"))
    class TwoTaskLoss(ScaledLoss):
        pass

    entry = registry.get_entry("t2")
    assert entry.tasks == ("detection", "segmentation")
    assert entry.aliases == ("tt", "t2")
    assert "two_tasks" in registry.list_losses("detection")
    assert "two_tasks" in registry.list_losses("segmentation")


# ------------------------------------------------------------------ entries and schemas
def test_entry_records_metadata_and_builds_schema_lazily(registry: LossRegistry) -> None:
    entry = registry.register_loss(
        "scaled", ScaledLoss, alias="sc", task="classification", expects="probabilities"
    )
    assert isinstance(entry, LossEntry)
    assert (entry.name, entry.tasks, entry.aliases) == ("scaled", ("classification",), ("sc",))
    assert entry.loss_class is ScaledLoss and entry.expects == "probabilities"
    assert entry.defined_at.startswith(__file__) and entry.defined_at.rsplit(":", 1)[1].isdigit()
    assert "schema" not in entry.__dict__  # nothing built at registration time
    schema = registry.get_schema("sc")
    assert issubclass(schema, BaseModel)
    assert registry.get_schema("scaled") is schema  # cached
    assert schema.model_config.get("extra") == "forbid"


def test_schema_reads_types_defaults_constraints_literals_and_docs(registry: LossRegistry) -> None:
    registry.register_loss("scaled", ScaledLoss)
    properties = get_schema("scaled").model_json_schema()["properties"]
    required = get_schema("scaled").model_json_schema()["required"]
    assert required == ["num_classes"]
    assert properties["scale"]["exclusiveMinimum"] == 0
    assert properties["scale"]["default"] == 1.0
    assert properties["mode"]["enum"] == ["mean", "sum"]
    assert properties["scale"]["description"] == "Multiplies the loss; must be positive."
    assert properties["num_classes"]["description"] == "How many classes the logits have."
    assert properties["weight"]["anyOf"][0]["title"] == "Tensor"


def test_tensor_parameters_accept_tensors_and_number_lists(registry: LossRegistry) -> None:
    registry.register_loss("scaled", ScaledLoss)
    weights = torch.tensor([1.0, 2.0])
    assert registry.get_loss("scaled", num_classes=2, weight=weights).weight is weights
    from_list = registry.get_loss("scaled", num_classes=2, weight=[1, 2.5])
    assert torch.equal(from_list.weight, torch.tensor([1.0, 2.5]))
    with pytest.raises(LossConfigError, match=re.escape("weight: expected Tensor | None")):
        registry.get_loss("scaled", num_classes=2, weight=["a", "b"])


def test_numpy_style_docstrings_are_read_too(registry: LossRegistry) -> None:
    class NumpyDocLoss(nn.Module):
        """Numpy style.

        Parameters
        ----------
        beta : float
            The beta value,
            over two lines.
        """

        def __init__(self, beta: float = 1.0) -> None:
            super().__init__()

    registry.register_loss("numpy_doc", NumpyDocLoss)
    schema = get_schema("numpy_doc").model_json_schema()
    assert schema["properties"]["beta"]["description"] == "The beta value, over two lines."


def test_var_kwargs_constructor_allows_extra_arguments(registry: LossRegistry) -> None:
    class PassThroughLoss(nn.Module):
        def __init__(self, scale: float = 1.0, **options: object) -> None:
            super().__init__()
            self.options = options

    registry.register_loss("pass_through", PassThroughLoss)
    assert registry.get_loss("pass_through", anything=3).options == {"anything": 3}
    with pytest.raises(LossConfigError, match="scale"):
        registry.get_loss("pass_through", scale="big")


def test_every_registered_loss_has_a_json_schema_and_a_description() -> None:
    for name in list_available_losses():
        schema = get_schema(name).model_json_schema()
        assert schema["type"] == "object", name
        assert name in describe(name)
    assert len(list_available_losses()) >= 18


# ------------------------------------------------------------------ get_loss
def test_get_loss_validates_before_instantiating(registry: LossRegistry) -> None:
    calls: list[dict[str, object]] = []

    class CountingLoss(ScaledLoss):
        def __init__(self, num_classes: int, scale: Annotated[float, Field(gt=0)] = 1.0) -> None:
            calls.append({"num_classes": num_classes, "scale": scale})
            super().__init__(num_classes, scale)

    registry.register_loss("counting", CountingLoss)
    with pytest.raises(LossConfigError):
        registry.get_loss("counting", num_classes=2, scale=-1.0)
    assert calls == []
    registry.get_loss("counting", num_classes=2)
    assert calls == [{"num_classes": 2, "scale": 1.0}]


def test_get_loss_passes_only_explicit_values_so_the_class_keeps_its_defaults(
    registry: LossRegistry,
) -> None:
    seen: list[dict[str, object]] = []

    class Recorder(nn.Module):
        def __init__(self, a: int = 1, **rest: object) -> None:
            super().__init__()
            seen.append(dict(rest, a=a))

    registry.register_loss("recorder", Recorder)
    registry.get_loss("recorder")
    registry.get_loss("recorder", a=5)
    assert seen == [{"a": 1}, {"a": 5}]


def test_one_error_lists_every_problem_with_suggestions(registry: LossRegistry) -> None:
    registry.register_loss("scaled", ScaledLoss)
    with pytest.raises(LossConfigError) as caught:
        registry.get_loss("scaled", scal=2.0, mode="avg", weight="heavy")
    error = caught.value
    assert isinstance(error, ValueError)
    assert error.loss_name == "scaled"
    by_argument = {p.argument: p for p in error.problems}
    assert set(by_argument) == {"scal", "mode", "weight", "num_classes"}
    assert by_argument["scal"].suggestion == "scale"
    assert by_argument["mode"].expected == "'mean' | 'sum'"
    assert by_argument["mode"].given == "avg"
    message = str(error)
    assert "Invalid arguments for loss 'scaled'" in message and "4 problems" in message
    assert "scal: unknown argument; did you mean 'scale'?" in message
    assert "mode: expected 'mean' | 'sum', got 'avg' (str)" in message
    assert "num_classes: missing required argument (expected int)" in message
    assert "Accepted arguments: num_classes: int, scale: float > 0 = 1.0" in message


def test_values_are_validated_strictly(registry: LossRegistry) -> None:
    registry.register_loss("scaled", ScaledLoss)
    for bad in ({"num_classes": "3"}, {"num_classes": 3.0}, {"num_classes": True}):
        with pytest.raises(LossConfigError, match="num_classes: expected int"):
            registry.get_loss("scaled", **bad)
    for bad_scale in ("2", float("nan"), float("inf"), 0.0):
        with pytest.raises(LossConfigError, match="scale"):
            registry.get_loss("scaled", num_classes=3, scale=bad_scale)
    assert registry.get_loss("scaled", num_classes=3, scale=2).scale == 2  # int for float: fine


def test_exceptions_from_the_loss_init_propagate_unchanged(registry: LossRegistry) -> None:
    class Boom(RuntimeError):
        pass

    class ExplodingLoss(nn.Module):
        def __init__(self, k: int = 1) -> None:
            raise Boom("from the loss itself")

    registry.register_loss("exploding", ExplodingLoss)
    with pytest.raises(Boom, match="from the loss itself"):
        registry.get_loss("exploding", k=2)


def test_unknown_names_suggest_the_closest(registry: LossRegistry) -> None:
    with pytest.raises(UnknownLossError, match=r"Unknown loss 'dcie'\. Did you mean 'dice'") as e:
        get_loss("dcie")
    assert isinstance(e.value, ValueError)
    with pytest.raises(ValueError, match=r"Available losses: .*cross_entropy"):
        get_loss("nothing_like_it_at_all")


def test_builtin_aliases_resolve() -> None:
    assert get_entry("ce").name == "cross_entropy"
    assert get_entry("combined").name == "combined_segmentation"
    assert type(get_loss("combined", num_classes=3)).__name__ == "CombinedSegmentationLoss"


def test_spec_page_registry_examples() -> None:
    registry = get_loss_registry()
    dice = registry.get_loss("dice", num_classes=10, smooth=1.0)
    assert isinstance(dice, DiceLoss)
    combined = registry.get_loss(
        "combined_segmentation", num_classes=19, ce_weight=0.5, dice_weight=1.5, ignore_index=255
    )
    assert type(combined).__name__ == "CombinedSegmentationLoss"
    assert isinstance(registry.get_loss("focal", alpha=0.3, gamma=2.5), FocalLoss)


# ------------------------------------------------------------------ listing
def test_listing_is_sorted_without_aliases_and_filters_by_task(registry: LossRegistry) -> None:
    names = list_available_losses()
    assert names == sorted(names)
    assert "ce" not in names and "combined" not in names
    assert {"bce", "bce_with_logits", "cross_entropy", "mse", "nll"} <= set(
        list_available_losses(task="classification")
    )
    assert {"centerness", "fcos", "focal", "giou", "diou", "ciou"} <= set(
        list_available_losses(task="detection")
    )
    assert {"combined_segmentation", "dice", "focal_pixelwise", "mask", "tversky"} <= set(
        list_available_losses(task="segmentation")
    )
    register_custom_loss("seg_custom", ScaledLoss, task="segmentation")
    register_custom_loss("taskless", ScaledLoss)
    assert "seg_custom" in list_available_losses(task="segmentation")
    assert "taskless" not in list_available_losses(task="segmentation")
    assert registry.list_losses("custom") == ["taskless"]
    with pytest.raises(ValueError, match=r"Unknown task 'regression'.*'classification'"):
        list_available_losses(task="regression")


def test_get_loss_info_groups_by_task_with_custom(registry: LossRegistry) -> None:
    info = registry.get_loss_info()
    assert set(info) == {"classification", "detection", "segmentation"}
    register_custom_loss("taskless", ScaledLoss)
    register_custom_loss("seg_custom", ScaledLoss, task="segmentation")
    info = registry.get_loss_info()
    assert info["custom"] == ["taskless"]
    assert "seg_custom" in info["segmentation"]
    assert all(names == sorted(names) for names in info.values())


def test_has_loss(registry: LossRegistry) -> None:
    assert registry.has_loss("dice") and registry.has_loss("ce") and "dice" in registry
    assert not registry.has_loss("my_custom_loss")
    register_custom_loss("my_custom_loss", ScaledLoss, alias="mcl")
    assert registry.has_loss("my_custom_loss") and registry.has_loss("mcl")


# ------------------------------------------------------------------ collisions
def test_a_different_class_under_a_taken_name_is_refused(registry: LossRegistry) -> None:
    class OtherDice(nn.Module):
        pass

    with pytest.raises(
        LossRegistrationError,
        match=r"'dice' is already taken by.*DiceLoss.*defined at .*segmentation\.py:\d+",
    ):
        register_custom_loss("dice", OtherDice)
    entry = register_custom_loss("dice", OtherDice, override=True)
    assert get_entry("dice") is entry and entry.loss_class is OtherDice


def test_alias_collisions_are_refused(registry: LossRegistry) -> None:
    with pytest.raises(
        LossRegistrationError, match="alias 'ce' is already used by loss 'cross_entropy'"
    ):
        register_custom_loss("my_ce", ScaledLoss, alias="ce")
    with pytest.raises(LossRegistrationError, match="alias 'dice' is already used by loss 'dice'"):
        register_custom_loss("my_dice", ScaledLoss, alias="dice")
    with pytest.raises(LossRegistrationError, match="'ce' is already an alias of"):
        register_custom_loss("ce", ScaledLoss)
    register_custom_loss("my_ce", ScaledLoss, alias="ce", override=True)
    assert get_entry("ce").name == "my_ce"
    assert "ce" not in get_entry("cross_entropy").aliases


def test_same_class_again_replaces_and_a_reloaded_class_replaces(registry: LossRegistry) -> None:
    registry.register_loss("scaled", ScaledLoss, alias="sc")
    again = registry.register_loss("scaled", ScaledLoss, alias="sc")
    assert again.loss_class is ScaledLoss and again.aliases == ("sc",)
    namespace: dict[str, object] = {}
    exec(  # the same class defined again, as a module reload or a re-run cell does
        "import torch.nn as nn\nclass ScaledLoss(nn.Module):\n    pass\n",
        {"__name__": __name__},
        namespace,
    )
    redefined = namespace["ScaledLoss"]
    assert isinstance(redefined, type)
    registry.register_loss("scaled", redefined, alias="sc")
    assert get_entry("sc").loss_class is redefined


def test_module_reload_does_not_raise(registry: LossRegistry) -> None:
    module = importlib.import_module("autotimm.losses.segmentation")
    original = dict(vars(module))
    try:
        importlib.reload(module)
        assert get_entry("dice").loss_class is module.DiceLoss
    finally:  # the registry is restored after the test: the module's classes must match it
        vars(module).update(original)


# ------------------------------------------------------------------ unregister, temporary
def test_unregister_removes_aliases_and_temporary_restores() -> None:
    registry = get_loss_registry()
    before = registry.list_losses()
    with registry.temporary():
        removed = registry.unregister("ce")
        assert removed.name == "cross_entropy"
        assert not registry.has_loss("cross_entropy") and not registry.has_loss("ce")
        register_custom_loss("temp_loss", ScaledLoss)
    assert registry.list_losses() == before
    assert registry.has_loss("ce") and not registry.has_loss("temp_loss")
    with pytest.raises(UnknownLossError):
        registry.unregister("never_registered")


def test_separate_registries_are_independent() -> None:
    local = LossRegistry()
    local.register_loss("scaled", ScaledLoss, task="classification")
    assert local.list_losses() == ["scaled"]
    assert not get_loss_registry().has_loss("scaled")


# ------------------------------------------------------------------ threads
def test_concurrent_registration_and_lookup_stay_consistent() -> None:
    registry = LossRegistry()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        try:
            start.wait()
            for i in range(40):
                cls = type(f"Loss{index}_{i}", (ScaledLoss,), {})
                registry.register_loss(f"l{index}_{i}", cls, alias=f"a{index}_{i}")
                assert registry.get_entry(f"a{index}_{i}").loss_class is cls
                registry.list_losses()
                if i % 4 == 0:
                    registry.unregister(f"a{index}_{i}")
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = registry.list_losses()
    assert len(names) == 8 * 30
    for name in names:
        entry = registry.get_entry(name)
        for alias in entry.aliases:
            assert registry.get_entry(alias) is entry


def test_import_of_losses_does_not_import_timm_or_lightning() -> None:
    import subprocess

    code = (
        "import sys, autotimm.losses\n"
        "heavy = ('timm', 'lightning', 'pytorch_lightning', 'torchvision')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"

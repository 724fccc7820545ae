"""Issue 9, section 2: the registry never silently stops validating (one test per table row),
and section 3: one lookup and one validation per model, picklable entries, no import cycles."""

from __future__ import annotations

import ast
import enum
import importlib.util
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from helpers import BACKBONE, REQUIRED_EXAMPLES, ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import autotimm.losses
from autotimm.losses import (
    DiceLoss,
    FocalLoss,
    LossConfigError,
    LossEntry,
    LossRegistrationError,
    LossRegistry,
    LossSpec,
    UnknownLossError,
    get_entry,
    get_loss,
    get_loss_registry,
    list_available_losses,
    register_custom_loss,
    register_loss,
)
from autotimm.losses._rebuild import same_state
from autotimm.losses._schema import ParamSchema
from autotimm.losses.resolve import resolve_loss


def _import_file(path: Path, source: str) -> ModuleType:
    """Write ``source`` to ``path`` and import it as a module named after the file."""
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[path.stem]
        raise
    return module


# ------------------------------------------------------------------ a: annotations
def test_a_string_annotations_are_resolved_one_by_one_and_still_validate(tmp_path: Path) -> None:
    _import_file(
        tmp_path / "future_annotated_losses.py",
        """
        from __future__ import annotations
        from typing import Annotated
        from pydantic import Field
        from torch import nn
        from autotimm.losses import register_loss

        @register_loss("future_focal", task="detection")
        class FutureFocal(nn.Module):
            def __init__(self, gamma: Annotated[float, Field(ge=0)] = 2.0, flag: bool = False):
                super().__init__()
                self.gamma = gamma
        """,
    )
    assert get_loss("future_focal", gamma=1.5).gamma == 1.5
    for bad in ("oops", -5.0):
        with pytest.raises(LossConfigError, match="gamma: expected float >= 0"):
            get_loss("future_focal", gamma=bad)


def test_a_an_annotation_that_does_not_resolve_is_refused_naming_the_parameter(
    tmp_path: Path,
) -> None:
    with pytest.raises(LossRegistrationError, match=r"parameter 'shape' \('Shape \| None'\)"):
        _import_file(
            tmp_path / "type_checking_losses.py",
            """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            from torch import nn
            from autotimm.losses import register_loss
            if TYPE_CHECKING:
                from collections import OrderedDict as Shape

            @register_loss("half_typed", task="detection")
            class HalfTyped(nn.Module):
                def __init__(self, gamma: float = 2.0, shape: Shape | None = None) -> None:
                    super().__init__()
            """,
        )
    assert not get_loss_registry().has_loss("half_typed")


# ------------------------------------------------------------------ b: input and target kinds
def test_b_unknown_expects_or_target_is_refused_listing_the_kinds() -> None:
    with pytest.raises(ValueError, match="Unknown expects 'probs'; expected one of 'logits'"):

        @register_loss(task="classification", expects="probs")  # type: ignore[arg-type]
        class TypoLoss(nn.Module):
            pass

    with pytest.raises(ValueError, match=r"Unknown target 'onehot'.*'dense'"):
        register_custom_loss("typo", nn.L1Loss, target="onehot")  # type: ignore[arg-type]
    assert not get_loss_registry().has_loss("typo")


# ------------------------------------------------------------------ c: positional-only
def test_c_positional_only_parameters_are_refused_at_registration() -> None:
    class PositionalLoss(nn.Module):
        def __init__(self, scale: float = 1.0, /, *, shift: float = 0.0) -> None:
            super().__init__()

    with pytest.raises(LossRegistrationError, match="'scale' is positional-only"):
        register_custom_loss("positional", PositionalLoss)
    assert not get_loss_registry().has_loss("positional")


# ------------------------------------------------------------------ d: non-finite tensors
@pytest.mark.parametrize(
    ("name", "argument", "value"),
    [
        ("ce", "weight", [float("nan"), 1.0, 1.0]),
        ("cross_entropy", "weight", [-1.0, 1.0, 1.0]),
        ("nll", "weight", torch.tensor([1.0, -0.5])),
        ("bce_with_logits", "pos_weight", [1.0, float("inf")]),
        ("mask", "pos_weight", float("inf")),
        ("combined_segmentation", "class_weights", [1.0, float("nan")]),
    ],
)
def test_d_non_finite_or_negative_weights_fail_on_every_path(
    name: str, argument: str, value: Any
) -> None:
    shown = repr(value)[:20]
    paths = {
        "get_loss": lambda: get_loss(name, **{argument: value}),
        "LossSpec": lambda: LossSpec(name=name, params={argument: value}),
        "LossSpec.model_validate": lambda: LossSpec.model_validate(
            {"name": name, "params": {argument: value}}
        ),
        "resolve_loss kwargs": lambda: resolve_loss(name, kwargs={argument: value}),
        "resolve_loss spec": lambda: resolve_loss({"name": name, "params": {argument: value}}),
        "resolve_loss context": lambda: resolve_loss(name, context={argument: value}),
    }
    for path, call in paths.items():
        with pytest.raises(LossConfigError) as caught:
            call()
        problem = next(p for p in caught.value.problems if p.argument == argument)
        assert problem.given is value, path  # the value as given, not a converted copy
        assert shown in str(caught.value), (path, str(caught.value))
        assert "finite and >= 0" in str(caught.value), path


def test_d_model_arguments_with_nan_class_weights_fail_at_construction() -> None:
    from autotimm import ImageClassifier, SemanticSegmentor

    with pytest.raises(LossConfigError, match=r"class_weights: .*\[nan, 1\.0, 1\.0\]"):
        SemanticSegmentor(
            BACKBONE, num_classes=3, class_weights=[float("nan"), 1, 1], pretrained=False
        )
    with pytest.raises(LossConfigError, match=r"weight: .*\[-1\.0, 1\.0, 1\.0\]"):
        ImageClassifier(
            BACKBONE, num_classes=3, loss_kwargs={"weight": [-1.0, 1.0, 1.0]}, pretrained=False
        )


@settings(max_examples=200, deadline=None)
@given(weights=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1))
def test_d_weights_are_accepted_exactly_when_finite_and_non_negative(weights: list[float]) -> None:
    valid = all(w == w and abs(w) != float("inf") and w >= 0 for w in weights)
    try:
        loss = get_loss("ce", weight=weights)
    except LossConfigError as error:
        assert not valid and error.problems[0].given is weights
    else:
        assert valid and loss.weight.tolist() == weights


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(["dice", "tversky", "focal", "jaccard"]),
    smooth=st.floats(0, 5, width=32),
    alpha=st.floats(0, 1, width=32),
    reduction=st.sampled_from(["mean", "sum", "none"]),
)
def test_e_a_directly_built_builtin_rebuilds_from_its_spec(
    name: str, smooth: float, alpha: float, reduction: str
) -> None:
    accepted = {p.name for p in get_entry(name).parameters}
    wanted = {"smooth": smooth, "alpha": alpha, "reduction": reduction}
    loss = get_entry(name).loss_class(**{k: v for k, v in wanted.items() if k in accepted})
    spec = LossSpec.of(loss)
    assert spec is not None
    assert same_state(LossSpec.model_validate_json(spec.model_dump_json()).build(), loss)


def test_d_valid_weights_still_build_and_round_trip() -> None:
    loss = get_loss("ce", weight=[0.0, 1.0, 2.5])
    assert loss.weight.tolist() == [0.0, 1.0, 2.5]
    assert LossSpec.of(loss) == LossSpec(name="ce", params={"weight": [0.0, 1.0, 2.5]})


# ------------------------------------------------------------------ e: specs that rebuild
class Mode(enum.Enum):
    SOFT = "soft"
    HARD = "hard"


class ModalLoss(nn.Module):
    def __init__(self, mode: Mode = Mode.SOFT, scale: float = 1.0) -> None:
        super().__init__()
        self.mode = mode
        self.scale = scale


def _round_trip(loss: nn.Module) -> nn.Module:
    """Through a model's stored hyperparameter, as JSON, back to a module."""
    stored = resolve_loss(loss).to_hparam()
    assert isinstance(stored, dict), stored
    rebuilt = resolve_loss(LossSpec.model_validate_json(LossSpec(**stored).model_dump_json()))
    return rebuilt.module


def test_e_registered_torch_losses_subclasses_and_enum_parameters_get_specs() -> None:
    class SubDice(DiceLoss):
        pass

    register_custom_loss("torch_l1", nn.L1Loss, task="classification")
    register_custom_loss("sub_dice", SubDice, task="segmentation")
    register_custom_loss("modal", ModalLoss)
    cases = [
        (nn.L1Loss(reduction="sum"), {"reduction": "sum"}),
        (nn.L1Loss(), {}),
        (SubDice(smooth=0.5, num_classes=4), {"smooth": 0.5, "num_classes": 4}),
        (ModalLoss(mode=Mode.HARD), {"mode": "hard"}),
        (get_loss("modal", mode="hard", scale=2.0), {"mode": "hard", "scale": 2.0}),
    ]
    for loss, params in cases:
        spec = LossSpec.of(loss)
        assert spec is not None and spec.params == params, (loss, spec)
        rebuilt = _round_trip(loss)
        assert type(rebuilt) is type(loss) and same_state(rebuilt, loss)
    assert get_loss("modal", mode=Mode.HARD).mode is Mode.HARD


def test_e_a_model_stores_and_reloads_a_registered_subclass(backbone: str) -> None:
    from autotimm import SemanticSegmentor

    class SubDice(DiceLoss):
        pass

    register_custom_loss("sub_dice", SubDice, task="segmentation")
    model = SemanticSegmentor(
        backbone, num_classes=3, loss_fn=SubDice(smooth=0.5), pretrained=False
    )
    stored = model.hparams["loss_fn"]
    assert stored["name"] == "sub_dice" and stored["params"]["smooth"] == 0.5
    again = SemanticSegmentor(**model.hparams)
    assert type(again.loss.module) is SubDice and again.loss.module.smooth == 0.5


# ------------------------------------------------------------------ f: classes stay untouched
def test_f_registration_never_modifies_the_class() -> None:
    before = dict(vars(nn.SmoothL1Loss))
    with get_loss_registry().temporary():
        register_custom_loss("torch_smooth_l1", nn.SmoothL1Loss)
        assert dict(vars(nn.SmoothL1Loss)) == before
        built = get_loss("torch_smooth_l1", beta=0.5)
        assert LossSpec.of(built) == LossSpec(name="torch_smooth_l1", params={"beta": 0.5})
        direct = nn.SmoothL1Loss(beta=0.25, reduction="sum")
        assert LossSpec.of(direct) == LossSpec(
            name="torch_smooth_l1", params={"reduction": "sum", "beta": 0.25}
        )
        assert "_autotimm_loss_arguments" not in vars(direct)  # nothing recorded by torch's init
    assert dict(vars(nn.SmoothL1Loss)) == before
    for entry in get_loss_registry():  # nor the built-ins
        assert not hasattr(vars(entry.loss_class).get("__init__"), "__wrapped__"), entry.name


def test_f_a_loss_whose_attributes_do_not_rebuild_it_is_honestly_unregistered() -> None:
    class Doubled(nn.Module):
        def __init__(self, k: float = 1.0) -> None:
            super().__init__()
            self.twice = 2 * k  # no attribute named like the parameter

    register_custom_loss("doubled", Doubled)
    assert LossSpec.of(Doubled(k=3.0)) is None
    assert resolve_loss(Doubled(k=3.0)).to_hparam() == f"unregistered:{Doubled.__module__}." + (
        Doubled.__qualname__
    )
    assert LossSpec.of(Doubled()) == LossSpec(name="doubled")  # defaults: verified by rebuilding
    assert LossSpec.of(get_loss("doubled", k=3.0)) == LossSpec(name="doubled", params={"k": 3.0})


# ------------------------------------------------------------------ h: where the class lives
def test_h_a_spec_names_the_module_to_import_when_its_loss_is_unknown() -> None:
    stored = {"name": "boundary", "params": {}, "class_path": "my_project.losses.BoundaryLoss"}
    hint = r"saved from the class my_project\.losses\.BoundaryLoss: import my_project\.losses"
    for call in (
        lambda: LossSpec.model_validate(stored),
        lambda: resolve_loss(stored),
        lambda: resolve_loss(LossSpec.model_construct(**stored)),
    ):
        with pytest.raises(UnknownLossError, match=hint):
            call()
    with pytest.warns(UserWarning, match="saved from my_project.losses.Dice"):
        spec = LossSpec.model_validate({"name": "dice", "class_path": "my_project.losses.Dice"})
    assert spec.class_path == "autotimm.losses.segmentation.DiceLoss"


@pytest.mark.slow
def test_h_a_checkpoint_of_a_custom_loss_names_its_module_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    (tmp_path / "boundary_losses.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn
            from autotimm.losses import register_loss

            @register_loss("boundary", task="segmentation")
            class BoundaryLoss(nn.Module):
                def __init__(self, band: int = 1) -> None:
                    super().__init__()
                    self.band = band

                def forward(self, logits, target):
                    return logits.mean() * 0
            """
        )
    )
    save = f"""
        import torch, boundary_losses
        from autotimm import AutoTrainer, SemanticSegmentor
        model = SemanticSegmentor({BACKBONE!r}, num_classes=2, loss_fn="boundary",
                                  loss_kwargs={{"band": 3}}, pretrained=False)
        trainer = AutoTrainer(default_root_dir={str(tmp_path)!r}, logger=False, accelerator="cpu")
        trainer.strategy.connect(model)
        trainer.save_checkpoint({str(tmp_path / "m.ckpt")!r})
        stored = torch.load({str(tmp_path / "m.ckpt")!r}, weights_only=True)
        print(stored["hyper_parameters"]["loss_fn"])
    """
    load = f"""
        from autotimm import SemanticSegmentor
        from autotimm.losses import UnknownLossError
        try:
            SemanticSegmentor.load_from_checkpoint({str(tmp_path / "m.ckpt")!r})
        except UnknownLossError as error:
            print(error)
        import boundary_losses
        print(SemanticSegmentor.load_from_checkpoint({str(tmp_path / "m.ckpt")!r}).loss.module.band)
    """
    outputs = []
    for code in (save, load):
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip().splitlines())
    assert "'class_path': 'boundary_losses.BoundaryLoss'" in outputs[0][-1]
    assert "import boundary_losses (which registers it)" in outputs[1][0]
    assert outputs[1][-1] == "3"


# ------------------------------------------------------------------ i: names, not classes
def test_i_a_lookup_needs_a_name() -> None:
    with pytest.raises(TypeError, match=r"A loss name \(str\) is expected; got None"):
        get_loss(None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"got the class DiceLoss.*register it first"):
        get_loss(DiceLoss)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="A loss name"):
        get_entry(3)  # type: ignore[arg-type]


# ------------------------------------------------------------------ j: reserved names
def test_j_parameters_named_like_pydantic_internals_work() -> None:
    class Reserved(nn.Module):
        def __init__(
            self, model_config: int = 1, copy: float = 0.5, _private: bool = False
        ) -> None:
            super().__init__()
            self.model_config = model_config
            self.copy = copy
            self._private = _private

    register_custom_loss("reserved", Reserved)
    loss = get_loss("reserved", model_config=3, copy=0.25, _private=True)
    assert (loss.model_config, loss.copy, loss._private) == (3, 0.25, True)
    with pytest.raises(LossConfigError, match="model_config: expected int, got 'x'") as caught:
        get_loss("reserved", model_config="x", modelconfig=1)
    assert {p.argument: p.suggestion for p in caught.value.problems}["modelconfig"] == (
        "model_config"
    )
    properties = get_entry("reserved").schema.model_json_schema()["properties"]
    assert set(properties) == {"model_config", "copy", "_private"}
    spec = LossSpec(name="reserved", params={"model_config": 2, "_private": True})
    assert spec.params == {"model_config": 2, "_private": True}
    assert spec.build().model_config == 2


# ------------------------------------------------------------------ k: re-registration
def test_k_the_latest_registration_of_a_class_defines_its_aliases() -> None:
    namespace: dict[str, Any] = {"__name__": "notebook_cell"}
    cell = "import torch.nn as nn\nclass CellLoss(nn.Module):\n    pass\n"
    exec(cell, namespace)
    register_custom_loss("cell", namespace["CellLoss"], alias="old_alias")
    exec(cell, namespace)  # the cell runs again, with a changed alias
    register_custom_loss("cell", namespace["CellLoss"], alias=("new_alias", "other"))
    registry = get_loss_registry()
    assert not registry.has_loss("old_alias")
    assert registry.get_entry("new_alias").aliases == ("new_alias", "other")
    assert registry.get_entry("cell").loss_class is namespace["CellLoss"]


# ------------------------------------------------------------------ pickling (issue 10 row a)
def test_entries_resolved_losses_and_every_builtin_pickle() -> None:
    for entry in get_loss_registry():
        entry.schema  # noqa: B018 - the cached schema class must not be pickled
        again = pickle.loads(pickle.dumps(entry))
        assert isinstance(again, LossEntry) and again.name == entry.name
        assert again.schema.model_json_schema() == entry.schema.model_json_schema()
    for loss in [get_loss("dice", num_classes=3), FocalLoss(alpha=0.5), get_loss("fcos")]:
        again = pickle.loads(pickle.dumps(loss))
        assert same_state(again, loss)
    for loss_fn in ("dice", {"name": "ce", "params": {"weight": [1.0, 2.0]}}, DiceLoss(smooth=2.0)):
        resolved = resolve_loss(loss_fn)
        again = pickle.loads(pickle.dumps(resolved))
        assert again.spec == resolved.spec and same_state(again.module, resolved.module)
        assert again.entry is not None and again.entry.name == resolved.entry.name  # type: ignore[union-attr]


@pytest.mark.parametrize("name", list_available_losses())
def test_every_builtin_loss_pickles_and_keeps_its_spec(name: str) -> None:
    required = {p.name for p in get_entry(name).parameters if p.required}
    loss = get_loss(name, **{key: REQUIRED_EXAMPLES.get(key, 2) for key in required})
    again = pickle.loads(pickle.dumps(loss))
    assert same_state(again, loss) and LossSpec.of(again) == LossSpec.of(loss)


def test_a_built_model_pickles(backbone: str) -> None:
    from autotimm import ImageClassifier

    model = ImageClassifier(backbone, num_classes=3, pretrained=False)
    again = pickle.loads(pickle.dumps(model))
    assert again.loss.spec == model.loss.spec
    images = torch.randn(1, 3, 32, 32)
    model.eval()
    again.eval()
    assert torch.equal(again(images), model(images))


# ------------------------------------------------------------------ one lookup, one validation
@pytest.mark.parametrize(
    "loss_fn",
    ["dice", {"name": "dice", "params": {"smooth": 0.5}}, DiceLoss(smooth=0.5)],
    ids=["name", "spec", "instance"],
)
def test_one_model_construction_costs_one_lookup_and_one_validation(
    loss_fn: Any, backbone: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autotimm import SemanticSegmentor

    counts = {"lookups": 0, "validations": 0}

    def counting(cls: type, method: str, key: str) -> None:
        original = getattr(cls, method)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, method, wrapper)

    counting(LossRegistry, "get_entry", "lookups")
    counting(LossRegistry, "entry_for_class", "lookups")
    counting(ParamSchema, "validate", "validations")
    model = SemanticSegmentor(backbone, num_classes=3, loss_fn=loss_fn, pretrained=False)
    assert counts == {"lookups": 1, "validations": 1}
    assert model.hparams["loss_fn"]["name"] == "dice"


# ------------------------------------------------------------------ no import cycles
def _imports(path: Path, package: str) -> set[str]:
    """The ``autotimm.losses`` modules ``path`` imports at run time (anywhere in the file)."""
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        test = ast.unparse(node.test) if isinstance(node, ast.If) else ""
        if "TYPE_CHECKING" in test and not test.startswith("not "):
            type_only.update(id(n) for child in node.body for n in ast.walk(child))
    found = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.startswith(package + ".") and n.count(".") == 2)
    return found


def test_the_loss_package_has_no_import_cycles() -> None:
    folder = ROOT / "autotimm" / "losses"
    package = "autotimm.losses"
    modules = {f"{package}.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {
        module: {d for d in _imports(path, package) if d in modules and d != module}
        for module, path in modules.items()
    }
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, "import cycle: " + " -> ".join((*path, module))
        if module in done:
            return
        for dependency in sorted(graph[module]):
            visit(dependency, (*path, module))
        done.add(module)

    for module in sorted(graph):
        visit(module, ())
    assert graph[f"{package}.registry"].isdisjoint({f"{package}.spec", f"{package}.resolve"})


@pytest.mark.slow
def test_each_loss_module_imports_alone_in_a_fresh_interpreter() -> None:
    folder = Path(autotimm.losses.__file__).parent
    modules = sorted(f"autotimm.losses.{p.stem}" for p in folder.glob("*.py"))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", f"import {module}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for module in modules
    ]
    for module, process in zip(modules, processes):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, f"{module}: {stderr}"

"""What a user's type checker sees: pyright and mypy run on sample user code.

Each sample line that must be flagged carries ``# E``; each ``reveal_type`` carries the type
the checkers must infer. The test asserts exactly those diagnostics and no others.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import pydoc
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import REQUIRED_EXAMPLES
from torch import nn

from autotimm.losses import LossEntry, get_loss_registry
from autotimm.losses._typed_lookups import BuiltinLossName, TypedLookups

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = textwrap.dedent(
    """
    from typing import Any

    from torch import nn

    from autotimm.losses import (
        DiceLoss,
        FocalLoss,
        WeightedSumLoss,
        get_loss,
        get_loss_registry,
        register_loss,
    )

    registry = get_loss_registry()
    reveal_type(registry.get_loss("dice", num_classes=3))  # T DiceLoss
    reveal_type(registry.get_loss("ce"))  # T CrossEntropyLoss
    reveal_type(get_loss("combined", num_classes=2))  # T CombinedSegmentationLoss
    reveal_type(registry.get_loss_class("giou"))  # T type[GIoULoss]
    reveal_type(get_loss("weighted_sum", terms=["ce", {"name": "dice"}]))  # T WeightedSumLoss
    WeightedSumLoss(terms=["ce", {"name": "dice", "weight": 3.0, "params": {"smooth": 0.5}}])
    WeightedSumLoss(terms=[{"name": "dice", "wieght": 3.0}])  # E

    config: dict[str, Any] = {"loss": "my_plugin_loss"}
    name: str = config["loss"]
    reveal_type(registry.get_loss(name, anything=1))  # T Module
    reveal_type(get_loss(name))  # T Module

    DiceLoss(num_classes=3, smoth=1.0)  # E
    FocalLoss(alpha="high")  # E
    DiceLoss(reduction="avg")  # E
    registry.get_loss_class("dice")(num_classes=3, smoth=1.0)  # E
    FocalLoss(alpha=0.3, gamma=2.5, reduction="sum")


    @register_loss(task="classification")
    class MyLoss(nn.Module):
        def __init__(self, k: int = 1) -> None:
            super().__init__()
            self.k = k


    reveal_type(MyLoss(k=2))  # T MyLoss
    MyLoss(k="a")  # E
    """
)


def _expected(marker: str) -> dict[int, str]:
    found = {}
    for number, line in enumerate(SAMPLE.splitlines(), start=1):
        match = re.search(rf"# {marker}\b ?(.*)$", line)
        if match:
            found[number] = match.group(1).strip()
    return found


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("user_code")
    (folder / "user_code.py").write_text(SAMPLE)
    (folder / "pyrightconfig.json").write_text(
        json.dumps(
            {"extraPaths": [str(ROOT)], "typeCheckingMode": "basic", "pythonVersion": "3.11"}
        )
    )
    return folder


def _short(type_text: str) -> str:
    """``autotimm.losses.segmentation.DiceLoss`` -> ``DiceLoss``; ``torch.nn...Module`` too."""
    return re.sub(r"\b[\w.]+\.(\w+)", r"\1", type_text)


@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright comes with the dev extra")
def test_pyright_sees_the_types_and_flags_each_bad_line(sample: Path) -> None:
    result = subprocess.run(
        ["pyright", "--outputjson", "user_code.py"],
        cwd=sample,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    revealed: dict[int, str] = {}
    errors: dict[int, str] = {}
    for diag in report["generalDiagnostics"]:
        line = diag["range"]["start"]["line"] + 1
        if diag["severity"] == "information" and diag["message"].startswith("Type of"):
            revealed[line] = _short(diag["message"].split(" is ", 1)[1].strip('"'))
        elif diag["severity"] == "error":
            errors[line] = diag["message"]
    assert revealed == _expected("T")
    assert set(errors) == set(_expected("E")), errors


def test_mypy_sees_the_types_and_flags_each_bad_line(sample: Path) -> None:
    env = dict(os.environ, MYPYPATH=str(ROOT))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--python-version",
            "3.11",
            "--follow-imports",
            "silent",
            "user_code.py",
        ],
        cwd=sample,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    revealed: dict[int, str] = {}
    errors: dict[int, str] = {}
    for line in result.stdout.splitlines():
        match = re.match(r"user_code\.py:(\d+): (error|note): (.*)$", line)
        if not match:
            continue
        number, kind, message = int(match.group(1)), match.group(2), match.group(3)
        if kind == "note" and message.startswith("Revealed type is"):
            revealed[number] = _short(message.split('"')[1]).replace("def (k: int =) -> ", "")
        elif kind == "error":
            errors[number] = message
    assert revealed == _expected("T"), result.stdout
    assert set(errors) == set(_expected("E")), result.stdout


def test_generated_lookups_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location(
        "generate_loss_typing", ROOT / "scripts" / "generate_loss_typing.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.render() == (ROOT / "autotimm/losses/_typed_lookups.py").read_text(), (
        "run: python scripts/generate_loss_typing.py"
    )


def _overloads(method: str) -> dict[str, str]:
    """``name literal -> return annotation`` of the generated overloads of ``method``."""
    tree = ast.parse((ROOT / "autotimm/losses/_typed_lookups.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == method and node.decorator_list:
            name = node.args.posonlyargs[1].annotation
            literal = re.fullmatch(r"Literal\[['\"](\w+)['\"]\]", ast.unparse(name or node))
            if literal:  # the final overload takes any ``str``
                found[literal.group(1)] = ast.unparse(node.returns or node)
    return found


def test_generated_overloads_match_the_runtime_registry() -> None:
    """Every built-in name and alias has overloads naming its real class, and nothing else."""
    builtin = {
        name: entry.loss_class.__qualname__
        for entry in get_loss_registry()
        if entry.loss_class.__module__.startswith("autotimm.")
        for name in (entry.name, *entry.aliases)
    }
    for method, wrap in (("get_loss", "{}"), ("get_loss_class", "type[{}]")):
        assert _overloads(method) == {name: wrap.format(c) for name, c in builtin.items()}, method
    assert set(BuiltinLossName.__args__) == set(builtin)
    for name, class_name in builtin.items():
        cls = get_loss_registry().get_loss_class(name)
        assert cls.__qualname__ == class_name and issubclass(cls, nn.Module)
    # the generated class only adds types: at run time it is empty, the registry's code runs
    assert {k for k in vars(TypedLookups) if not k.startswith("__")} == set()


def test_package_ships_py_typed() -> None:
    assert (ROOT / "autotimm" / "py.typed").exists()
    assert "py.typed" in (ROOT / "pyproject.toml").read_text()


# ------------------------------------------------------------------ runtime introspection
def _builtin_entries() -> list[LossEntry]:
    return [e for e in get_loss_registry() if e.loss_class.__module__.startswith("autotimm.")]


def test_every_builtin_documents_every_parameter_and_shows_its_real_signature() -> None:
    for entry in _builtin_entries():
        undocumented = [p.name for p in entry.parameters if not p.description]
        assert not undocumented, f"{entry.name}: document {undocumented} in the docstring's Args"
        signature = inspect.signature(entry.loss_class)
        assert list(signature.parameters) == [p.name for p in entry.parameters]
        # fcos reduces its own normalised terms; weighted_sum's terms reduce as each says
        assert "reduction" in signature.parameters or entry.name in ("fcos", "weighted_sum")
        rendered = pydoc.render_doc(entry.loss_class, renderer=pydoc.plaintext)
        assert all(f"{name}" in rendered for name in signature.parameters), entry.name


def test_every_json_schema_is_valid_and_states_defaults_enums_and_bounds() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    for entry in _builtin_entries():
        schema = entry.schema.model_json_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        properties = schema["properties"]
        for p in entry.parameters:
            prop = properties[p.name]
            if not p.required:
                assert "default" in prop or p.default is None, (entry.name, p.name)
        if "reduction" in properties:
            assert properties["reduction"]["enum"] == ["mean", "sum", "none"], entry.name
        # defaults (with a value for each required parameter) validate against their schema
        defaults = {k: v["default"] for k, v in properties.items() if "default" in v}
        required = {p.name: REQUIRED_EXAMPLES[p.name] for p in entry.parameters if p.required}
        jsonschema.validate({**defaults, **required}, schema)
    focal = get_loss_registry().get_schema("focal").model_json_schema()
    assert focal["properties"]["gamma"]["minimum"] == 0
    dice = get_loss_registry().get_schema("dice").model_json_schema()
    assert dice["properties"]["smooth"]["minimum"] == 0
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"gamma": -1}, focal)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"reduction": "avg"}, focal)

"""``autotimm schema``: a valid draft 2020-12 schema that accepts the configs/ files and rejects
mistakes at the place where they are."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import CONFIGS, load_config
from torch import nn

from autotimm.config.cli import import_modules
from autotimm.config.schema import config_json_schema, type_schema
from autotimm.losses import register_loss

Validator = jsonschema.Draft202012Validator


def error_places(schema: dict[str, Any], config: dict[str, Any]) -> set[str]:
    """Every path at which validation fails, including inside anyOf/if-then branches."""

    def walk(errors: Iterator[jsonschema.ValidationError]) -> Iterator[str]:
        for error in errors:
            yield ".".join(str(part) for part in error.absolute_path)
            yield from walk(iter(error.context or ()))

    return set(walk(Validator(schema).iter_errors(config)))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    """The schema with configs/my_losses.py imported, as ``autotimm schema --imports``."""
    from autotimm.losses import get_loss_registry

    # module scope is set up before the per-test registry restore: restore it here
    with get_loss_registry().temporary():
        sys.path.insert(0, str(CONFIGS))
        sys.modules.pop("my_losses", None)
        try:
            assert import_modules(["my_losses"], []) == []
            return config_json_schema()
        finally:
            sys.path.remove(str(CONFIGS))
            sys.modules.pop("my_losses", None)


def test_the_schema_passes_the_draft_2020_12_meta_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Validator.check_schema(schema)
    json.dumps(schema)  # plain JSON


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_in_configs_is_valid(schema: dict[str, Any], name: str) -> None:
    config = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    assert error_places(schema, config) == set()


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, key = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[key] = value


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        ("model.init_args.loss_fn", "dise", "model.init_args.loss_fn"),
        ("model.init_args.loss_fn.params.smoth", 0.5, "model.init_args.loss_fn.params"),
        (
            "model.init_args.loss_fn.params.dice_weight",
            "x",
            "model.init_args.loss_fn.params.dice_weight",
        ),
        (
            "model.init_args.loss_fn.params.dice_weight",
            -1,
            "model.init_args.loss_fn.params.dice_weight",
        ),
        (
            "model.init_args.loss_fn.params.reduction",
            "avg",
            "model.init_args.loss_fn.params.reduction",
        ),
        ("model.init_args.lrr", 0.1, "model.init_args"),
        ("model.init_args.num_classes", "three", "model.init_args.num_classes"),
        ("model.init_args.scheduler", "cos", "model.init_args.scheduler"),
        ("model.class_path", "SemanticSegmenter", "model.class_path"),
        ("data.init_args.batch_size", "four", "data.init_args.batch_size"),
        ("trainer.max_stepz", 3, "trainer"),
        ("trainer.max_epochs", "many", "trainer.max_epochs"),
        ("seed_everything", "maybe", "seed_everything"),
        ("modle", {}, ""),
    ],
)
def test_mistakes_are_rejected_at_their_path(
    schema: dict[str, Any], path: str, value: Any, where: str
) -> None:
    config = load_config("segmentation.yaml")
    _set(config, path, value)
    assert where in error_places(schema, config)


def test_empty_params_are_accepted_as_the_models_accept_them(schema: dict[str, Any]) -> None:
    """``params:`` left empty in YAML is null: no params, for a spec and for a term."""
    config = load_config("segmentation.yaml")
    _set(config, "model.init_args.loss_fn", {"name": "dice", "params": None})
    assert error_places(schema, config) == set()
    _set(config, "model.init_args.loss_fn", ["cross_entropy", {"name": "dice", "params": None}])
    assert error_places(schema, config) == set()
    _set(config, "model.init_args.loss_fn", [{"name": "dice", "params": {"smoth": 1}}])
    assert "model.init_args.loss_fn.0.params" in error_places(schema, config)


def test_loss_choices_name_every_registered_loss_with_its_parameters() -> None:
    @register_loss(task="classification", alias="sharp")
    class SharpenedLoss(nn.Module):
        """A loss registered by a test.

        Args:
            temperature: Divides the logits.
        """

        def __init__(self, temperature: float = 2.0) -> None:
            super().__init__()

    schema = config_json_schema()
    names = schema["$defs"]["loss"]["anyOf"][0]["enum"]
    assert {"sharpened", "sharp", "dice", "ce", "cross_entropy"} <= set(names)
    params = schema["$defs"]["loss_sharpened"]
    assert params["properties"]["temperature"]["default"] == 2.0
    assert params["properties"]["temperature"]["description"] == "Divides the logits."
    config = {
        "model": {
            "class_path": "ImageClassifier",
            "init_args": {"loss_fn": {"name": "sharp", "params": {"temprature": 1}}},
        }
    }
    assert "model.init_args.loss_fn.params" in error_places(schema, config)


def test_short_and_full_class_paths_select_the_same_arguments(schema: dict[str, Any]) -> None:
    for class_path in (
        "SemanticSegmentor",
        "autotimm.SemanticSegmentor",
        "autotimm.models.segmentor.SemanticSegmentor",
    ):
        config = {"model": {"class_path": class_path, "init_args": {"decoder_chanels": 3}}}
        assert "model.init_args" in error_places(schema, config), class_path
    mine = {"model": {"class_path": "my_models.MyNet", "init_args": {"anything": 1}}}
    assert error_places(schema, mine) == set()  # a user's own class: no arguments known


def test_type_schemas() -> None:
    from collections.abc import Sequence
    from typing import Literal

    import torch

    assert type_schema(Sequence[float] | None) == {
        "anyOf": [{"type": "array", "items": {"type": "number"}}, {"type": "null"}]
    }
    assert type_schema(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert type_schema(tuple[int, int]) == {
        "type": "array",
        "prefixItems": [{"type": "integer"}, {"type": "integer"}],
        "minItems": 2,
        "maxItems": 2,
    }
    tensor = Validator(type_schema(torch.Tensor))
    assert tensor.is_valid([1.0, 2.0]) and tensor.is_valid(0.5) and not tensor.is_valid("x")


def test_schema_command_writes_the_schema_with_imported_losses(tmp_path: Path) -> None:
    (tmp_path / "extra_losses.py").write_text(
        "import torch.nn as nn\n"
        "from autotimm.losses import register_loss\n\n\n"
        "@register_loss(task='segmentation')\n"
        "class ExtraLoss(nn.Module):\n"
        "    def __init__(self, weight: float = 1.0) -> None:\n"
        "        super().__init__()\n"
    )
    output = tmp_path / "autotimm.schema.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotimm",
            "schema",
            "--imports",
            "extra_losses",
            "-o",
            str(output),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text())
    Validator.check_schema(written)
    assert "extra" in written["$defs"]["loss"]["anyOf"][0]["enum"]

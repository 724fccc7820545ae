"""Issue 11, "a list of losses is accepted wherever one loss is", with issue 12's weighted sums.

A config's ``loss_fn`` (and ``cls_loss_fn``, ``reg_loss_fn``, ``mask_loss_fn``) may be a list of
terms: ``autotimm check`` resolves each term as the model would (problems at
``loss_fn[i]...``), ``autotimm schema`` completes each term's name and params, and ``autotimm
fit`` trains on the weighted sum and saves the list as plain data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
import yaml
from conftest import CONFIGS, load_config

from autotimm.cli import main
from autotimm.config import loss_argument
from autotimm.config.check import check_config
from autotimm.config.schema import config_json_schema

LIST_CONFIG = "weighted_losses.yaml"


def _problems(config: dict[str, Any]) -> dict[str, str]:
    return {p.place: p.message for p in check_config(config).problems}


@pytest.fixture
def segmentation(data_root: Path) -> dict[str, Any]:
    return load_config(LIST_CONFIG, data_root)


# --------------------------------------------------------------------------- parsing
def test_a_list_reads_as_plain_terms_and_each_term_is_checked_as_one_loss() -> None:
    value = loss_argument.normalize(
        [
            "cross_entropy",
            {"name": "dice", "weight": 2, "params": {"smooth": 0.5}},
            {"name": "lovasz", "label": "b"},
        ]
    )
    assert value == [
        "cross_entropy",
        {"name": "dice", "params": {"smooth": 0.5}, "weight": 2.0},
        {"name": "lovasz", "params": {}, "label": "b"},
    ]
    assert list(loss_argument.loss_items(value)) == [
        ("[0]", "cross_entropy"),
        ("[1]", {"name": "dice", "params": {"smooth": 0.5}}),
        ("[2]", {"name": "lovasz", "params": {}}),
    ]
    assert loss_argument.normalize("[ce, {name: dice, weight: 3}]") == [
        "ce",
        {"name": "dice", "params": {}, "weight": 3.0},
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"name": "dice", "label": "x"}, {"name": "ce", "label": "x"}], "'x' is the label of [0]"),
        ([{"class_path": "autotimm.losses.DiceLoss"}], "[0]: a loss is given by its registry name"),
        ([{"name": "dice", "params": 3}], "[0] (dice): params: expected a mapping"),
        ([3], "[0]: expected a loss name or a term"),
    ],
)
def test_a_malformed_list_says_which_term_and_what_shape(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        loss_argument.normalize(value)
    assert message in str(raised.value)


# --------------------------------------------------------------------------- autotimm check
def test_a_list_in_a_config_checks_clean_and_the_model_builds_from_it(
    segmentation: dict[str, Any],
) -> None:
    assert check_config(segmentation).problems == []
    from autotimm import SemanticSegmentor

    init = dict(segmentation["model"]["init_args"])
    model = SemanticSegmentor(**init)
    assert model.loss.module.component_keys == ("cross_entropy", "dice", "boundary")
    assert model.loss.module.losses[1].num_classes == 3  # the model's context, as for dice alone


def test_every_problem_of_every_term_is_reported_at_its_place(
    segmentation: dict[str, Any],
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = [
        "cross_entropy",
        {"name": "dice", "params": {"smoth": 0.5, "reduction": "avg"}},
        {"name": "dise"},
        "gio",
        {"name": "giou", "weight": 0.5},
    ]
    found = _problems(segmentation)
    assert sorted(found) == [
        "model.init_args.loss_fn[1].params.reduction",
        "model.init_args.loss_fn[1].params.smoth",
        "model.init_args.loss_fn[2].name",
        "model.init_args.loss_fn[3]",
        "model.init_args.loss_fn[4]",
    ]
    assert "did you mean 'smooth'" in found["model.init_args.loss_fn[1].params.smoth"]
    assert "Did you mean 'dice'" in found["model.init_args.loss_fn[2].name"]
    assert (
        "cannot use loss_fn[4]={'name': 'giou', 'params': {}}"
        not in found["model.init_args.loss_fn[4]"]
    )
    assert "cannot use loss_fn[4]='giou': it takes boxes" in found["model.init_args.loss_fn[4]"]


def test_shape_problems_and_loss_kwargs_with_a_list_are_reported(
    segmentation: dict[str, Any],
) -> None:
    init = segmentation["model"]["init_args"]
    init["loss_fn"] = [{"name": "dice", "weight": -1, "wieght": 2}]
    problems = check_config(segmentation).problems
    assert {p.place for p in problems} == {"model.init_args.loss_fn[0]"}
    messages = [p.message for p in problems]
    assert any(m.startswith("term (dice): wieght: unknown key") for m in messages)
    assert any(m.startswith("term (dice): weight: expected a finite number >= 0") for m in messages)
    init["loss_fn"] = ["dice", "ce"]
    init["loss_kwargs"] = {"smooth": 0.5}
    assert "give each term its own params" in _problems(segmentation)["model.init_args.loss_kwargs"]


def test_settings_a_model_cannot_train_with_are_reported_at_the_term(
    segmentation: dict[str, Any],
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = [
        "dice",
        {"name": "cross_entropy", "params": {"reduction": "none"}},
        {"name": "cross_entropy", "params": {"weight": [1.0, 2.0]}},
        {"name": "dice", "params": {"mode": "binary"}},
    ]
    found = _problems(segmentation)
    assert "reduction='none'" in found["model.init_args.loss_fn[1]"]
    assert "its weight has 2 values" in found["model.init_args.loss_fn[2]"]
    assert "mode='binary' takes one channel" in found["model.init_args.loss_fn[3]"]


def test_a_mixed_up_classifier_refuses_a_term_without_soft_targets(data_root: Path) -> None:
    config = load_config("classification.yaml", data_root)
    init = config["model"]["init_args"]
    init["mixup_alpha"] = 0.2
    init["loss_fn"] = ["cross_entropy", "nll"]
    found = _problems(config)
    assert list(found) == ["model.init_args.loss_fn[1]"]
    assert "Registered losses that fit loss_fn[1]: " in found["model.init_args.loss_fn[1]"]
    assert "cross_entropy" in found["model.init_args.loss_fn[1]"].split("fit loss_fn[1]: ")[1]


def test_detector_lists_are_checked_per_argument(data_root: Path) -> None:
    config = load_config("instance_segmentation.yaml", data_root)
    init = config["model"]["init_args"]
    init["cls_loss_fn"] = ["focal", {"name": "focal", "params": {"gama": 2}}]
    init["reg_loss_fn"] = ["giou", "dice"]
    init["mask_loss_fn"] = ["mask", {"name": "bce_with_logits", "weight": 0.5}]
    assert sorted(_problems(config)) == [
        "model.init_args.cls_loss_fn[1].params.gama",
        "model.init_args.reg_loss_fn[1]",
    ]


def test_check_and_the_command_line_take_a_list(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(data_root.parent)
    config = str(CONFIGS / LIST_CONFIG)
    assert main(["check", "--config", config]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["init_args"]["loss_fn"][1] == {
        "name": "dice",
        "params": {"smooth": 0.5},
        "weight": 2.0,
    }
    override = ["--model.init_args.loss_fn", "[ce, {name: dice, params: {smoth: 1}}]"]
    assert main(["check", "--config", config, *override]) == 2
    assert "model.init_args.loss_fn[1].params.smoth" in capsys.readouterr().err


# --------------------------------------------------------------------------- autotimm schema
@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return config_json_schema()


def _error_paths(schema: dict[str, Any], config: dict[str, Any]) -> set[str]:
    def walk(errors: Any) -> Any:
        for error in errors:
            yield ".".join(str(part) for part in error.absolute_path)
            yield from walk(iter(error.context or ()))

    validator = jsonschema.Draft202012Validator(schema)
    return set(walk(validator.iter_errors(config)))


def test_the_schema_accepts_lists_and_completes_each_terms_name_and_params(
    schema: dict[str, Any],
) -> None:
    config = load_config(LIST_CONFIG)
    assert _error_paths(schema, config) == set()
    lists = [b for b in schema["$defs"]["loss"]["anyOf"] if b.get("type") == "array"]
    (terms,) = lists
    name_only, term = terms["items"]["anyOf"]
    assert "dice" in name_only["enum"] and "dice" in term["properties"]["name"]["enum"]
    branch = next(b for b in term["allOf"] if b["if"]["properties"]["name"]["const"] == "dice")
    assert branch["then"]["properties"]["params"] == {
        "anyOf": [{"$ref": "#/$defs/loss_dice"}, {"type": "null"}]
    }
    assert set(term["properties"]) == {"name", "params", "weight", "label", "class_path"}


@pytest.mark.parametrize(
    ("term", "where"),
    [
        ({"name": "dice", "params": {"smoth": 1}}, "model.init_args.loss_fn.1.params"),
        ({"name": "dice", "params": {"smooth": -1}}, "model.init_args.loss_fn.1.params.smooth"),
        ({"name": "dice", "weight": -1}, "model.init_args.loss_fn.1.weight"),
        ({"name": "dise"}, "model.init_args.loss_fn.1.name"),
        ({"name": "dice", "wieght": 1}, "model.init_args.loss_fn.1"),
        ("dise", "model.init_args.loss_fn.1"),
    ],
)
def test_the_schema_rejects_a_bad_term_at_its_path(
    schema: dict[str, Any], term: Any, where: str
) -> None:
    config = load_config(LIST_CONFIG)
    config["model"]["init_args"]["loss_fn"][1] = term
    assert where in _error_paths(schema, config)


def test_losses_show_prints_the_terms_structure(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses", "show", "weighted_sum", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    term = shown["properties"]["terms"]["items"]["anyOf"][1]
    assert term["required"] == ["name"] and term["properties"]["weight"]["minimum"] == 0
    assert main(["losses", "show", "weighted_sum"]) == 0
    table = capsys.readouterr().out
    assert "terms" in table and "weight: float >= 0 = 1.0" in table
    assert "takes: what its caller feeds (each part gets what it takes)" in table
    assert main(["losses", "list", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["weighted_sum"]["builds_for_caller"] and not rows["dice"]["builds_for_caller"]


@pytest.mark.parametrize("columns", ["60", "80", "120"])
def test_losses_show_never_splits_a_bound_or_a_default_across_lines(
    columns: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", columns)
    assert main(["losses", "show", "weighted_sum"]) == 0
    table = capsys.readouterr().out
    assert "weight: float >= 0 = 1.0" in table and "params: dict = {}" in table
    type_lines = table.split("terms ")[1].split("    The losses")[0].splitlines()
    for line in type_lines:  # the type column breaks after "," or at "|" only
        assert not line.rstrip().endswith((">=", "=", ":")), line


# --------------------------------------------------------------------------- autotimm fit
@pytest.mark.slow
def test_fit_trains_on_a_list_and_saves_it_as_plain_data(data_root: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "autotimm",
            "fit",
            "--config",
            str(CONFIGS / LIST_CONFIG),
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.max_steps=2",
            "--trainer.num_sanity_val_steps=0",
            "--trainer.limit_val_batches=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            "--data.init_args.image_size=32",
        ],
        cwd=data_root.parent,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (run,) = sorted((tmp_path / "logs").glob("version_*"))
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["model"]["init_args"]["loss_fn"] == loss_argument.normalize(
        load_config(LIST_CONFIG)["model"]["init_args"]["loss_fn"]
    )
    (checkpoint,) = sorted(run.rglob("*.ckpt"))[:1]
    stored = torch.load(checkpoint, weights_only=True)["hyper_parameters"]["loss_fn"]
    assert stored["name"] == "weighted_sum"
    assert [t["label"] for t in stored["params"]["terms"]] == [None, None, "boundary"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    logged = set(events.Tags()["scalars"])
    for key in ("cross_entropy", "dice", "boundary"):
        assert f"train/loss_{key}" in logged and f"val/loss_{key}" in logged, logged

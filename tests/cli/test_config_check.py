"""The whole-config checker: every problem of a config at once, each at its place, nothing built.

In-process and fast; the CLI around it is driven in a subprocess by test_config_cli.py.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import CONFIGS, TASK_CONFIGS, load_config
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import autotimm.config
from autotimm.config import loss_argument
from autotimm.config.check import check_config, resolve_class
from autotimm.config.cli import import_modules
from autotimm.config.hooks import layout_problems, splits_for
from autotimm.config.parser import class_parameters
from autotimm.config.raw import read_raw_config
from autotimm.config.trainer import config_trainer
from autotimm.losses import register_loss
from autotimm.losses.resolve import LossLike


def places(config: dict[str, Any], stage: str = "fit") -> list[str]:
    return [problem.place for problem in check_config(config, stage=stage).problems]


def messages(config: dict[str, Any], stage: str = "fit") -> dict[str, str]:
    return {p.place: p.message for p in check_config(config, stage=stage).problems}


@pytest.fixture
def segmentation(data_root: Path) -> dict[str, Any]:
    return load_config("segmentation.yaml", data_root)


# --------------------------------------------------------------------------- good configs
@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_in_configs_checks_clean(
    name: str, data_root: Path, clean_imports: None
) -> None:
    config = load_config(name, data_root)
    assert import_modules(config.get("imports", []), [CONFIGS]) == []
    for stage in ("fit", "validate", "test", "predict"):
        result = check_config(config, stage=stage)
        assert result.problems == [], (stage, result.problems)
        assert result.warnings == []


def test_configs_cover_every_task_and_a_custom_loss() -> None:
    models = {
        yaml.safe_load((CONFIGS / name).read_text())["model"]["class_path"]
        for name in TASK_CONFIGS.values()
    }
    assert models == {"ImageClassifier", "SemanticSegmentor", "ObjectDetector", "InstanceSegmentor"}
    custom = yaml.safe_load((CONFIGS / "custom_loss.yaml").read_text())
    assert custom["imports"] == ["my_losses"] and (CONFIGS / "my_losses.py").is_file()


# --------------------------------------------------------------------------- bad configs
def test_every_problem_is_reported_at_once_at_its_place(segmentation: dict[str, Any]) -> None:
    init = segmentation["model"]["init_args"]
    init["lrr"] = 0.1  # unknown model argument
    init["decoder_channels"] = "wide"  # wrong type
    init["loss_fn"] = {
        "name": "combined_segmentation",
        "params": {"smoth": 1.0, "reduction": "avg", "dice_weight": -1, "label_smoothing": "x"},
    }
    segmentation["data"]["init_args"]["data_dir"] = "/nonexistent/data"
    segmentation["data"]["init_args"]["batch_sise"] = 2
    segmentation["trainer"]["max_stepz"] = 3
    found = messages(segmentation)
    loss = "model.init_args.loss_fn.params"
    assert sorted(found) == sorted(
        [
            "model.init_args.lrr",
            "model.init_args.decoder_channels",
            f"{loss}.smoth",
            f"{loss}.reduction",
            f"{loss}.dice_weight",
            f"{loss}.label_smoothing",
            "data.init_args.data_dir",
            "data.init_args.batch_sise",
            "trainer.max_stepz",
        ]
    )
    assert "did you mean 'lr'" in found["model.init_args.lrr"]
    assert "expected int, got 'wide' (str)" in found["model.init_args.decoder_channels"]
    assert "did you mean 'smooth'" in found[f"{loss}.smoth"]
    assert "'mean' | 'sum' | 'none'" in found[f"{loss}.reduction"]
    assert "greater than or equal to 0" in found[f"{loss}.dice_weight"]
    assert "did you mean 'batch_size'" in found["data.init_args.batch_sise"]
    assert "did you mean 'max_steps'" in found["trainer.max_stepz"]


@pytest.mark.parametrize(
    ("loss_fn", "place"),
    [
        ("dise", "model.init_args.loss_fn"),
        ({"name": "dise", "params": {"smooth": 1.0}}, "model.init_args.loss_fn.name"),
    ],
)
def test_unknown_loss_name_gets_the_registry_suggestion(
    segmentation: dict[str, Any], loss_fn: Any, place: str
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = loss_fn
    found = messages(segmentation)
    assert list(found) == [place]
    assert "Did you mean 'dice'" in found[place]


def test_required_loss_parameter_is_missing_unless_the_model_supplies_it(
    segmentation: dict[str, Any],
) -> None:
    @register_loss(task="segmentation")
    class NeedsTemperatureLoss(nn.Module):
        def __init__(self, num_classes: int, ignore_index: int, temperature: float) -> None:
            super().__init__()

    segmentation["model"]["init_args"]["loss_fn"] = "needs_temperature"
    found = messages(segmentation)
    place = "model.init_args.loss_fn.params.temperature"
    assert list(found) == [place]  # num_classes and ignore_index come from the model
    assert "missing required argument" in found[place]
    assert "neither the config nor SemanticSegmentor supplies it" in found[place]
    segmentation["model"]["init_args"]["loss_fn"] = {
        "name": "needs_temperature",
        "params": {"temperature": 2.0},
    }
    assert places(segmentation) == []


def test_model_context_values_are_checked_where_the_model_sets_them(
    segmentation: dict[str, Any],
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = "dice"
    segmentation["model"]["init_args"]["ignore_index"] = 1.5  # reaches dice as context
    assert set(places(segmentation)) == {"model.init_args.ignore_index"}


def test_loss_kwargs_problems_are_placed_under_loss_kwargs(data_root: Path) -> None:
    config = load_config("classification.yaml", data_root)
    config["model"]["init_args"]["loss_fn"] = "cross_entropy"
    config["model"]["init_args"]["loss_kwargs"] = {"label_smothing": 0.1}
    assert places(config) == ["model.init_args.loss_kwargs.label_smothing"]


def test_a_loss_for_another_task_is_a_warning_naming_the_model_tasks_losses(
    data_root: Path,
) -> None:
    config = load_config("classification.yaml", data_root)
    config["model"]["init_args"]["loss_fn"] = "focal_pixelwise"  # fits [N, C] logits and labels
    result = check_config(config)
    assert result.problems == []
    (warning,) = result.warnings
    assert warning.place == "model.init_args.loss_fn"
    assert "registered for segmentation, not classification" in warning.message
    fitting = "that fit loss_fn: asymmetric, bce, bce_with_logits, cross_entropy, mse, nll, poly1"
    assert fitting in warning.message


def test_a_loss_the_model_cannot_feed_is_a_problem_naming_the_losses_that_fit(
    data_root: Path,
) -> None:
    config = load_config("classification.yaml", data_root)
    config["model"]["init_args"]["loss_fn"] = "giou"
    found = messages(config)
    assert list(found) == ["model.init_args.loss_fn"]
    assert "ImageClassifier cannot use loss_fn='giou': it takes boxes" in found[
        "model.init_args.loss_fn"
    ]
    assert "Registered losses that fit loss_fn: asymmetric, bce, bce_with_logits," in found[
        "model.init_args.loss_fn"
    ]
    detection = load_config("instance_segmentation.yaml", data_root)
    detection["model"]["init_args"]["reg_loss_fn"] = "dice"
    detection["model"]["init_args"]["mask_loss_fn"] = "ce"
    detection["model"]["init_args"]["cls_loss_kwargs"] = {"num_classes": 7}
    assert places(detection) == [
        "model.init_args.cls_loss_fn",
        "model.init_args.reg_loss_fn",
        "model.init_args.mask_loss_fn",
    ]


def test_the_model_default_loss_is_checked_with_what_the_model_feeds(data_root: Path) -> None:
    config = load_config("segmentation.yaml", data_root)
    init = config["model"]["init_args"]
    init.pop("loss_fn", None)
    init["num_classes"] = 1  # one channel: the default is then bce_with_logits, which fits
    assert places(config) == []
    init["loss_fn"] = "dice"
    assert "softmax over one channel is constant" in messages(config)["model.init_args.loss_fn"]


def test_class_weights_are_checked_where_the_model_sets_them(data_root: Path) -> None:
    config = load_config("classification.yaml", data_root)
    config["model"]["init_args"]["class_weights"] = [1.0, -2.0, 1.0]  # reach ce's weight
    found = messages(config)
    assert list(found) == ["model.init_args.class_weights"]
    assert "loss 'cross_entropy': expected Tensor >= 0" in found["model.init_args.class_weights"]


def test_detector_losses_each_get_their_own_place(data_root: Path) -> None:
    config = load_config("instance_segmentation.yaml", data_root)
    init = config["model"]["init_args"]
    init["cls_loss_fn"] = {"name": "focal", "params": {"gama": 2}}
    init["reg_loss_fn"] = "gio"
    init["mask_loss_fn"] = {"name": "mask", "params": {"reduction": "avg"}}
    assert places(config) == [
        "model.init_args.cls_loss_fn.params.gama",
        "model.init_args.reg_loss_fn",
        "model.init_args.mask_loss_fn.params.reduction",
    ]


@pytest.mark.parametrize(
    ("loss_fn", "expected"),
    [
        ({"class_path": "autotimm.losses.DiceLoss"}, "not by class_path/init_args"),
        ({"nam": "dice"}, "did you mean 'name'"),
        ({"name": "dice", "params": [1, 2]}, "'params' of a loss spec is a mapping"),
        ([], "a list of losses needs at least one term"),
        (3, "expected a loss name or a spec"),
    ],
)
def test_malformed_loss_values_say_what_shape_is_expected(
    segmentation: dict[str, Any], loss_fn: Any, expected: str
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = loss_fn
    found = messages(segmentation)
    assert list(found) == ["model.init_args.loss_fn"]
    assert expected in found["model.init_args.loss_fn"]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ({"name": "dice", "wieght": 2}, "term (dice): wieght: unknown key"),
        ({"name": "dice", "weight": -1}, "term (dice): weight: expected a finite number >= 0"),
        (3, "term: expected a loss name or a term {name, params, weight, label}, got 3"),
    ],
)
def test_a_malformed_term_is_named_at_its_place_in_the_list(
    segmentation: dict[str, Any], term: Any, expected: str
) -> None:
    segmentation["model"]["init_args"]["loss_fn"] = ["cross_entropy", term]
    found = messages(segmentation)
    assert list(found) == ["model.init_args.loss_fn[1]"]
    assert found["model.init_args.loss_fn[1]"].startswith(expected)


def test_every_problem_of_every_term_is_named_in_one_pass(segmentation: dict[str, Any]) -> None:
    """A term's bad weight does not hide its unknown name, nor another term's bad params."""
    segmentation["model"]["init_args"]["loss_fn"] = [
        "cross_entropy",
        {"name": "dice", "params": {"smoth": 0.5}},
        {"name": "lovaz", "weight": -0.5},
        {"name": "jaccard", "label": "x"},
        {"name": "tversky", "label": "x", "params": {"alpha": -1}},
    ]
    found = messages(segmentation)
    assert sorted(found) == [
        "model.init_args.loss_fn[1].params.smoth",
        "model.init_args.loss_fn[2]",
        "model.init_args.loss_fn[2].name",
        "model.init_args.loss_fn[4]",
        "model.init_args.loss_fn[4].params.alpha",
    ]
    assert "did you mean 'smooth'" in found["model.init_args.loss_fn[1].params.smoth"]
    assert "weight: expected a finite number >= 0" in found["model.init_args.loss_fn[2]"]
    assert "Did you mean 'lovasz'" in found["model.init_args.loss_fn[2].name"]
    assert "'x' is the label of [3] too" in found["model.init_args.loss_fn[4]"]


def test_unknown_classes_backbones_sections_and_missing_arguments(
    segmentation: dict[str, Any],
) -> None:
    segmentation["model"]["class_path"] = "SemanticSegmenter"
    segmentation["data"]["init_args"].pop("data_dir")
    found = messages(segmentation)
    assert "did you mean 'SemanticSegmentor'" in found["model.class_path"]
    assert "missing required argument" in found["data.init_args.data_dir"]
    segmentation["model"]["class_path"] = "autotimm.SemanticSegmentor"
    segmentation["model"]["init_args"]["backbone"] = "resnet10"
    assert (
        "is not a timm model name; did you mean 'resnet10t'"
        in messages(segmentation)["model.init_args.backbone"]
    )


@pytest.mark.parametrize(
    ("module", "task"),
    [
        ("ImageDataModule", "detection"),
        ("SegmentationDataModule", "classification"),
        ("DetectionDataModule", "segmentation"),
        ("SegmentationDataModule", "detection"),
    ],
)
def test_data_dir_layout_is_checked_by_listing_directories(
    data_root: Path, module: str, task: str
) -> None:
    import autotimm

    problems = layout_problems(getattr(autotimm, module), data_root / task, "fit")
    assert problems, (module, task)
    assert all(str(data_root / task) in problem for problem in problems)


def test_stage_decides_which_splits_must_exist(data_root: Path) -> None:
    from autotimm.data import ImageDataModule

    root = data_root / "classification"
    assert layout_problems(ImageDataModule, root, "predict") == []  # no test split: val
    assert splits_for("validate", lambda split: True) == ["val"]
    assert splits_for("test", lambda split: True) == ["test"]


def test_ckpt_path_must_exist(segmentation: dict[str, Any], tmp_path: Path) -> None:
    segmentation["ckpt_path"] = str(tmp_path / "missing.ckpt")
    assert places(segmentation, "validate") == ["ckpt_path"]
    segmentation["ckpt_path"] = "last"
    assert places(segmentation, "fit") == []


def test_class_paths_resolve_by_short_name_and_import_path() -> None:
    from lightning.pytorch import LightningDataModule, LightningModule

    import autotimm

    for name in (
        "SemanticSegmentor",
        "autotimm.SemanticSegmentor",
        "autotimm.models.SemanticSegmentor",
    ):
        assert resolve_class(name, LightningModule)[0] is autotimm.SemanticSegmentor
    cls, message = resolve_class("ImageDataModule", LightningModule)
    assert cls is None and "ImageClassifier" in message
    assert resolve_class("torch.nn.Linear", LightningDataModule)[0] is None


# --------------------------------------------------------------------------- the loss type
def test_every_model_loss_argument_is_typed_as_a_loss(backbone: str) -> None:
    import autotimm

    expected = {
        autotimm.ImageClassifier: {"loss_fn"},
        autotimm.SemanticSegmentor: {"loss_fn"},
        autotimm.ObjectDetector: {"cls_loss_fn", "reg_loss_fn"},
        autotimm.InstanceSegmentor: {"cls_loss_fn", "reg_loss_fn", "mask_loss_fn"},
    }
    for model, losses in expected.items():
        parameters = class_parameters(model)
        assert {n for n, p in parameters.items() if p.is_loss} == losses, model
        assert all(
            p.is_loss == loss_argument.is_loss_annotation(p.annotation) for p in parameters.values()
        )
    # arguments forwarded through **kwargs are resolved too (the detector's, for the segmentor)
    assert {"fpn_channels", "score_thresh", "lr"} <= set(
        class_parameters(autotimm.InstanceSegmentor)
    )


_names = st.sampled_from(["dice", "focal", "ce", "my_loss"])
_plain = st.one_of(
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False),
    st.booleans(),
    st.sampled_from(["a", "mean"]),
)
_params = st.dictionaries(
    st.sampled_from(["smooth", "gamma", "weights", "reduction"]),
    _plain | st.lists(_plain, max_size=3),
    max_size=3,
)
_specs = st.one_of(_names, st.builds(lambda n, p: {"name": n, "params": p}, _names, _params))


@settings(max_examples=150, deadline=None)
@given(_specs)
def test_loss_values_normalize_idempotently_and_survive_yaml(value: Any) -> None:
    normalized = loss_argument.normalize(value)
    assert loss_argument.normalize(normalized) == normalized
    assert loss_argument.normalize(yaml.safe_load(yaml.safe_dump(normalized))) == normalized
    if isinstance(value, dict):  # the spec form also reads from a one-line YAML override
        assert loss_argument.normalize(yaml.safe_dump(value, default_flow_style=True)) == normalized
    assert [item for _, item in loss_argument.loss_items(normalized)] == [normalized]


@settings(max_examples=150, deadline=None)
@given(
    st.recursive(
        _plain | st.none(),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        ),
        max_leaves=6,
    )
)
def test_loss_values_are_accepted_or_refused_with_a_value_error(value: Any) -> None:
    try:
        loss_argument.normalize(value)
    except ValueError as error:
        assert str(error)


def test_loss_annotations_are_recognised_however_spelled() -> None:
    assert loss_argument.loss_annotation(LossLike) is loss_argument.LossArgument
    optional = loss_argument.loss_annotation(LossLike | None)
    assert optional == loss_argument.LossArgument | None
    assert loss_argument.loss_annotation(str | nn.Module) is None
    assert loss_argument.loss_annotation(LossLike | int) is None


# --------------------------------------------------------------------------- raw configs
def test_raw_config_merges_files_and_overrides_in_order(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    first.write_text(
        "model: {class_path: ImageClassifier, init_args: {num_classes: 3, lr: 0.1}}\n"
        "imports: [one]\n"
    )
    second = tmp_path / "b.yaml"
    second.write_text("model: {init_args: {lr: 0.2}}\ntrainer: {max_epochs: 2}\n")
    raw = read_raw_config(
        [
            "--config",
            str(first),
            "-c",
            str(second),
            "--model.lr",
            "0.3",
            "--trainer.max_epochs=4",
            "--imports",
            "two",
        ]
    )
    assert raw.values["model"] == {
        "class_path": "ImageClassifier",
        "init_args": {"num_classes": 3, "lr": 0.3},
    }
    assert raw.values["trainer"] == {"max_epochs": 4}
    assert raw.imports == ["one", "two"]
    changed = read_raw_config(["--config", str(first), "--model", "SemanticSegmentor"])
    assert changed.values["model"] == {"class_path": "SemanticSegmentor"}  # old init_args dropped
    missing = read_raw_config(["--config", str(tmp_path / "nope.yaml")])
    assert [p.message for p in missing.problems] == ["config file not found"]


def test_loss_override_from_the_command_line_reads_as_yaml(tmp_path: Path) -> None:
    raw = read_raw_config(["--model.init_args.loss_fn", "{name: dice, params: {smooth: 2}}"])
    assert raw.values["model"]["init_args"]["loss_fn"] == {"name": "dice", "params": {"smooth": 2}}


# --------------------------------------------------------------------------- trainer
def test_config_trainer_accepts_trainer_arguments_and_keeps_autotrainer_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    parameters = class_parameters(config_trainer)
    assert {"max_steps", "limit_val_batches", "checkpoint_monitor", "callbacks"} <= set(parameters)
    trainer = config_trainer(
        default_root_dir=None, logger=None, max_steps=3, enable_progress_bar=False
    )
    assert Path(trainer.default_root_dir).name == "autotimm_runs"
    assert trainer.max_steps == 3 and trainer.logger is not None


def test_an_integer_stays_an_integer_where_the_type_allows_it() -> None:
    from autotimm.config.parser import section_parser

    parsed = section_parser(config_trainer).parse_object({"limit_val_batches": 1}, defaults=False)
    assert parsed.limit_val_batches == 1 and isinstance(parsed.limit_val_batches, int)


# --------------------------------------------------------------------------- docstrings
@pytest.mark.parametrize(
    "module_name",
    sorted(n for _, n, _ in pkgutil.walk_packages(autotimm.config.__path__, "autotimm.config.")),
)
def test_docstring_examples(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {module_name}"


def test_a_stored_spec_with_its_class_path_is_a_loss_value() -> None:
    """Checkpoints store ``{name, params, class_path}``; validate/test/predict read them back."""
    from autotimm.losses import LossSpec

    stored = LossSpec(name="dice", params={"smooth": 0.5}).model_dump(mode="json")
    assert stored["class_path"] == "autotimm.losses.segmentation.DiceLoss"
    assert loss_argument.normalize(stored) == stored
    with pytest.raises(ValueError, match="registry name, not by class_path/init_args"):
        loss_argument.normalize({"class_path": "autotimm.losses.DiceLoss", "init_args": {}})
    with pytest.raises(ValueError, match="'class_path' of a loss spec"):
        loss_argument.normalize({"name": "dice", "class_path": 3})

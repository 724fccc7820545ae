"""``autotimm fit | validate | test | predict | check`` driven as users run them.

The runs are subprocesses on generated data with a tiny backbone (resnet10t from scratch,
32-64 px, 1-2 steps); the bad-config cases also run in-process for every subcommand.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import CONFIGS, TASK_CONFIGS, load_config
from PIL import Image

from autotimm.cli import main

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TINY = [
    "--trainer.max_steps=2",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.limit_val_batches=1",
    "--trainer.limit_test_batches=1",
    *QUIET,
]
IMAGE_SIZE = {"classification": 32, "segmentation": 32}  # detection: the configs' 64 px
SPY = """
import sys
from pathlib import Path

import timm

marker, real = Path(sys.argv[1]), timm.create_model


def spy(*args, **kwargs):
    marker.write_text("a backbone was built")
    return real(*args, **kwargs)


timm.create_model = spy
from autotimm.cli import main

sys.exit(main(sys.argv[2:]))
"""


def autotimm(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autotimm", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **(env or {})},
    )


def run_dir(root: Path) -> Path:
    (version,) = sorted((root / "logs").glob("version_*"))
    return version


# --------------------------------------------------------------------------- good runs
@pytest.fixture(scope="module")
def fit_task(
    data_root: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], dict[str, Any]]:
    """``autotimm fit`` of a task's configs/ file, run once per task: its run directory and
    the arguments the run used."""
    done: dict[str, dict[str, Any]] = {}

    def fit(task: str) -> dict[str, Any]:
        if task not in done:
            root = tmp_path_factory.mktemp(f"runs_{task}")
            extra = [f"--trainer.default_root_dir={root}"]
            if task in IMAGE_SIZE:
                extra.append(f"--data.init_args.image_size={IMAGE_SIZE[task]}")
            else:  # keep every detection, so that the predictions file is never empty
                extra.append("--model.init_args.score_thresh=0.0")
            config = str(CONFIGS / TASK_CONFIGS[task])
            result = autotimm("fit", "--config", config, *TINY, *extra, cwd=data_root.parent)
            assert result.returncode == 0, result.stderr[-4000:]
            done[task] = {"task": task, "root": root, "config": config, "extra": extra}
            done[task]["cwd"] = data_root.parent
        return done[task]

    return fit


@pytest.fixture(params=sorted(TASK_CONFIGS))
def fitted(
    request: pytest.FixtureRequest, fit_task: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    return fit_task(request.param)


@pytest.mark.slow
def test_fit_writes_a_checkpoint_and_the_saved_config(fitted: dict[str, Any]) -> None:
    run = run_dir(fitted["root"])
    checkpoint = run / "checkpoints" / "last.ckpt"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    written = yaml.safe_load(Path(fitted["config"]).read_text())
    for argument, loss in written["model"]["init_args"].items():
        if argument.endswith("loss_fn"):
            assert saved["model"]["init_args"][argument] == loss  # plain data, as written
    state = torch.load(checkpoint, weights_only=True, map_location="cpu")
    import autotimm

    model_class = getattr(autotimm, written["model"]["class_path"])
    model = model_class.load_from_checkpoint(checkpoint, map_location="cpu")
    for argument in (a for a in written["model"]["init_args"] if a.endswith("loss_fn")):
        stored = state["hyper_parameters"][argument]
        assert model.hparams[argument] == stored
        name = stored if isinstance(stored, str) else stored["name"]
        loss = written["model"]["init_args"][argument]
        assert name == (loss if isinstance(loss, str) else loss["name"])
        for key, value in ({} if isinstance(loss, str) else loss.get("params", {})).items():
            assert stored["params"][key] == value


@pytest.mark.slow
def test_predict_writes_files_in_common_formats(fitted: dict[str, Any], data_root: Path) -> None:
    checkpoint = run_dir(fitted["root"]) / "checkpoints" / "last.ckpt"
    root = fitted["root"] / "predict"
    args = ["--config", fitted["config"], "--ckpt_path", str(checkpoint), *QUIET]
    extra = [f"--trainer.default_root_dir={root}", *fitted["extra"][1:]]
    result = autotimm("predict", *args, *extra, cwd=fitted["cwd"])
    assert result.returncode == 0, result.stderr[-4000:]
    out = run_dir(root) / "predictions"
    assert (run_dir(root) / "config.yaml").is_file()
    task = fitted["task"]
    if task == "classification":
        with (out / "predictions.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        classes = sorted(p.name for p in (data_root / task / "train").iterdir())
        assert list(rows[0]) == ["image", "label", *classes]
        assert len(rows) == len(list((data_root / task / "val").rglob("*.png")))
        for row in rows:
            probabilities = [float(row[c]) for c in classes]
            assert abs(sum(probabilities) - 1) < 1e-4
            assert row["label"] == classes[int(np.argmax(probabilities))]
            assert (data_root / task / row["image"]).is_file()
    elif task == "segmentation":
        images = sorted((data_root / task / "val" / "images").glob("*.png"))
        masks = sorted((out / "masks").glob("*.png"))
        assert [m.name for m in masks] == [i.name for i in images]
        for mask, image in zip(masks, images):
            array = np.asarray(Image.open(mask))
            assert array.shape == Image.open(image).size[::-1]
            assert array.max() < 3
    else:
        from pycocotools.coco import COCO

        results = json.loads((out / "detections.json").read_text())
        assert results, "score_thresh=0 keeps detections"
        ground_truth = COCO(str(data_root / task / "annotations" / "instances_val.json"))
        loaded = ground_truth.loadRes(results)  # the COCO results format
        assert set(loaded.getImgIds()) <= set(ground_truth.getImgIds())
        assert {r["category_id"] for r in results} <= set(ground_truth.getCatIds())
        if task == "instance_segmentation":
            from pycocotools import mask as mask_utils

            assert all(mask_utils.decode(r["segmentation"]).shape == (64, 64) for r in results)


@pytest.mark.slow
def test_validate_and_test_run_on_the_checkpoint_with_the_saved_config(
    fit_task: Callable[[str], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fitted = fit_task("segmentation")
    run = run_dir(fitted["root"])
    arguments = [
        "--config",
        str(run / "config.yaml"),
        "--ckpt_path",
        str(run / "checkpoints" / "last.ckpt"),
        *QUIET,
    ]
    validate = autotimm(
        "validate",
        *arguments,
        f"--trainer.default_root_dir={fitted['root'] / 'validate'}",
        cwd=fitted["cwd"],
    )
    assert validate.returncode == 0, validate.stderr[-4000:]
    assert "val/miou" in validate.stdout
    monkeypatch.chdir(fitted["cwd"])  # and `test` through the same entry point, in-process
    assert main(["test", *arguments, f"--trainer.default_root_dir={fitted['root'] / 'test'}"]) == 0
    assert "test/miou" in capsys.readouterr().out


# --------------------------------------------------------------------------- bad configs
BAD_PLACES = [
    "model.init_args.lrr",
    "model.init_args.loss_fn.params.smoth",
    "model.init_args.loss_fn.params.reduction",
    "model.init_args.loss_fn.params.dice_weight",
    "data.init_args.batch_size",
    "data.init_args.data_dir",
    "trainer.max_stepz",
]


def write_bad_config(directory: Path, *, parse_errors: bool = True) -> Path:
    """A segmentation config with loss, model, data and trainer problems (or loss/data ones
    only, which jsonargparse itself accepts)."""
    config = load_config("segmentation.yaml")
    init = config["model"]["init_args"]
    init["loss_fn"] = {
        "name": "combined_segmentation",
        "params": {"smoth": 1.0, "reduction": "avg", "dice_weight": -1},
    }
    config["data"]["init_args"]["data_dir"] = "data/not_there"
    if parse_errors:
        init["lrr"] = 0.1
        config["data"]["init_args"]["batch_size"] = "four"
        config["trainer"]["max_stepz"] = 3
    path = directory / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_a_bad_config_fails_fast_with_every_problem_and_builds_nothing(tmp_path: Path) -> None:
    bad = write_bad_config(tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}.backbone"
    result = subprocess.run(
        [sys.executable, "-c", SPY, str(marker), "fit", "--config", bad.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr
    for place in BAD_PLACES:
        assert f"  - {place}: " in result.stderr, place
    assert "the config has 7 problems" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # no run directory
    assert not marker.exists(), "a backbone was built"


@pytest.mark.parametrize("parse_errors", [True, False], ids=["parse-errors", "check-only"])
@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict", "check"])
def test_every_subcommand_runs_the_same_checks(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    parse_errors: bool,
) -> None:
    import timm

    built: list[Any] = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: built.append(a))
    monkeypatch.chdir(tmp_path)
    bad = write_bad_config(tmp_path, parse_errors=parse_errors)
    assert main([command, "--config", bad.name]) == 2
    error = capsys.readouterr().err
    expected = (
        BAD_PLACES
        if parse_errors
        else [p for p in BAD_PLACES if ".loss_fn." in p or "data_dir" in p]
    )
    reported = [
        line.split(": ")[0].strip(" -") for line in error.splitlines() if line.startswith("  - ")
    ]
    assert sorted(reported) == sorted(expected)
    assert built == [] and sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


def test_print_config_checks_first_and_prints_losses_as_data(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(data_root.parent)
    config = str(CONFIGS / "segmentation.yaml")
    assert main(["fit", "--config", config, "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["loss_fn"] == {
        "name": "combined_segmentation",
        "params": {"dice_weight": 2.0},
    }
    assert printed["model"]["class_path"] == "autotimm.SemanticSegmentor"
    override = ["--model.init_args.loss_fn", "{name: dice, params: {smoth: 1}}"]
    assert main(["fit", "--config", config, *override, "--print_config"]) == 2
    assert "model.init_args.loss_fn.params.smoth" in capsys.readouterr().err


def test_check_prints_the_resolved_config_and_exits_0(
    data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(data_root.parent)
    assert main(["check", "--config", str(CONFIGS / "detection.yaml")]) == 0
    out, err = capsys.readouterr()
    resolved = yaml.safe_load(out)
    assert resolved["model"]["init_args"]["reg_loss_fn"] == "giou"
    assert resolved["trainer"]["checkpoint_monitor"] == "val/loss"  # defaults filled in
    assert "the config is valid" in err


def test_several_configs_and_overrides_merge_in_order(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(data_root.parent)
    override = tmp_path / "override.yaml"
    override.write_text(
        "model:\n  init_args:\n    loss_fn: {name: dice, params: {smooth: 0.5}}\n"
        "trainer:\n  callbacks:\n    - class_path: lightning.pytorch.callbacks.EarlyStopping\n"
        "      init_args: {monitor: val/loss, patience: 2}\n"
    )
    config = ["--config", str(CONFIGS / "segmentation.yaml"), "--config", str(override)]
    assert main(["check", *config, "--model.init_args.lr", "0.5"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["init_args"]["loss_fn"] == {"name": "dice", "params": {"smooth": 0.5}}
    assert resolved["model"]["init_args"]["lr"] == 0.5
    assert resolved["model"]["init_args"]["decoder_channels"] == 64  # from the first file
    assert resolved["trainer"]["callbacks"][0]["init_args"]["patience"] == 2


def test_help_lists_the_config_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--model" in out and "--trainer.max_steps" in out and "--imports" in out


# --------------------------------------------------------------------------- your own losses
@pytest.mark.slow
def test_a_custom_loss_from_imports_trains(data_root: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"  # the module sits next to the config, not in the cwd
    project.mkdir()
    shutil.copy(CONFIGS / "custom_loss.yaml", project)
    shutil.copy(CONFIGS / "my_losses.py", project)
    result = autotimm(
        "fit",
        "--config",
        str(project / "custom_loss.yaml"),
        *TINY,
        "--trainer.max_steps=1",
        "--data.init_args.image_size=32",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        cwd=data_root.parent,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = torch.load(run_dir(tmp_path / "runs") / "checkpoints" / "last.ckpt", weights_only=True)
    loss = state["hyper_parameters"]["loss_fn"]
    assert loss["name"] == "my_focal_tversky"
    assert loss["params"]["gamma"] == 1.5 and loss["params"]["num_classes"] == 3  # from the model


def test_imports_flag_finds_a_module_in_the_working_directory(
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clean_imports: None,
) -> None:
    shutil.copy(CONFIGS / "my_losses.py", tmp_path)
    (tmp_path / "data").symlink_to(data_root)
    config = load_config("custom_loss.yaml")
    del config["imports"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.chdir(tmp_path)
    assert main(["check", "--config", "run.yaml"]) == 2
    assert "Unknown loss 'my_focal_tversky'" in capsys.readouterr().err
    assert main(["check", "--config", "run.yaml", "--imports", "my_losses"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["imports"] == ["my_losses"]  # kept in the resolved (and saved) config
    assert main(["check", "--config", "run.yaml", "--imports", "no_such_losses"]) == 2
    assert "imports[0]: cannot import 'no_such_losses'" in capsys.readouterr().err


@pytest.mark.slow
def test_a_loss_from_an_entry_point_plugin_trains(data_root: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "config_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: config_plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[autotimm.losses]\nplugin = config_plugin_losses\n")
    (site / "config_plugin_losses.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            from autotimm.losses import register_loss


            @register_loss(task="segmentation")
            class PluginCrossEntropyLoss(nn.Module):
                def __init__(self, ignore_index: int = 255, scale: float = 1.0) -> None:
                    super().__init__()
                    self.ignore_index, self.scale = ignore_index, scale

                def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
                    loss = nn.functional.cross_entropy(
                        logits, target, ignore_index=self.ignore_index
                    )
                    return loss * self.scale
            """
        )
    )
    config = load_config("segmentation.yaml")
    config["model"]["init_args"]["loss_fn"] = {
        "name": "plugin_cross_entropy",
        "params": {"scale": 2.0},
    }
    (tmp_path / "plugin.yaml").write_text(yaml.safe_dump(config))
    pythonpath = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    result = autotimm(
        "fit",
        "--config",
        str(tmp_path / "plugin.yaml"),
        *TINY,
        "--trainer.max_steps=1",
        "--data.init_args.image_size=32",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        cwd=data_root.parent,
        env={"PYTHONPATH": pythonpath},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    state = torch.load(run_dir(tmp_path / "runs") / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["hyper_parameters"]["loss_fn"]["name"] == "plugin_cross_entropy"
    schema = autotimm("schema", cwd=tmp_path, env={"PYTHONPATH": pythonpath})
    assert schema.returncode == 0, schema.stderr
    losses = json.loads(schema.stdout)["$defs"]
    assert "plugin_cross_entropy" in losses["loss"]["anyOf"][0]["enum"]
    assert "scale" in losses["loss_plugin_cross_entropy"]["properties"]


def test_data_synthetic_writes_the_layout_a_config_reads(tmp_path: Path) -> None:
    result = autotimm(
        "data",
        "synthetic",
        "--task",
        "detection",
        "--out",
        "data/detection",
        "--count",
        "2",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    root = tmp_path / "data" / "detection"
    assert {p.name for p in (root / "annotations").iterdir()} == {
        "instances_train.json",
        "instances_val.json",
    }
    assert len(list((root / "train").glob("*.png"))) == 2

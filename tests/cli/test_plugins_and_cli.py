"""Entry-point plugins (in a fresh interpreter, as users get them) and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from autotimm.cli import main


def _install_fake_distribution(
    root: Path, dist: str, entry_points: str, modules: dict[str, str]
) -> None:
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


def _run(code: str, path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=f"{path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_plugins_load_lazily_register_and_never_break_the_registry(tmp_path: Path) -> None:
    _install_fake_distribution(
        tmp_path,
        "good_losses",
        """
        [autotimm.losses]
        good = good_plugin
        by_class = good_plugin:ClassOnlyLoss
        """,
        {
            "good_plugin": """
            import torch.nn as nn
            from autotimm.losses import register_loss

            @register_loss(task="segmentation", alias="pg")
            class PluginGoodLoss(nn.Module):
                def __init__(self, num_classes: int = 2) -> None:
                    super().__init__()
                    self.num_classes = num_classes

            class ClassOnlyLoss(nn.Module):
                pass

            class PlainClass:
                pass

            NOT_A_LOSS = 42
            """
        },
    )
    _install_fake_distribution(
        tmp_path,
        "broken_losses",
        """
        [autotimm.losses]
        broken = broken_plugin
        """,
        {"broken_plugin": "raise ImportError('missing CUDA extension')\n"},
    )
    _install_fake_distribution(
        tmp_path,
        "exiting_losses",
        """
        [autotimm.losses]
        exiting = exiting_plugin
        not_a_loss = good_plugin:NOT_A_LOSS
        a_plain_class = good_plugin:PlainClass
        """,
        {"exiting_plugin": "import sys\nsys.exit('cannot run here')\n"},
    )
    result = _run(
        """
        import sys, warnings
        import autotimm.losses as L
        assert "good_plugin" not in sys.modules, "plugins must load lazily"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss = L.get_loss("pg", num_classes=4)
        assert loss.num_classes == 4
        assert "plugin_good" in L.list_available_losses(task="segmentation")
        assert L.get_loss_registry().has_loss("by_class")
        assert L.get_loss_registry().has_loss("dice")
        messages = [str(w.message) for w in caught]
        broken = [m for m in messages if "broken_losses" in m and "missing CUDA extension" in m]
        assert broken, messages
        exiting = [m for m in messages if "'exiting'" in m and "SystemExit: cannot run here" in m]
        assert len(exiting) == 1, messages
        for name in ("not_a_loss", "a_plain_class"):
            found = [m for m in messages if f"{name!r}" in m and "is not a loss class" in m]
            assert len(found) == 1, messages
            assert not L.get_loss_registry().has_loss(name)
        with L.get_loss_registry().temporary():
            L.get_loss_registry().unregister("plugin_good")
        assert L.get_loss_registry().has_loss("pg")
        print("ok")
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_lists_losses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses", "list", "--task", "detection"]) == 0
    out = capsys.readouterr().out
    assert "giou" in out and "focal" in out and "dice" not in out
    assert main(["losses", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    ce = next(row for row in rows if row["name"] == "cross_entropy")
    assert ce["aliases"] == ["ce"] and ce["tasks"] == ["classification", "segmentation"]
    assert (ce["class_weights"], ce["soft_targets"], ce["class_dim"]) == ("weight", True, 1)
    focal = next(row for row in rows if row["name"] == "focal")
    assert (focal["class_dim"], focal["class_weights"]) == (-1, None)


def test_cli_shows_a_parameter_table_and_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses", "show", "focal"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("parameter"))
    assert header.split() == ["parameter", "type", "default", "constraint", "description"]
    gamma = next(line for line in out.splitlines() if line.startswith("gamma"))
    assert "float" in gamma and "2.0" in gamma and ">= 0" in gamma
    assert main(["losses", "show", "ce", "--json"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "label_smoothing" in schema["properties"]


def test_cli_show_says_what_each_mode_takes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["losses", "show", "dice"]) == 0
    assert "targets: class_indices (multiclass); dense (multilabel, binary)" in " ".join(
        capsys.readouterr().out.split()
    )
    assert main(["losses", "show", "focal"]) == 0
    assert "targets: dense\n" in capsys.readouterr().out


def test_cli_output_cut_short_by_a_pipe_ends_quietly() -> None:
    """``autotimm losses list | head -1``: no BrokenPipeError traceback, exit status 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "autotimm", "losses", "show", "weighted_sum"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the command writes
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr


def test_cli_unknown_name_and_task_fail_cleanly() -> None:
    for args in (["losses", "show", "dcie"], ["losses", "list", "--task", "nope"]):
        result = subprocess.run(
            [sys.executable, "-m", "autotimm", *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
    assert "expected one of 'classification'" in result.stderr
    show = subprocess.run(
        [sys.executable, "-m", "autotimm", "losses", "show", "dcie"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Did you mean 'dice'" in show.stderr


def test_cli_show_prints_plain_text_wrapped_to_the_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for columns in (80, 120):
        monkeypatch.setenv("COLUMNS", str(columns))
        for name in ("dice", "ce", "combined_segmentation"):
            assert main(["losses", "show", name]) == 0
            out = capsys.readouterr().out
            assert "``" not in out and ":class:" not in out, out
            assert all(len(line) <= columns for line in out.splitlines()), out
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["losses", "show", "ce"]) == 0
    out = capsys.readouterr().out
    assert "exactly as torch.nn.CrossEntropyLoss" in out
    reduction = out[out.index("\nreduction") :].splitlines()
    assert reduction[2] == '    "mean" (weighted mean over non-ignored targets), "sum" or "none".'
    monkeypatch.setenv("COLUMNS", "100")  # room for the column: it wraps in place
    assert main(["losses", "show", "combined"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = lines[next(i for i, line in enumerate(lines) if line.startswith("num_classes")) :]
    assert rows[0].endswith("If given, the logits must have this")
    assert rows[1] == " " * rows[0].index("If given") + "many classes."
    monkeypatch.setenv("COLUMNS", "80")  # a type wider than the room left wraps in its column
    assert main(["losses", "show", "dice"]) == 0
    lines = capsys.readouterr().out.splitlines()
    mode = next(i for i, line in enumerate(lines) if line.startswith("mode "))
    column = lines[mode].index("'multiclass' |")
    assert lines[mode + 1] == " " * column + "'multilabel' |"
    assert lines[mode + 2] == " " * column + "'binary'"

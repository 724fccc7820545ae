"""docs/training-from-a-config.md and the README: config files and commands run as shown.

The page's python block runs in tests/docs/test_docs.py like every page's. Here, each
```yaml block with a ``title="file.yaml"`` is written to a fresh directory, and every
``autotimm ...`` line of the ```bash blocks runs there in page order, through the CLI's
``main``. A ```text block marked ``<!-- cli-test: exit=N -->`` is the error output of the
commands before it, which must exit with ``N``. Runs are shrunk from the outside only
(``PL_TRAINER_LIMIT_*_BATCHES``), as for the other pages.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import ROOT

from autotimm.cli import main

PAGE = ROOT / "docs" / "training-from-a-config.md"
_FENCE = re.compile(
    r"(?:<!--\s*cli-test:\s*exit=(?P<exit>\d+)\s*-->\n)?"
    r"```(?P<lang>\w+)(?P<info>[^\n]*)\n(?P<code>.*?)\n```",
    re.DOTALL,
)


def page_blocks(page: Path = PAGE) -> list[dict[str, str | None]]:
    return [match.groupdict() for match in _FENCE.finditer(page.read_text(encoding="utf-8"))]


def test_page_is_in_the_site_navigation() -> None:
    assert "training-from-a-config.md" in (ROOT / "mkdocs.yml").read_text()


def test_config_snippets_are_valid_yaml_and_json() -> None:
    for block in page_blocks():
        if block["lang"] == "yaml":
            assert yaml.safe_load(block["code"] or "") is not None or "$schema" in str(
                block["code"]
            )
        if block["lang"] == "json":
            json.loads(block["code"] or "")


SHRINK = {
    "PL_TRAINER_LIMIT_TRAIN_BATCHES": "1",
    "PL_TRAINER_LIMIT_VAL_BATCHES": "1",
    "PL_TRAINER_LIMIT_PREDICT_BATCHES": "1",
    "PL_TRAINER_ENABLE_PROGRESS_BAR": "0",
    "PL_TRAINER_ENABLE_MODEL_SUMMARY": "0",
}


def run_page_commands(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Write the page's titled YAML files and run its ``autotimm`` commands in ``workdir``."""
    monkeypatch.chdir(workdir)
    for name, value in SHRINK.items():
        monkeypatch.setenv(name, value)
    ran: list[str] = []
    pending: list[int] = []  # exit codes of the last bash block, checked by the next block
    shown_error = ""
    for block in page_blocks(page):
        if block["lang"] == "text" and block["exit"] is not None:
            assert pending and pending[-1] == int(block["exit"]), (ran[-1], pending)
            assert shown_error.rstrip() == (block["code"] or "").rstrip()
            pending = []
            continue
        assert all(code == 0 for code in pending), (ran[-len(pending) :], pending)
        pending = []
        title = re.search(r'title="([^"]+)"', block["info"] or "")
        if block["lang"] == "yaml" and title:
            (workdir / title.group(1)).write_text(block["code"] or "", encoding="utf-8")
        elif block["lang"] == "bash":
            for line in (block["code"] or "").splitlines():
                if not line.startswith("autotimm "):
                    continue
                error = io.StringIO()
                with contextlib.redirect_stderr(error):
                    pending.append(main(shlex.split(line, comments=True)[1:]))
                ran.append(line)
                shown_error = error.getvalue()
    assert all(code == 0 for code in pending), (ran[-len(pending) :], pending)
    return ran


@pytest.mark.slow
def test_page_commands_run_as_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = run_page_commands(PAGE, tmp_path, monkeypatch)
    assert any(command.startswith("autotimm fit") for command in ran)
    assert any(command.startswith("autotimm predict") for command in ran)
    assert (tmp_path / "autotimm.schema.json").is_file()
    version = tmp_path / "autotimm_runs" / "logs" / "version_0"
    assert (version / "config.yaml").is_file() and (version / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_readme_config_commands_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    ran = run_page_commands(ROOT / "README.md", tmp_path, monkeypatch)
    assert [command.split()[1] for command in ran] == ["data", "fit", "check", "schema"]
    assert (
        tmp_path / "autotimm_runs" / "logs" / "version_0" / "checkpoints" / "last.ckpt"
    ).is_file()

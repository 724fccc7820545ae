"""The README's set-up commands and example are the ones that work."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import ROOT
from helpers.markdown import parse_blocks, run_page

README = ROOT / "README.md"


def test_readme_opens_with_the_two_setup_commands_ci_runs() -> None:
    first = next(b for b in parse_blocks(README.read_text()) if b.language == "bash")
    lines = first.code.strip().splitlines()
    assert lines == [
        'pip install -e ".[dev]" && autotimm demo',
        'pip install -e ".[dev]" && pytest',
    ]
    assert lines[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_examples_run_and_print_what_the_readme_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same markdown runner as the docs pages: blocks run, marked outputs are compared."""
    text = README.read_text()
    assert re.search(r"<!-- docs-test: output -->\n```text", text), "the shown output is checked"
    assert run_page(README, tmp_path, monkeypatch, placeholders={}) >= 1

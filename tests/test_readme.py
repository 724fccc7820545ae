"""The README's set-up commands and example are the ones that work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands_ci_runs() -> None:
    commands = re.search(r"```bash\n(.*?)```", README, re.S)
    assert commands is not None
    lines = commands.group(1).strip().splitlines()
    assert lines == [
        'pip install -e ".[dev]" && autotimm demo',
        'pip install -e ".[dev]" && pytest',
    ]
    assert lines[1] in (ROOT / ".ci" / "run").read_text()


def test_readme_example_prints_what_the_readme_says() -> None:
    code = re.search(r"```python\n(.*?)```", README, re.S)
    shown = re.search(r"prints\n\n```text\n(.*?)```", README, re.S)
    assert code is not None and shown is not None
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == shown.group(1)

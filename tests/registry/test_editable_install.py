"""An editable install (``pip install -e .``) is visible to pyright and mypy (issue 9, row m).

setuptools' default editable mode installs an import hook that static checkers cannot follow;
``package-dir`` in ``pyproject.toml`` makes it write a plain path instead. The test installs the
checkout into a throwaway venv and runs both checkers on user code outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import ROOT

USER_CODE = textwrap.dedent(
    """
    from autotimm.losses import get_loss
    from autotimm.losses.errors import LossConfigError

    reveal_type(get_loss("dice"))
    error: LossConfigError | None = None
    """
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv seeing the system's packages, with only this checkout installed, editable."""
    folder = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(folder)],
        check=True,
    )
    python = folder / "bin" / "python"
    install = ["install", "-q", "--no-deps", "--no-build-isolation", "-e", str(ROOT)]
    result = subprocess.run(
        [str(python), "-m", "pip", *install],
        capture_output=True,
        text=True,
        cwd=folder,
        env=_clean_env(),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    return folder


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or MYPYPATH: the checkers must find the package through the install."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MYPYPATH")}


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    (tmp_path / "user_code.py").write_text(USER_CODE)
    return tmp_path


@pytest.mark.slow
def test_editable_install_is_a_plain_path(venv: Path) -> None:
    site = next((venv / "lib").glob("python*/site-packages"))
    paths = [p.read_text().strip() for p in site.glob("*autotimm*.pth")]
    assert paths == [str(ROOT)], "expected a static path, not an import-hook finder"
    assert not list(site.glob("*autotimm*finder*"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("pyright") is None, reason="pyright comes with the dev extra")
def test_pyright_sees_the_editable_install(venv: Path, user_project: Path) -> None:
    result = subprocess.run(
        ["pyright", "--outputjson", "--pythonpath", str(venv / "bin" / "python"), "user_code.py"],
        capture_output=True,
        text=True,
        cwd=user_project,
        env=_clean_env(),
        timeout=600,
    )
    diagnostics = json.loads(result.stdout)["generalDiagnostics"]
    errors = [d["message"] for d in diagnostics if d["severity"] == "error"]
    revealed = [d["message"] for d in diagnostics if d["message"].startswith("Type of")]
    assert errors == []
    assert revealed == ['Type of "get_loss("dice")" is "DiceLoss"']


@pytest.mark.slow
def test_mypy_sees_the_editable_install(venv: Path, user_project: Path) -> None:
    options = ["--no-incremental", "--follow-imports", "silent"]
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "mypy", *options, "user_code.py"],
        capture_output=True,
        text=True,
        cwd=user_project,
        env=_clean_env(),
        timeout=600,
    )
    assert "error" not in result.stdout, result.stdout
    assert 'Revealed type is "autotimm.losses.segmentation.DiceLoss"' in result.stdout

"""The documentation site cannot show code that does not run, or pages that have drifted.

- Every ```python block of every page under ``docs/`` runs: a page's blocks in order, in one
  namespace, in a temporary working directory. The blocks are never edited; they are shrunk
  to CPU- and test-sized runs only from the outside (see ``docs/contributing.md``):

  - ``PL_TRAINER_FAST_DEV_RUN=1``: Lightning's ``Trainer`` (and ``AutoTrainer``) read
    ``PL_TRAINER_*`` environment variables as defaults, so every ``fit`` runs one training
    and one validation batch, with no logging or checkpoints (``PL_TRAINER_ENABLE_PROGRESS_BAR``
    and ``PL_TRAINER_ENABLE_MODEL_SUMMARY`` are ``0`` too, which keeps stdout clean);
  - ``timm.create_model`` is wrapped to force ``pretrained=False`` and the Hugging Face Hub is
    put in offline mode, so examples that keep the default ``pretrained=True`` build randomly
    initialised backbones without a network;
  - a page may ask for a synthetic dataset at ``./data`` with a comment
    ``<!-- docs-test: data=segmentation -->`` (or ``classification``, ``detection``,
    ``instance_segmentation``), written by ``autotimm.data.synthetic``;
  - :data:`PLACEHOLDERS` defines the few names that blocks use for "your own" things.

- A ```text block right after ``<!-- docs-test: output -->`` must equal what the preceding
  ```python block printed (or, after a ```bash block of ``autotimm ...`` commands, what the
  CLI printed). That keeps pasted error messages and CLI tables real.
- The loss catalogue is regenerated from the registry and must match the committed page.
- ``mkdocs build --strict`` passes (when mkdocs is installed).

The loss registry is global: each page runs inside ``get_loss_registry().temporary()`` so
that the losses a page registers do not leak into other tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "site" not in p.relative_to(DOCS).parts)

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")
# markers count only on a line of their own (a page may quote them in prose or tables)
_DATA_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*data=(\w+)\s*-->\s*$", re.MULTILINE)
_OUTPUT_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*output\s*-->\s*$")


# --------------------------------------------------------------------------- placeholders
class MyLossClass(nn.Module):
    """Stands in for "your loss class" (``registry.register_loss(..., loss_class=MyLossClass)``).

    An L1 loss between prediction and target.
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target.float()).abs().mean()


PLACEHOLDERS: dict[str, Any] = {"MyLossClass": MyLossClass}
"""Names a page may use without defining them. Keep this short; each must be used somewhere."""


# --------------------------------------------------------------------------- parsing
@dataclasses.dataclass
class Block:
    """One fenced code block of a page."""

    language: str
    code: str
    line: int  # 1-based line of the first code line in the page
    check_output: bool  # preceded by <!-- docs-test: output -->


def parse_blocks(text: str) -> list[Block]:
    """Fenced code blocks in page order, dedented by their fence's indentation."""
    lines = text.splitlines()
    blocks: list[Block] = []
    index = 0
    pending_output = False
    while index < len(lines):
        line = lines[index]
        if _OUTPUT_MARKER.match(line):
            pending_output = True
        match = _FENCE.match(line)
        if match is None:
            index += 1
            continue
        indent, fence = match.group("indent"), match.group("fence")
        info = match.group("info").strip()
        language = re.split(r"[\s{]", info.lstrip("{ ."), maxsplit=1)[0] if info else ""
        body: list[str] = []
        index += 1
        start = index + 1
        while index < len(lines):
            closing = lines[index]
            if closing.strip() == fence[0] * len(closing.strip()) and closing.strip().startswith(
                fence
            ):
                break
            body.append(closing[len(indent) :] if closing.startswith(indent) else closing.lstrip())
            index += 1
        index += 1
        blocks.append(Block(language, "\n".join(body) + "\n", start, pending_output))
        pending_output = False
    return blocks


def test_parse_blocks_reads_languages_indentation_and_output_markers() -> None:
    text = "\n".join(
        [
            "text",
            "```python",
            "x = 1",
            "```",
            "<!-- docs-test: output -->",
            "```text",
            "1",
            "```",
            "!!! note",
            "    ```python title='t'",
            "    if x:",
            "        y = 2",
            "    ```",
        ]
    )
    blocks = parse_blocks(text)
    assert [(b.language, b.line, b.check_output) for b in blocks] == [
        ("python", 3, False),
        ("text", 7, True),
        ("python", 11, False),
    ]
    assert blocks[2].code == "if x:\n    y = 2\n"


# --------------------------------------------------------------------------- environment
_DATASETS: dict[str, Callable[[Path], Any]] = {}


def _register_datasets() -> None:
    from autotimm.data import synthetic

    _DATASETS.update(
        classification=lambda root: synthetic.make_classification_dataset(
            root, num_classes=3, images_per_class=4, image_size=32
        ),
        segmentation=lambda root: synthetic.make_segmentation_dataset(
            root, num_classes=3, num_train=4, num_val=2, image_size=32
        ),
        detection=lambda root: synthetic.make_detection_dataset(
            root, num_classes=2, num_train=4, num_val=2, image_size=64
        ),
        instance_segmentation=lambda root: synthetic.make_instance_segmentation_dataset(
            root, num_classes=2, num_train=4, num_val=2, image_size=64
        ),
    )


@contextlib.contextmanager
def docs_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast-dev-run Lightning, offline random-init backbones, a fresh cwd and registry."""
    import timm
    from huggingface_hub import constants

    from autotimm.losses import get_loss_registry

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PL_TRAINER_FAST_DEV_RUN", "1")
    monkeypatch.setenv("PL_TRAINER_ENABLE_PROGRESS_BAR", "0")
    monkeypatch.setenv("PL_TRAINER_ENABLE_MODEL_SUMMARY", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    create_model = timm.create_model

    def random_init(*args: Any, **kwargs: Any) -> nn.Module:
        kwargs["pretrained"] = False
        return create_model(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", random_init)
    with get_loss_registry().temporary():
        yield


def _compile(block: Block, page: Path) -> Any:
    # pad with blank lines so that tracebacks show the line numbers of the page itself
    source = "\n" * (block.line - 1) + block.code
    return compile(source, str(page.relative_to(ROOT)), "exec")


def _run_cli(command_block: Block) -> str:
    from autotimm.cli import main

    out = io.StringIO()
    for command in command_block.code.splitlines():
        command = command.strip()
        if not command or command.startswith("#"):
            continue
        argv = shlex.split(command)
        assert argv[0] == "autotimm", f"only autotimm commands can be output-checked: {command}"
        with contextlib.redirect_stdout(out):
            code = main(argv[1:])
        assert code == 0, f"{command} exited with {code}"
    return out.getvalue()


def run_page(page: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run every python block of ``page``; check the marked outputs. Return the block count."""
    text = page.read_text(encoding="utf-8")
    blocks = parse_blocks(text)
    marker = _DATA_MARKER.search(text)
    ran = 0
    with docs_environment(workdir, monkeypatch):
        if marker:
            if not _DATASETS:
                _register_datasets()
            kind = marker.group(1)
            assert kind in _DATASETS, f"{page.name}: unknown data={kind}; use one of {_DATASETS}"
            _DATASETS[kind](workdir / "data")
        namespace: dict[str, Any] = {"__name__": "__main__", **PLACEHOLDERS}
        previous_output: str | None = None
        previous: Block | None = None
        for block in blocks:
            if block.check_output:
                assert previous is not None, f"{page.name}:{block.line}: output with no code"
                if previous.language == "bash":
                    previous_output = _run_cli(previous)
                assert previous_output is not None, (
                    f"{page.name}:{block.line}: the output marker follows a {previous.language} "
                    "block; only python and autotimm-command blocks have checked output"
                )
                expected = [line.rstrip() for line in block.code.rstrip("\n").splitlines()]
                actual = [line.rstrip() for line in previous_output.rstrip("\n").splitlines()]
                assert actual == expected, (
                    f"{page.relative_to(ROOT)}:{block.line}: the output shown differs from what "
                    "the code prints:\n" + "\n".join(actual)
                )
            if block.language in ("python", "py"):
                out = io.StringIO()
                started = time.perf_counter()
                try:
                    with contextlib.redirect_stdout(out):
                        exec(_compile(block, page), namespace)
                except Exception:
                    pytest.fail(
                        f"{page.relative_to(ROOT)}: the python block at line {block.line} "
                        f"failed:\n{traceback.format_exc()}\nstdout:\n{out.getvalue()}",
                        pytrace=False,
                    )
                previous_output = out.getvalue()
                ran += 1
                if os.environ.get("DOCS_TEST_TIMING"):
                    elapsed = time.perf_counter() - started
                    print(f"{page.name}:{block.line}: {elapsed:.1f} s", file=sys.__stderr__)
            elif block.language != "text":
                previous_output = None
            if block.language != "text":
                previous = block
    return ran


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(DOCS)) for p in PAGES])
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_page(page, tmp_path, monkeypatch)


def test_every_placeholder_is_used_by_some_page() -> None:
    text = "\n".join(
        b.code for page in PAGES for b in parse_blocks(page.read_text(encoding="utf-8"))
    )
    for name in PLACEHOLDERS:
        assert re.search(rf"\b{name}\b", text), f"placeholder {name} is no longer used: remove it"


# --------------------------------------------------------------------------- generated pages
def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_catalogue_page_is_generated_from_the_registry() -> None:
    catalogue = _load_script("docs_catalogue")
    assert catalogue.missing_formulas(catalogue.builtin_entries()) == [], (
        "every built-in loss needs a formula in scripts/docs_catalogue.py"
    )
    assert catalogue.render() == catalogue.TARGET.read_text(encoding="utf-8"), (
        "docs/losses/catalogue.md is out of date: run python scripts/docs_catalogue.py"
    )


def test_catalogue_lists_every_builtin_loss_and_alias() -> None:
    from autotimm.losses import get_loss_registry

    text = (DOCS / "losses" / "catalogue.md").read_text(encoding="utf-8")
    for entry in get_loss_registry():
        if entry.loss_class.__module__.startswith("autotimm."):
            assert f"### `{entry.name}`" in text
            assert all(f"`{alias}`" in text for alias in entry.aliases)


def test_every_image_referenced_by_a_page_exists() -> None:
    for page in PAGES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).resolve().is_file(), f"{page.name}: missing {target}"


@pytest.mark.skipif(shutil.which("mkdocs") is None, reason="mkdocs comes with the docs extra")
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert result.returncode == 0, result.stderr[-5000:]


# --------------------------------------------------------------------------- figures
@pytest.fixture(scope="module")
def figures() -> ModuleType:
    """``scripts/docs_figures.py`` (its ``compute_*`` functions need only torch)."""
    name = "docs_figures"
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


def test_figure_focal_curves_support_the_page(figures: ModuleType) -> None:
    """Focal is below CE everywhere and its gradient is smaller for well classified examples
    and larger for badly misclassified ones (gamma >= 1), as comparison.md says."""
    curves = {c.label: c for c in figures.compute_focal_curves(points=99)}
    ce = curves.pop("cross entropy")
    for label, focal in curves.items():
        assert all(f <= c + 1e-12 for f, c in zip(focal.loss, ce.loss)), label
        gamma = float(label.split("=")[1])
        for p, grad, ce_grad in zip(focal.x, focal.grad, ce.grad):
            if p > 0.5:
                assert grad < ce_grad, (label, p)
            if gamma >= 1 and p < 0.1:
                assert grad > ce_grad, (label, p)


def test_figure_region_curves_support_the_page(figures: ModuleType) -> None:
    confident = figures.compute_region_curves(confidence=0.99)
    dice, tversky = confident.losses["dice"], confident.losses["tversky (alpha=0.3, beta=0.7)"]
    for index, miou in enumerate(confident.miou):
        for name in ("jaccard", "lovasz"):  # on 1 - mIoU for confident predictions
            assert abs(confident.losses[name][index] - (1 - miou)) < 0.03, (name, miou)
        assert abs(dice[index] - tversky[index]) < 0.005  # hard FP == FN for a shift
    uncertain = figures.compute_region_curves(confidence=0.7)
    assert all(
        uncertain.losses[name][0] > 0.2
        for name in ("dice", "jaccard", "tversky (alpha=0.3, beta=0.7)")
    )
    under_over = figures.compute_under_over_curves()
    for name in ("dice", "jaccard"):
        assert all(abs(u - o) < 0.02 for u, o in zip(under_over.under[name], under_over.over[name]))
    tversky_name = "tversky (alpha=0.3, beta=0.7)"
    under, over = under_over.under[tversky_name], under_over.over[tversky_name]
    assert all(u > o for u, o in zip(under[1:], over[1:]))


def test_figure_tversky_tradeoff_supports_the_page(figures: ModuleType) -> None:
    result = figures.compute_tversky_tradeoff(betas=(0.2, 0.8), steps=100)
    assert result.recall[1] > result.recall[0] + 0.1
    assert result.precision[1] < result.precision[0] - 0.05

"""The documentation site cannot show code that does not run, or pages that have drifted.

- Every ```python block of every page under ``docs/`` runs, through the one markdown runner
  (:mod:`helpers.markdown`, which also runs the README and the seed page): a page's blocks in
  order, in one namespace, in a temporary working directory, shrunk only from the outside.
- A ```text block right after ``<!-- docs-test: output -->`` must equal what the preceding
  block printed. That keeps pasted error messages and CLI tables real.
- The loss catalogue, and the models page's table of which losses fit each model argument, are
  regenerated from the registry and must match the committed pages.
- ``mkdocs build --strict`` passes (when mkdocs is installed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import ROOT
from helpers.markdown import PLACEHOLDERS, parse_blocks, run_page

DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "site" not in p.relative_to(DOCS).parts)


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


def test_loss_fit_table_is_generated_from_the_models_and_the_registry() -> None:
    fit = _load_script("docs_loss_fit")
    page = fit.TARGET.read_text(encoding="utf-8")
    assert fit.render(page) == page, (
        "docs/models-and-data.md is out of date: run python scripts/docs_loss_fit.py"
    )
    # every model and loss argument has its row
    import autotimm

    for name in ("ImageClassifier", "SemanticSegmentor", "ObjectDetector", "InstanceSegmentor"):
        for argument in getattr(autotimm, name).loss_slots({"num_classes": 2}):
            if name != "InstanceSegmentor" or argument == "mask_loss_fn":
                assert f"| `{name}`" in page and f"| `{argument}` |" in page, (name, argument)


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


def test_figure_segmentation_modes_support_the_page(figures: ModuleType) -> None:
    """Binary dice is two-class dice without the background; with it the loss is about 40 %
    lower at every overlap; focal Tversky is above the plain loss for gamma < 1 and below it
    for gamma > 1; every curve falls as the overlap grows."""
    modes = figures.compute_mode_curves()
    binary = modes.losses['dice (mode="binary")']
    without = modes.losses["dice (two classes, include_background=False)"]
    with_background = modes.losses["dice (two classes, background included)"]
    assert all(abs(b - w) < 1e-6 for b, w in zip(binary, without))
    assert all(0.5 < w / b < 0.7 for b, w in zip(binary, with_background))
    focal = figures.compute_focal_tversky_curves().losses
    for low, plain, high in zip(focal["gamma=0.5"], focal["gamma=1"], focal["gamma=2"]):
        assert low > plain > high
    iou = modes.iou
    assert iou == sorted(iou, reverse=True)  # the shift grows: the overlap falls
    for values in (*modes.losses.values(), *focal.values()):
        assert values == sorted(values)

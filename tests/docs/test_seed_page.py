"""The seed page's examples run: through the project's own docs page always, and as written when
the seed page itself is beside the clone.

The seed page (``../shared/spec/loss-registry-api.md``) is the documentation page the project
was built from. It exists only beside this repository for developers and CI, so a plain clone
tests the same examples through ``docs/losses/registry-api.md`` (the seed page corrected to the
code, run by ``tests/docs/test_docs.py`` with the other pages). When the seed page is present,
every one of its ```python blocks additionally runs as written, through the same markdown runner
(:mod:`helpers.markdown`), each in a fresh namespace inside ``get_loss_registry().temporary()``.
Without it those tests skip with a reason. The only help the blocks get:

- the runner's environment: ``pretrained`` is forced to ``False``, the Hub is offline and
  ``PL_TRAINER_FAST_DEV_RUN=1`` makes every ``AutoTrainer`` run one train and one val batch;
- the current directory holds a synthetic segmentation dataset at ``./data`` (Example 1 trains
  on ``SegmentationDataModule(data_dir="./data", ...)``);
- :data:`FIXTURE_NAMES`: names that some blocks use without defining them, because the page
  defines them in an earlier block or leaves them to the reader. Keep this list short; a
  test checks that every name in it is still used by the page.
"""

from __future__ import annotations

import ast
import builtins
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import ROOT, SPEC_PAGE
from helpers.markdown import Block, page_environment, parse_blocks, run_blocks
from torch import nn

DOCS_PAGE = ROOT / "docs" / "losses" / "registry-api.md"
"""The project's own copy of the seed page, corrected to the code."""

needs_seed_page = pytest.mark.skipif(
    not SPEC_PAGE.is_file(),
    reason=f"the seed page is not beside this clone ({SPEC_PAGE}); its examples are tested "
    "through docs/losses/registry-api.md",
)


class MyLossClass(nn.Module):
    """Stands in for "your loss class" in the ``register_loss`` example."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (input - target).abs().mean()


def _fixture_names() -> dict[str, Any]:
    from autotimm import SemanticSegmentor
    from autotimm.losses import get_loss_registry

    return {
        # imported by an earlier block ("get_loss_registry"); the LossRegistry method
        # examples use it without importing it again
        "get_loss_registry": get_loss_registry,
        # imported by earlier blocks; the Migration Guide's old/new-way blocks use it bare
        "SemanticSegmentor": SemanticSegmentor,
        # the reader's own loss class in the register_loss example
        "MyLossClass": MyLossClass,
        # the return value left to the reader in the FocalTverskyLoss.forward stub
        "loss_value": torch.tensor(0.0),
    }


FIXTURE_NAMES = ("get_loss_registry", "SemanticSegmentor", "MyLossClass", "loss_value")


def _python_blocks(page: Path) -> list[Block]:
    if not page.is_file():
        return []
    return [b for b in parse_blocks(page.read_text(encoding="utf-8")) if b.language == "python"]


BLOCKS = _python_blocks(SPEC_PAGE)


def test_docs_page_has_the_seed_page_examples() -> None:
    """Every section of examples the seed page has, the docs page has, and it runs them."""
    text = DOCS_PAGE.read_text(encoding="utf-8")
    assert len(_python_blocks(DOCS_PAGE)) >= 15
    for model in ("ImageClassifier", "SemanticSegmentor", "ObjectDetector", "InstanceSegmentor"):
        assert model in text
    for api in (
        "list_available_losses",
        "get_loss_registry",
        "register_custom_loss",
        "get_loss_info",
        "has_loss",
        "list_losses",
        "register_loss",
        "AutoTrainer",
    ):
        assert api in text, api


@needs_seed_page
def test_seed_page_is_found_and_has_the_examples() -> None:
    text = SPEC_PAGE.read_text(encoding="utf-8")
    assert len(BLOCKS) >= 15, f"expected the seed page's examples, found {len(BLOCKS)} blocks"
    for model in ("ImageClassifier", "SemanticSegmentor", "ObjectDetector", "InstanceSegmentor"):
        assert model in text


def _undefined_names(code: str) -> set[str]:
    """Names a block reads but neither defines, imports nor gets from builtins."""
    tree = ast.parse(code)
    loaded, defined = set(), set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
    return loaded - defined


@needs_seed_page
def test_fixture_names_are_exactly_what_the_page_leaves_undefined() -> None:
    """The fixture namespace holds the names some block uses without defining, no more."""
    undefined = {name for block in BLOCKS for name in _undefined_names(block.code)}
    assert undefined == set(FIXTURE_NAMES)
    assert set(_fixture_names()) == set(FIXTURE_NAMES)


def _param(block: Block) -> Any:
    trains = "trainer.fit(" in block.code  # a real (if one-batch) training run on CPU
    marks = [pytest.mark.slow] if trains else []
    return pytest.param(block, id=f"line{block.line}-{block.heading}", marks=marks)


@needs_seed_page
@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_seed_page_block_runs_as_written(
    block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from autotimm.data.synthetic import make_segmentation_dataset

    with page_environment(tmp_path, monkeypatch), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # one image per split: Example 1 trains three resnet50 DeepLabV3+ models at 512 px
        make_segmentation_dataset(tmp_path / "data", num_classes=19, num_train=1, num_val=1)
        namespace = run_blocks([block], SPEC_PAGE, _fixture_names())
    messages = [str(w.message) for w in caught]
    if "loss_type=" in block.code:  # the deprecated argument still works, and says so
        assert any("deprecated" in m for m in messages)
    if "balanced_ce" in block.code:  # required class_weights filled in with a neutral default
        assert any("requires 'class_weights'" in m for m in messages)
    trainer = namespace.get("trainer")
    if trainer is not None:  # the training loop really ran (one batch, fast_dev_run)
        assert trainer.state.finished and trainer.global_step == 1
    model = namespace.get("model")
    if model is not None:  # the last model built by the block is a working autotimm model
        assert type(model).__module__.startswith("autotimm.models")

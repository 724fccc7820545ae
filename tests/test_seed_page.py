"""Every ```python block of the seed page (``shared/spec/loss-registry-api.md``) runs as written.

The page text is never edited. Each block runs in a fresh namespace, inside
``get_loss_registry().temporary()`` so that registrations of one block do not leak into the
next. The only help the blocks get:

- ``pretrained`` is forced to ``False`` (``timm.create_model`` is wrapped and
  ``HF_HUB_OFFLINE=1``): the examples use the default ``pretrained=True`` and there is no
  network here.
- The current directory is a temporary one holding a synthetic segmentation dataset at
  ``./data`` (Example 1 trains on ``SegmentationDataModule(data_dir="./data", ...)``), and
  ``PL_TRAINER_FAST_DEV_RUN=1`` makes every ``AutoTrainer`` run one train and one val batch
  (Lightning reads ``PL_TRAINER_*`` environment variables as Trainer defaults).
- :data:`FIXTURE_NAMES`: names that some blocks use without defining them, because the page
  defines them in an earlier block or leaves them to the reader. Keep this list short; a
  test checks that every name in it is still used by the page.

A block that cannot run fails its test; nothing is skipped.
"""

from __future__ import annotations

import ast
import builtins
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

SPEC_PAGE = Path(__file__).resolve().parents[1].parent / "shared/spec/loss-registry-api.md"
"""The seed page. In CI a copy of ``shared/`` sits beside the clone, as it does here."""


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


def _read_page() -> str:
    if not SPEC_PAGE.is_file():
        raise FileNotFoundError(f"seed page not found at {SPEC_PAGE}")
    return SPEC_PAGE.read_text(encoding="utf-8")


def _blocks() -> list[tuple[str, str]]:
    """``(id, code)`` of every python block, the id built from the nearest headings."""
    text = _read_page() if SPEC_PAGE.is_file() else ""
    blocks: list[tuple[str, str]] = []
    headings: dict[int, str] = {}
    position = 0
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for heading in re.finditer(r"^(#{2,4}) (.+)$", text[position : match.start()], re.M):
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = re.sub(r"\W+", "_", heading.group(2)).strip("_").lower()
        position = match.end()
        name = "/".join(headings[k] for k in sorted(headings))
        blocks.append((f"{len(blocks):02d}-{name}", match.group(1)))
    return blocks


BLOCKS = _blocks()


def test_page_is_found_and_has_the_examples() -> None:
    text = _read_page()
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


def test_fixture_names_are_exactly_what_the_page_leaves_undefined() -> None:
    """The fixture namespace holds the names some block uses without defining, no more."""
    undefined = {name for _, code in BLOCKS for name in _undefined_names(code)}
    assert undefined == set(FIXTURE_NAMES)
    assert set(_fixture_names()) == set(FIXTURE_NAMES)


@pytest.fixture
def seed_page_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Offline, pretrained=False, tiny training runs, ./data holding a segmentation dataset."""
    import timm

    from autotimm.data.synthetic import make_segmentation_dataset

    create_model = timm.create_model

    def create_without_weights(*args: Any, **kwargs: Any) -> nn.Module:
        kwargs["pretrained"] = False
        return create_model(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_without_weights)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PL_TRAINER_FAST_DEV_RUN", "1")
    monkeypatch.setenv("PL_TRAINER_ENABLE_MODEL_SUMMARY", "0")
    monkeypatch.chdir(tmp_path)
    # one image per split: Example 1 trains three resnet50 DeepLabV3+ models at 512 px
    make_segmentation_dataset(tmp_path / "data", num_classes=19, num_train=1, num_val=1)
    return tmp_path


def _param(block_id: str, code: str) -> Any:
    trains = "trainer.fit(" in code  # a real (if one-batch) training run on CPU
    return pytest.param(code, id=block_id, marks=[pytest.mark.slow] if trains else [])


@pytest.mark.parametrize("code", [_param(i, code) for i, code in BLOCKS])
def test_block_runs_as_written(code: str, seed_page_env: Path) -> None:
    from autotimm.losses import get_loss_registry

    index = next(i for i, (_, c) in enumerate(BLOCKS) if c == code)
    namespace: dict[str, Any] = {"__name__": f"seed_page_block_{index}", **_fixture_names()}
    with get_loss_registry().temporary(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, f"{SPEC_PAGE.name}[block {index}]", "exec"), namespace)
    messages = [str(w.message) for w in caught]
    if "loss_type=" in code:  # the deprecated argument still works, and says so
        assert any("deprecated" in m for m in messages)
    if "balanced_ce" in code:  # required class_weights filled in with a neutral default
        assert any("requires 'class_weights'" in m for m in messages)
    trainer = namespace.get("trainer")
    if trainer is not None:  # the training loop really ran (one batch, fast_dev_run)
        assert trainer.state.finished and trainer.global_step == 1
    model = namespace.get("model")
    if model is not None:  # the last model built by the block is a working autotimm model
        assert type(model).__module__.startswith("autotimm.models")

"""One runner for every markdown page whose code must run: the docs, the README, the seed page.

A page's fenced code blocks are parsed (:func:`parse_blocks`) and its ``python`` blocks run in
order, by default in one namespace, in a temporary working directory, inside
:func:`page_environment`. The blocks are never edited; they are shrunk to CPU- and test-sized
runs only from the outside (see ``docs/contributing.md``):

- ``PL_TRAINER_FAST_DEV_RUN=1``: Lightning's ``Trainer`` (and ``AutoTrainer``) read
  ``PL_TRAINER_*`` environment variables as defaults, so every ``fit`` runs one training and one
  validation batch, with no logging or checkpoints (progress bar and model summary are off too,
  which keeps stdout clean);
- ``timm.create_model`` is wrapped to force ``pretrained=False`` and the Hugging Face Hub is put
  in offline mode, so examples that keep the default ``pretrained=True`` build randomly
  initialised backbones without a network;
- a page may ask for a synthetic dataset at ``./data`` with a comment
  ``<!-- docs-test: data=segmentation -->`` (or ``classification``, ``detection``,
  ``instance_segmentation``), written by ``autotimm.data.synthetic``;
- placeholder names stand for the reader's own things ("your loss class").

A ```text block right after ``<!-- docs-test: output -->`` must equal what the preceding
```python block printed (or, after a ```bash block of ``autotimm ...`` commands, what the CLI
printed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import re
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from helpers import ROOT

__all__ = [
    "PLACEHOLDERS",
    "Block",
    "make_dataset",
    "page_environment",
    "parse_blocks",
    "run_blocks",
    "run_page",
]

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")
# markers count only on a line of their own (a page may quote them in prose or tables)
DATA_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*data=(\w+)\s*-->\s*$", re.MULTILINE)
_OUTPUT_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*output\s*-->\s*$")


class MyLossClass(nn.Module):
    """Stands in for "your loss class" (``registry.register_loss(..., loss_class=MyLossClass)``).

    An L1 loss between prediction and target.
    """

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (prediction - target.float()).abs().mean()


PLACEHOLDERS: dict[str, Any] = {"MyLossClass": MyLossClass}
"""Names a docs page may use without defining them. Keep this short; each must be used."""


# --------------------------------------------------------------------------- parsing
@dataclasses.dataclass
class Block:
    """One fenced code block of a page."""

    language: str
    code: str
    line: int  # 1-based line of the first code line in the page
    check_output: bool  # preceded by <!-- docs-test: output -->
    heading: str = ""  # the nearest headings above it, e.g. "examples/example_1"


def parse_blocks(text: str) -> list[Block]:
    """Fenced code blocks in page order, dedented by their fence's indentation."""
    lines = text.splitlines()
    blocks: list[Block] = []
    headings: dict[int, str] = {}
    index = 0
    pending_output = False
    while index < len(lines):
        line = lines[index]
        heading = re.match(r"^(#{2,4}) (.+)$", line)
        if heading:
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level}
            headings[level] = re.sub(r"\W+", "_", heading.group(2)).strip("_").lower()
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
        where = "/".join(headings[k] for k in sorted(headings))
        blocks.append(Block(language, "\n".join(body) + "\n", start, pending_output, where))
        pending_output = False
    return blocks


# --------------------------------------------------------------------------- environment
def make_dataset(kind: str, root: Path, **overrides: Any) -> None:
    """Write a small synthetic dataset of ``kind`` to ``root`` (real files, real formats)."""
    from autotimm.data import synthetic

    makers: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
        "classification": (
            synthetic.make_classification_dataset,
            {"num_classes": 3, "images_per_class": 4, "image_size": 32},
        ),
        "segmentation": (
            synthetic.make_segmentation_dataset,
            {"num_classes": 3, "num_train": 4, "num_val": 2, "image_size": 32},
        ),
        "detection": (
            synthetic.make_detection_dataset,
            {"num_classes": 2, "num_train": 4, "num_val": 2, "image_size": 64},
        ),
        "instance_segmentation": (
            synthetic.make_instance_segmentation_dataset,
            {"num_classes": 2, "num_train": 4, "num_val": 2, "image_size": 64},
        ),
    }
    if kind not in makers:
        raise ValueError(f"unknown data={kind}; use one of {sorted(makers)}")
    make, defaults = makers[kind]
    make(root, **{**defaults, **overrides})


@contextlib.contextmanager
def page_environment(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fast-dev-run Lightning, offline random-init backbones, a fresh cwd and registry."""
    import timm
    from huggingface_hub import constants

    from autotimm.losses import get_loss_registry

    monkeypatch.chdir(workdir)
    monkeypatch.setenv("PL_TRAINER_FAST_DEV_RUN", "1")
    monkeypatch.setenv("PL_TRAINER_ENABLE_PROGRESS_BAR", "0")
    monkeypatch.setenv("PL_TRAINER_ENABLE_MODEL_SUMMARY", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("COLUMNS", "100")  # CLI tables wrap to the terminal: shown at 100 columns
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    create_model = timm.create_model

    def random_init(*args: Any, **kwargs: Any) -> nn.Module:
        kwargs["pretrained"] = False
        return create_model(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", random_init)
    with get_loss_registry().temporary():
        yield


# --------------------------------------------------------------------------- running
def _display(page: Path) -> str:
    try:
        return str(page.relative_to(ROOT))
    except ValueError:
        return str(page)


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


def run_blocks(
    blocks: list[Block], page: Path, namespace: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run the python blocks in order in one namespace; check marked outputs. Return it.

    Call inside :func:`page_environment`. A failing block fails the test with the page's own
    line numbers in the traceback.
    """
    name = _display(page)
    namespace = {"__name__": "__main__", **(namespace or {})}
    previous_output: str | None = None
    previous: Block | None = None
    updates: list[tuple[Block, list[str]]] = []
    for block in blocks:
        if block.check_output:
            assert previous is not None, f"{name}:{block.line}: output with no code"
            if previous.language == "bash":
                previous_output = _run_cli(previous)
            assert previous_output is not None, (
                f"{name}:{block.line}: the output marker follows a {previous.language} "
                "block; only python and autotimm-command blocks have checked output"
            )
            expected = [line.rstrip() for line in block.code.rstrip("\n").splitlines()]
            actual = [line.rstrip() for line in previous_output.rstrip("\n").splitlines()]
            if actual != expected and os.environ.get("DOCS_TEST_UPDATE"):
                updates.append((block, actual))
                continue
            assert actual == expected, (
                f"{name}:{block.line}: the output shown differs from what the code prints:\n"
                + "\n".join(actual)
            )
        if block.language in ("python", "py"):
            out = io.StringIO()
            started = time.perf_counter()
            # pad with blank lines so that tracebacks show the line numbers of the page itself
            code = compile("\n" * (block.line - 1) + block.code, name, "exec")
            try:
                with contextlib.redirect_stdout(out):
                    exec(code, namespace)
            except Exception:
                pytest.fail(
                    f"{name}: the python block at line {block.line} failed:\n"
                    f"{traceback.format_exc()}\nstdout:\n{out.getvalue()}",
                    pytrace=False,
                )
            previous_output = out.getvalue()
            if os.environ.get("DOCS_TEST_TIMING"):
                elapsed = time.perf_counter() - started
                print(f"{name}:{block.line}: {elapsed:.1f} s", file=sys.__stderr__)
        elif block.language != "text":
            previous_output = None
        if block.language != "text":
            previous = block
    if updates:
        _rewrite_outputs(page, updates)
    return namespace


def _rewrite_outputs(page: Path, updates: list[tuple[Block, list[str]]]) -> None:
    """``DOCS_TEST_UPDATE=1``: write what the code printed into the page's checked outputs.

    For a contributor who changed a message on purpose; review the diff before committing.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    for block, actual in sorted(updates, key=lambda update: -update[0].line):
        start = block.line - 1
        old = len(block.code.rstrip("\n").splitlines()) if block.code.strip() else 0
        indent = lines[start - 1][: len(lines[start - 1]) - len(lines[start - 1].lstrip())]
        lines[start : start + old] = [indent + line if line else line for line in actual]
    page.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{_display(page)}: rewrote {len(updates)} checked output(s)", file=sys.__stderr__)


def run_page(
    page: Path,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    placeholders: Mapping[str, Any] = PLACEHOLDERS,
) -> int:
    """Run every python block of ``page`` in one namespace; return how many ran."""
    text = page.read_text(encoding="utf-8")
    blocks = parse_blocks(text)
    marker = DATA_MARKER.search(text)
    with page_environment(workdir, monkeypatch):
        if marker:
            make_dataset(marker.group(1), workdir / "data")
        run_blocks(blocks, page, dict(placeholders))
    return sum(block.language in ("python", "py") for block in blocks)

"""Griffe extension for the API reference: read autotimm's docstrings the way they are written.

Loaded by mkdocstrings (``extensions: [scripts/docs_griffe.py]`` in ``mkdocs.yml``); it only
changes how docstrings are *rendered*, never the package:

- a section titled ``Example:`` is read as Google style's ``Examples:``, so its ``>>>`` lines
  render as highlighted code instead of an admonition full of nested quotes;
- an ``Args:`` item documenting several parameters at once (``lr, weight_decay: AdamW
  settings.``) becomes one item per parameter with the same description;
- Sphinx roles (``:class:`~autotimm.losses.LossSpec```) become inline code (``LossSpec``);
- an ``Args:`` item that names no parameter (``Everything else: as for ...``) ends the section
  and becomes a paragraph.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")
_SECTION = re.compile(r"^(\s*)(Args|Arguments|Parameters):\s*$")
_COMBINED = re.compile(r"^(\s+)(\w+(?:,\s*\w+)+):\s*(.*)$")
_ROLE = re.compile(r":(?:class|func|mod|data|meth|attr|exc|obj):`(~?)([\w.]+)`")
_PROSE_ITEM = re.compile(r"^(\s+)([A-Za-z]+(?: [A-Za-z]+)+):\s*(.*)$")


def rewrite(text: str) -> str:
    """The docstring ``text`` with the two rewrites above applied.

    >>> print(rewrite("Args:\\n    a, b: Shared.\\n        More.\\n    Everything else: as for X."))
    Args:
        a: Shared.
            More.
        b: Shared.
            More.
    *Everything else*: as for X.
    >>> rewrite("Example:\\n    text").splitlines()[0]
    'Examples:'
    >>> rewrite("See :class:`~autotimm.losses.LossSpec` and :func:`torch.sum`.")
    'See `LossSpec` and `torch.sum`.'
    """
    text = _ROLE.sub(_role_to_code, text)
    lines = text.splitlines()
    out: list[str] = []
    in_args = False
    section_indent = ""
    index = 0
    while index < len(lines):
        line = lines[index]
        example = _EXAMPLE.match(line)
        if example:
            out.append(f"{example.group(1)}Examples:")
            in_args = False
            index += 1
            continue
        section = _SECTION.match(line)
        if section:
            in_args = True
            section_indent = section.group(1)
            out.append(line)
            index += 1
            continue
        prose = _PROSE_ITEM.match(line) if in_args else None
        if prose:
            out.append(f"{section_indent}*{prose.group(2)}*: {prose.group(3)}")
            in_args = False
            index += 1
            continue
        combined = _COMBINED.match(line) if in_args else None
        if combined is None:
            out.append(line)
            index += 1
            continue
        indent, names, description = combined.groups()
        continuation = []
        index += 1
        while index < len(lines) and (
            not lines[index].strip() or len(lines[index]) - len(lines[index].lstrip()) > len(indent)
        ):
            if not lines[index].strip():
                break
            continuation.append(lines[index])
            index += 1
        for name in (n.strip() for n in names.split(",")):
            out.append(f"{indent}{name}: {description}")
            out.extend(continuation)
    return "\n".join(out)


def _role_to_code(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class AutotimmDocstrings(griffe.Extension):
    """Apply :func:`rewrite` to every docstring as objects are loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rewrite(obj.docstring.value)

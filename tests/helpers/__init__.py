"""Shared constants of the test suite (importable because ``pythonpath = ["tests"]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
"""The repository root."""

BACKBONE = "resnet10t"
"""The tiny timm backbone every model test builds (``pretrained=False``)."""

SPEC_PAGE = ROOT.parent / "shared" / "spec" / "loss-registry-api.md"
"""The seed page the project is built from. It sits beside the clone only for developers and CI;
tests that read it skip with a reason when it is absent."""

REQUIRED_EXAMPLES: dict[str, Any] = {
    "terms": [
        {"name": "cross_entropy"},
        {"name": "dice", "weight": 2.0, "params": {"smooth": 0.5}},
    ],
}
"""A valid value for each required parameter of a built-in loss (by parameter name), for tests
that build every built-in: ``weighted_sum`` requires its ``terms``."""

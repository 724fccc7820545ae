"""Fixtures shared by every test: the global loss registry is restored after each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from autotimm.losses import LossRegistry, get_loss_registry


@pytest.fixture(autouse=True)
def _restore_loss_registry() -> Iterator[None]:
    """Whatever a test registers or removes is undone when it ends."""
    with get_loss_registry().temporary():
        yield


@pytest.fixture
def registry() -> LossRegistry:
    """The global registry (restored after the test by the autouse fixture)."""
    return get_loss_registry()


@pytest.fixture
def backbone() -> str:
    """The tiny backbone name model tests use."""
    from helpers import BACKBONE

    return BACKBONE

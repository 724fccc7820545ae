"""Backbones: ``timm.create_model`` with clear errors for unknown names and missing weights.

With ``pretrained=True`` the Hugging Face Hub is probed first, so an offline machine fails in
seconds with a hint (``pretrained=False``) instead of retrying for a minute.
"""

from __future__ import annotations

import difflib
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import timm
from torch import nn

__all__ = ["create_backbone"]

_OFFLINE_HINT = (
    "Pass pretrained=False to train from randomly initialised weights, or make the weights "
    "available offline (e.g. download them once and set HF_HUB_OFFLINE=1 / HF_HOME)."
)


def _check_backbone_name(backbone: Any) -> str:
    if not isinstance(backbone, str) or not backbone:
        raise TypeError(f"backbone must be a timm model name (str); got {backbone!r}")
    if backbone.split(":", 1)[0] in ("hf-hub", "hf_hub", "local-dir"):
        return backbone
    if not timm.is_model(backbone):
        close = difflib.get_close_matches(backbone, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"backbone {backbone!r} is not a timm model name.{hint} "
            "See timm.list_models() for the available names."
        )
    return backbone


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connect within ``timeout`` seconds.

    DNS resolution cannot be given a timeout, so the probe runs in a daemon thread.
    """
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    name, _, port = host.partition(":")
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((name, int(port or 443)), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _offline_requested() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) set now or when the hub was imported."""
    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    if any(f is not None and f.strip().lower() in ("1", "true", "yes", "on") for f in flags):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False
    return bool(constants.HF_HUB_OFFLINE)


@contextmanager
def _offline_hub(offline: bool) -> Iterator[None]:
    """Put ``huggingface_hub`` in offline mode (cache only, no retries) for the duration."""
    if not offline:
        yield
        return
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _is_download_error(error: BaseException) -> bool:
    if isinstance(error, (OSError, ConnectionError, TimeoutError)):
        return True
    module = type(error).__module__ or ""
    return module.split(".", 1)[0] in ("huggingface_hub", "requests", "urllib3", "httpx", "httpx2")


def create_backbone(backbone: str, *, pretrained: bool, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with a clear error for unknown names and unavailable weights.

    With ``pretrained=True`` the Hub is probed first (3 s); when it is unreachable or
    ``HF_HUB_OFFLINE`` is set only cached weights are used, so an offline machine fails in
    seconds instead of retrying for a minute.

    Raises:
        ValueError: ``backbone`` is not a timm model name (with suggestions).
        RuntimeError: pretrained weights could not be fetched (suggests ``pretrained=False``).

    Example:
        >>> import torch
        >>> net = create_backbone("resnet18", pretrained=False, num_classes=3)
        >>> net(torch.zeros(2, 3, 64, 64)).shape
        torch.Size([2, 3])
    """
    _check_backbone_name(backbone)
    if not pretrained:
        return timm.create_model(backbone, pretrained=False, **kwargs)
    offline = _offline_requested() or not _hub_reachable()
    try:
        with _offline_hub(offline):
            return timm.create_model(backbone, pretrained=True, **kwargs)
    except Exception as error:
        if not _is_download_error(error):
            raise
        where = "the Hugging Face Hub is unreachable or offline mode is on" if offline else ""
        reason = str(error).rstrip(".")
        raise RuntimeError(
            f"Pretrained weights for backbone {backbone!r} could not be fetched"
            f"{' (' + where + ')' if where else ''}: {type(error).__name__}: {reason}. "
            f"{_OFFLINE_HINT}"
        ) from error

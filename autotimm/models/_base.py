"""What every autotimm model shares: backbones, argument checks, loss adaptation, optimisation.

Nothing here knows about a particular loss: models turn their ``loss_fn`` arguments into
modules with :func:`autotimm.losses.resolve.resolve_loss` and feed them through
:func:`adapt_to_loss`, which reads only the registry entry's ``expects`` / ``target``.
"""

from __future__ import annotations

import difflib
import math
import os
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import timm
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

from autotimm.losses.resolve import ResolvedLoss

__all__ = [
    "TaskModel",
    "WarmupCosine",
    "adapt_to_loss",
    "check_images",
    "check_num_classes",
    "create_backbone",
    "images_of",
    "plain_hparam",
    "warn_unused",
]

SchedulerName = Literal["cosine", "none"]

_OFFLINE_HINT = (
    "Pass pretrained=False to train from randomly initialised weights, or make the weights "
    "available offline (e.g. download them once and set HF_HUB_OFFLINE=1 / HF_HOME)."
)


# --------------------------------------------------------------------------- argument checks
def check_num_classes(num_classes: Any, argument: str = "num_classes") -> int:
    """Return ``num_classes`` as an int, or raise ``ValueError`` naming the argument.

    Example:
        >>> check_num_classes(3)
        3
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"{argument} must be an integer >= 1; got {num_classes!r}")
    return num_classes


def check_images(images: Any, in_chans: int, argument: str = "images") -> Tensor:
    """Check that ``images`` is a float tensor ``[B, in_chans, H, W]``; return it.

    Example:
        >>> check_images(torch.zeros(2, 3, 8, 8), 3).shape
        torch.Size([2, 3, 8, 8])
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{argument} must be a torch.Tensor [B, {in_chans}, H, W]; got {type(images).__name__}"
        )
    if images.ndim != 4 or images.shape[1] != in_chans:
        raise ValueError(
            f"{argument} must have shape [B, {in_chans}, H, W] (a batch of {in_chans}-channel "
            f"images); got {list(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"{argument} must be a floating point tensor (normalised images); got {images.dtype}"
        )
    return images


def images_of(batch: Any) -> Tensor:
    """The images of a batch: ``batch["image"]``, ``batch[0]`` or the batch itself.

    Example:
        >>> images_of({"image": torch.zeros(1, 3, 4, 4)}).shape
        torch.Size([1, 3, 4, 4])
    """
    if isinstance(batch, Mapping):
        return batch["image"]
    if isinstance(batch, (list, tuple)):
        return batch[0]
    return batch


# --------------------------------------------------------------------------- backbones
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


# --------------------------------------------------------------------------- loss adaptation
def adapt_to_loss(
    loss: ResolvedLoss,
    prediction: Tensor,
    target: Tensor,
    *,
    class_dim: int | None = 1,
    multi_label: bool = False,
    ignore_index: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Turn raw logits and the task's targets into what ``loss``'s registry entry expects.

    - prediction: ``logits`` as is; ``probabilities`` -> softmax over ``class_dim`` when the
      classes are mutually exclusive and the loss takes class indices, otherwise sigmoid;
      ``log_probabilities`` -> log-softmax / log-sigmoid likewise.
    - target: class indices become one-hot floats shaped like ``prediction`` when the loss
      takes ``dense`` targets (pixels equal to ``ignore_index`` get an all-zero vector);
      dense targets become floats; anything else passes through.

    ``class_dim=None`` means independent binary logits (e.g. masks); ``multi_label`` means the
    targets are already dense multi-hot vectors.

    Example:
        >>> from autotimm.losses.resolve import resolve_loss
        >>> bce = resolve_loss("bce")
        >>> p, t = adapt_to_loss(bce, torch.zeros(2, 3), torch.tensor([0, 2]))
        >>> p[0, 0].item(), t.tolist()
        (0.5, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    """
    softmax_dim = class_dim if not multi_label and loss.target == "class_indices" else None
    if loss.expects == "probabilities":
        prediction = (
            prediction.sigmoid() if softmax_dim is None else prediction.softmax(softmax_dim)
        )
    elif loss.expects == "log_probabilities":
        prediction = (
            F.logsigmoid(prediction) if softmax_dim is None else prediction.log_softmax(softmax_dim)
        )
    if loss.target == "dense":
        if not target.is_floating_point() and class_dim is not None and not multi_label:
            target = _one_hot(target, prediction.shape[class_dim], class_dim, ignore_index)
        target = target.to(prediction.dtype)
    return prediction, target


def _one_hot(target: Tensor, num_classes: int, class_dim: int, ignore_index: int | None) -> Tensor:
    valid = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        valid &= target != ignore_index
    one_hot = F.one_hot(target.clamp(0, num_classes - 1).long(), num_classes)
    one_hot = one_hot * valid.unsqueeze(-1)
    return one_hot.movedim(-1, class_dim).float()


def warn_unused(loss: ResolvedLoss, values: Mapping[str, Any], argument: str = "loss_fn") -> None:
    """Warn about model arguments given for the loss (e.g. ``class_weights``) that it ignores.

    Context values reach a loss only when its constructor has a parameter of that name; a
    value the user set explicitly should not vanish silently.

    Example:
        >>> from autotimm.losses.resolve import resolve_loss
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_unused(resolve_loss("dice"), {"class_weights": [1.0, 2.0]})
        >>> "class_weights" in str(caught[0].message)
        True
    """
    accepted = {p.name for p in loss.entry.parameters} if loss.entry is not None else set()
    for name, value in values.items():
        if value is not None and name not in accepted:
            what = (
                f"loss {loss.entry.name!r} has no {name!r} parameter"
                if loss.entry is not None
                else f"{argument} is an instance of an unregistered {type(loss.module).__name__}"
            )
            warnings.warn(
                f"{name} was given but {what}, so it is not used. Configure the loss directly "
                "(e.g. through the loss kwargs) or pick a loss that takes it.",
                UserWarning,
                stacklevel=3,
            )


# --------------------------------------------------------------------------- hyperparameters
def plain_hparam(value: Any) -> Any:
    """Tensors to lists, tuples to lists, recursively: what ``torch.load(weights_only=True)``
    and every logger accept.

    Example:
        >>> plain_hparam({"w": torch.tensor([1.0, 2.0]), "r": (6, 12)})
        {'w': [1.0, 2.0], 'r': [6, 12]}
    """
    if isinstance(value, Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_hparam(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_hparam(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"hyperparameter value of type {type(value).__name__} cannot be stored as plain data"
    )


# --------------------------------------------------------------------------- optimisation
class WarmupCosine:
    """LR multiplier: linear warmup over ``warmup`` steps, then cosine decay to 0 at ``total``.

    ``total=None`` (unknown length) keeps the multiplier at 1 after warmup. A plain callable
    object so that ``LambdaLR.state_dict()`` stores its numbers, not code.

    Example:
        >>> f = WarmupCosine(warmup=2, total=10)
        >>> [round(f(s), 3) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """

    def __init__(self, warmup: int, total: int | None) -> None:
        self.warmup = warmup
        self.total = total

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.total is None:
            return 1.0
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class TaskModel(LightningModule):
    """Base of the autotimm models: AdamW + warmup/cosine schedule, loss and metric logging.

    Subclasses set ``self.lr``, ``self.weight_decay``, ``self.warmup_ratio`` and
    ``self.scheduler`` via :meth:`_set_optim`, and call :meth:`log_loss`.
    """

    lr: float
    weight_decay: float
    warmup_ratio: float
    scheduler: SchedulerName

    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        """Loss (and metrics) of one batch for ``stage`` ``"train"``, ``"val"`` or ``"test"``."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def _set_optim(
        self, lr: float, weight_decay: float, warmup_ratio: float, scheduler: SchedulerName
    ) -> None:
        if not (isinstance(lr, (int, float)) and lr > 0):
            raise ValueError(f"lr must be a positive number; got {lr!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay!r}")
        if not (isinstance(warmup_ratio, (int, float)) and 0 <= warmup_ratio < 1):
            raise ValueError(f"warmup_ratio must be in [0, 1); got {warmup_ratio!r}")
        if scheduler not in ("cosine", "none"):
            raise ValueError(f"scheduler must be 'cosine' or 'none'; got {scheduler!r}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.warmup_ratio, self.scheduler = float(warmup_ratio), scheduler

    def configure_optimizers(self) -> Any:
        """AdamW (no weight decay on biases and norm parameters) with warmup + cosine decay.

        The schedule length is ``trainer.estimated_stepping_batches``.
        """
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for param in self.parameters():
            if param.requires_grad:
                (no_decay if param.ndim <= 1 else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.lr,
        )
        if self.scheduler == "none":
            return optimizer
        total_estimate = float(self.trainer.estimated_stepping_batches)
        total = int(total_estimate) if math.isfinite(total_estimate) else None
        if total is None:
            warnings.warn(
                "The training length is unknown (no max_steps/max_epochs), so the cosine "
                "schedule keeps the learning rate constant after warmup.",
                UserWarning,
                stacklevel=2,
            )
        warmup = round(self.warmup_ratio * total) if total is not None else 0
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupCosine(warmup, total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def log_loss(
        self,
        stage: str,
        loss: Tensor,
        criteria: Mapping[str, nn.Module | Tensor | float],
        batch_size: int,
    ) -> None:
        """Log ``{stage}/loss`` and the components of composite losses.

        ``criteria`` maps a name to a loss module (its ``last_components`` dict is logged as
        ``{stage}/loss_<key>``) or to a value logged as ``{stage}/loss_<name>``.
        """
        train = stage == "train"
        options: dict[str, Any] = {
            "on_step": train,
            "on_epoch": not train,
            "batch_size": batch_size,
            "sync_dist": not train,
        }
        self.log(f"{stage}/loss", loss.detach(), prog_bar=True, **options)
        for name, item in criteria.items():
            if isinstance(item, nn.Module):
                components = getattr(item, "last_components", None)
                if not isinstance(components, Mapping):
                    continue
                for key, value in components.items():
                    key = str(key)
                    key = key if key.startswith("loss") else f"loss_{key}"
                    self.log(f"{stage}/{key}", _scalar(value), **options)
            else:
                self.log(f"{stage}/loss_{name}", _scalar(item), **options)


def _scalar(value: Tensor | float) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().float().mean()
    return torch.tensor(float(value))

"""Checkpoints keep the loss as plain data and stay safe to load (``weights_only=True``).

Each model trains one step under :class:`autotimm.AutoTrainer` with its default logger and
``ModelCheckpoint`` (on ``val/loss``); the saved checkpoint is then loaded with
``torch.load(..., weights_only=True)`` and ``Model.load_from_checkpoint`` must rebuild the
same loss class with the same parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader

from autotimm import (
    AutoTrainer,
    ImageClassifier,
    InstanceSegmentor,
    ObjectDetector,
    SemanticSegmentor,
)
from autotimm.losses import FocalLoss, get_loss_registry, register_custom_loss

BACKBONE = "resnet10t"
TINY_DET = {"pretrained": False, "fpn_channels": 32, "head_convs": 1}


def _cls_batch() -> dict[str, Any]:
    return {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 1])}


def _seg_batch() -> dict[str, Any]:
    return {"image": torch.randn(2, 3, 32, 32), "mask": torch.randint(0, 3, (2, 32, 32))}


def _det_batch() -> dict[str, Any]:
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:40, 10:50] = 1
    return {
        "image": torch.randn(2, 3, 64, 64),
        "boxes": [torch.tensor([[10.0, 8.0, 50.0, 40.0]]), torch.zeros(0, 4)],
        "labels": [torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
        "masks": [masks, torch.zeros(0, 64, 64, dtype=torch.uint8)],
    }


def train_and_checkpoint(
    model: LightningModule, batch: dict[str, Any], root: Path, logged: set[str] | None = None
) -> Path:
    """One training step and one validation batch under AutoTrainer's defaults."""
    trainer = AutoTrainer(
        default_root_dir=root,
        max_steps=1,
        accelerator="cpu",
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader([batch], batch_size=None)
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    if logged is not None:
        logged.update(trainer.logged_metrics)
    path = trainer.checkpoint_callback.best_model_path
    assert path and Path(path).is_file(), "AutoTrainer's ModelCheckpoint saved nothing"
    return Path(path)


def plain(value: Any) -> bool:
    """Only plain python data (what JSON and every logger accept)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(plain(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, str))


CASES: list[tuple[type, dict[str, Any], Callable[[], dict[str, Any]], Callable[[Any], Any]]] = [
    (
        ImageClassifier,
        {"num_classes": 3, "loss_fn": "ce", "loss_kwargs": {"label_smoothing": 0.1}},
        _cls_batch,
        lambda m: (m.loss.module.label_smoothing, m.loss.module.num_classes),
    ),
    (
        SemanticSegmentor,
        {
            "num_classes": 3,
            "ce_weight": 0.5,
            "dice_weight": 1.5,
            "class_weights": torch.tensor([1.0, 2.0, 3.0]),
            "decoder_channels": 32,
        },
        _seg_batch,
        lambda m: (
            m.loss.module.ce_weight,
            m.loss.module.dice_weight,
            m.loss.module.class_weights.tolist(),
        ),
    ),
    (
        ObjectDetector,
        {
            "num_classes": 2,
            "cls_loss_fn": FocalLoss(alpha=0.3, gamma=2.5),
            "reg_loss_fn": "ciou",
            "centerness_weight": 0.5,
            **TINY_DET,
        },
        _det_batch,
        lambda m: (
            type(m.loss.module.cls_loss),
            m.loss.module.cls_loss.alpha,
            m.loss.module.cls_loss.gamma,
            type(m.loss.module.reg_loss),
            m.loss.module.centerness_weight,
        ),
    ),
    (
        InstanceSegmentor,
        {
            "num_classes": 2,
            "reg_loss_fn": "diou",
            "mask_loss_kwargs": {"pos_weight": [2.0]},
            "mask_channels": 16,
            "mask_convs": 1,
            **TINY_DET,
        },
        _det_batch,
        lambda m: (
            type(m.loss.module.reg_loss),
            type(m.mask_loss.module),
            m.mask_loss.module.pos_weight.tolist(),
        ),
    ),
]


@pytest.mark.parametrize(
    ("model_cls", "kwargs", "make_batch", "loss_facts"), CASES, ids=[c[0].__name__ for c in CASES]
)
def test_checkpoint_round_trip_keeps_the_loss(
    model_cls: type,
    kwargs: dict[str, Any],
    make_batch: Callable[[], dict[str, Any]],
    loss_facts: Callable[[Any], Any],
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    model = model_cls(BACKBONE, **{"pretrained": False, **kwargs})
    logged: set[str] = set()
    path = train_and_checkpoint(model, make_batch(), tmp_path, logged)
    assert {"train/loss", "val/loss"} <= logged
    if isinstance(model, InstanceSegmentor):  # COCO mAP through torchmetrics (pycocotools)
        assert {"val/bbox_map", "val/segm_map", "val/loss_mask"} <= logged
    elif isinstance(model, ObjectDetector):
        assert {"val/map", "val/map_50", "val/loss_cls", "val/loss_reg"} <= logged

    raw = torch.load(path, weights_only=True)  # no pickled modules, classes or tensors in hparams
    hparams = raw["hyper_parameters"]
    assert plain(hparams), hparams
    assert not any(isinstance(v, str) and v.startswith("unregistered:") for v in hparams.values())

    loaded = model_cls.load_from_checkpoint(path)
    assert type(loaded.loss.module) is type(model.loss.module)
    assert loss_facts(loaded) == loss_facts(model)
    assert dict(loaded.hparams) == dict(model.hparams)
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)


class ScaledCrossEntropy(nn.Module):
    """A user's loss: registered by name, needs ``num_classes``."""

    def __init__(self, num_classes: int, scale: float = 1.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = scale

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.scale * nn.functional.cross_entropy(logits, target)


class Balanced(nn.Module):
    """Seed page Example 2: requires ``class_weights``."""

    def __init__(self, class_weights: torch.Tensor) -> None:
        super().__init__()
        self.ce = nn.CrossEntropyLoss(weight=class_weights)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(input, target)


@pytest.fixture
def custom_losses() -> Any:
    with get_loss_registry().temporary():
        register_custom_loss("scaled_ce", ScaledCrossEntropy)
        register_custom_loss("balanced_ce", Balanced)
        yield


def test_custom_registered_losses_round_trip(custom_losses: None, tmp_path: Path) -> None:
    by_name = ImageClassifier(
        BACKBONE, num_classes=3, loss_fn="scaled_ce", loss_kwargs={"scale": 2.0}, pretrained=False
    )
    # a registered class constructed directly is stored by its registry name too
    instance = ImageClassifier(
        BACKBONE, num_classes=3, loss_fn=ScaledCrossEntropy(3, scale=0.5), pretrained=False
    )
    with pytest.warns(UserWarning, match="requires 'class_weights'"):
        fallback = ImageClassifier(BACKBONE, num_classes=3, loss_fn="balanced_ce", pretrained=False)
    scaled, balanced = (f"{c.__module__}.{c.__qualname__}" for c in (ScaledCrossEntropy, Balanced))
    expected = [
        {"name": "scaled_ce", "params": {"num_classes": 3, "scale": 2.0}, "class_path": scaled},
        {"name": "scaled_ce", "params": {"num_classes": 3, "scale": 0.5}, "class_path": scaled},
        {"name": "balanced_ce", "params": {"class_weights": [1.0] * 3}, "class_path": balanced},
    ]
    for i, (model, spec) in enumerate(zip((by_name, instance, fallback), expected)):
        assert model.hparams["loss_fn"] == spec
        path = tmp_path / f"{i}.ckpt"
        trainer = AutoTrainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
        trainer.strategy.connect(model)
        trainer.save_checkpoint(path)
        assert plain(torch.load(path, weights_only=True)["hyper_parameters"])
        loaded = ImageClassifier.load_from_checkpoint(path)
        assert type(loaded.loss.module) is type(model.loss.module)
        assert loaded.hparams["loss_fn"] == spec
    assert loaded.loss.module.ce.weight.tolist() == [1.0, 1.0, 1.0]


def test_unregistered_loss_instance_must_be_passed_again(tmp_path: Path) -> None:
    model = ImageClassifier(
        BACKBONE, num_classes=3, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1), pretrained=False
    )
    marker = model.hparams["loss_fn"]
    assert marker == "unregistered:torch.nn.modules.loss.CrossEntropyLoss"
    path = train_and_checkpoint(model, _cls_batch(), tmp_path)
    assert torch.load(path, weights_only=True)["hyper_parameters"]["loss_fn"] == marker
    with pytest.raises(ValueError, match=r"load_from_checkpoint\(path, loss_fn=YourLoss"):
        ImageClassifier.load_from_checkpoint(path)
    loaded = ImageClassifier.load_from_checkpoint(
        path, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1)
    )
    assert loaded.loss.module.label_smoothing == 0.1
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())


def test_unregistered_detection_loss_names_its_argument(tmp_path: Path) -> None:
    class L1Boxes(nn.Module):
        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return (pred - target).abs().sum()

    model = ObjectDetector(BACKBONE, num_classes=2, reg_loss_fn=L1Boxes(), **TINY_DET)
    path = tmp_path / "det.ckpt"
    trainer = AutoTrainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    with pytest.raises(ValueError, match="reg_loss_fn=YourLoss"):
        ObjectDetector.load_from_checkpoint(path)
    loaded = ObjectDetector.load_from_checkpoint(path, reg_loss_fn=L1Boxes())
    assert type(loaded.loss.module.reg_loss).__name__ == "L1Boxes"


def test_loss_instance_keeps_its_own_values_for_context_parameters(tmp_path: Path) -> None:
    """An instance's defaults are written down, so reloading does not swap in the context."""
    from autotimm.losses import DiceLoss

    model = SemanticSegmentor(
        BACKBONE, num_classes=3, loss_fn=DiceLoss(smooth=0.5), ignore_index=0, pretrained=False
    )
    assert model.loss.module.ignore_index == 255  # used as given
    assert model.hparams["loss_fn"] == {
        "name": "dice",
        "params": {"smooth": 0.5, "num_classes": None, "ignore_index": 255},
        "class_path": "autotimm.losses.segmentation.DiceLoss",
    }
    path = tmp_path / "seg.ckpt"
    trainer = AutoTrainer(default_root_dir=tmp_path, logger=False, accelerator="cpu")
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    loaded = SemanticSegmentor.load_from_checkpoint(path)
    assert (
        loaded.loss.module.ignore_index,
        loaded.loss.module.smooth,
        loaded.loss.module.num_classes,
    ) == (
        255,
        0.5,
        None,
    )
    assert dict(loaded.hparams) == dict(model.hparams)


class LearningRates(Callback):
    """The learning rate of each training step, and a stop after ``stop_at`` steps."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.rates: list[float] = []
        self.stop_at = stop_at

    def on_train_batch_start(self, trainer: Trainer, pl_module: Any, batch: Any, idx: int) -> None:
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int
    ) -> None:
        if trainer.global_step == self.stop_at:
            trainer.should_stop = True


def test_resuming_a_checkpoint_continues_the_warmup_cosine_schedule(tmp_path: Path) -> None:
    """The scheduler's state is saved (as plain numbers) and restored: a run stopped after 4
    of 8 steps and resumed from its checkpoint has the learning rates of an uninterrupted run
    (linear warmup, then cosine decay)."""

    def run(callback: LearningRates, ckpt_path: Path | None = None) -> Trainer:
        torch.manual_seed(0)
        model = ImageClassifier(BACKBONE, num_classes=3, pretrained=False, warmup_ratio=0.25)
        trainer = AutoTrainer(
            default_root_dir=tmp_path,
            max_steps=8,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            callbacks=[callback],
        )
        loader = DataLoader([_cls_batch(), _cls_batch()], batch_size=None)  # 2 steps per epoch
        trainer.fit(model, train_dataloaders=loader, ckpt_path=ckpt_path)
        return trainer

    lr, warmup, total = 1e-3, 2, 8  # ImageClassifier's lr; warmup_ratio 0.25 of 8 steps
    expected = [lr * (s + 1) / warmup for s in range(warmup)] + [
        lr * 0.5 * (1 + math.cos(math.pi * (s - warmup) / (total - warmup)))
        for s in range(warmup, total)
    ]
    first = LearningRates(stop_at=4)
    stopped = run(first)
    path = tmp_path / "stopped.ckpt"
    stopped.save_checkpoint(path)
    raw = torch.load(path, weights_only=True)
    assert raw["lr_schedulers"][0]["_milestones"] == [2]  # torch's SequentialLR state
    resumed = LearningRates()
    run(resumed, ckpt_path=path)
    assert first.rates == pytest.approx(expected[:4])
    assert resumed.rates == pytest.approx(expected[4:])


@pytest.mark.parametrize(
    ("model_class", "kwargs", "prefix"),
    [
        (SemanticSegmentor, {"loss_fn": {"name": "ce", "params": {"weight": [1, 2, 3]}}}, "loss."),
        (ImageClassifier, {"loss_fn": "bce_with_logits", "class_weights": [1, 2, 3]}, "loss."),
        (
            InstanceSegmentor,
            {"mask_loss_fn": {"name": "bce_with_logits", "params": {"pos_weight": [2.0]}}},
            "mask_loss.",
        ),
    ],
)
def test_a_state_dict_from_before_model_loss_still_loads(
    model_class: type[LightningModule], kwargs: dict[str, Any], prefix: str
) -> None:
    """Checkpoints written before the loss was wrapped in ModelLoss keep its buffers at
    ``loss.weight``; today they are ``loss.module.weight``. Both load, strictly."""
    model = model_class(BACKBONE, num_classes=3, pretrained=False, **kwargs)
    state = model.state_dict()
    inner = prefix + "module."
    loss_keys = [k for k in state if k.startswith(inner)]
    assert loss_keys, "the loss has a buffer to store"
    old = {(prefix + k[len(inner) :] if k.startswith(inner) else k): v for k, v in state.items()}
    fresh = model_class(BACKBONE, num_classes=3, pretrained=False, **kwargs)
    for key in loss_keys:
        fresh.get_buffer(key).mul_(0)  # so that loading is what restores them
    fresh.load_state_dict(old)  # strict
    for key in loss_keys:
        assert torch.equal(fresh.get_buffer(key), state[key])
    fresh.load_state_dict(state)  # today's keys load as before

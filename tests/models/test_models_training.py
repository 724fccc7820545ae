"""Each model learns: it overfits a tiny synthetic dataset with the default optimiser/schedule.

Datasets come from :mod:`autotimm.data.synthetic` through the real data modules; training
runs through :class:`autotimm.AutoTrainer` (so ``configure_optimizers`` and the warmup/cosine
schedule are the ones users get). Backbones are ``resnet10t`` without pretrained weights.
Run with ``-s`` to see the measured numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader
from torchvision.ops import box_iou

from autotimm import (
    AutoTrainer,
    ImageClassifier,
    InstanceSegmentor,
    ObjectDetector,
    SemanticSegmentor,
)
from autotimm.data import (
    DetectionDataModule,
    ImageDataModule,
    InstanceSegmentationDataModule,
    SegmentationDataModule,
    make_classification_dataset,
    make_detection_dataset,
    make_instance_segmentation_dataset,
    make_segmentation_dataset,
)

BACKBONE = "resnet10t"


class Recorder(Callback):
    """Keeps every training loss and logged component."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.metrics: list[dict[str, float]] = []

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        self.losses.append(float(outputs["loss"]))
        self.metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def fit(model: LightningModule, batches: list[Any], steps: int) -> Recorder:
    torch.manual_seed(0)
    recorder = Recorder()
    trainer = AutoTrainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[recorder],
    )
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    assert trainer.global_step == steps
    return recorder


def batches_of(datamodule: Any) -> list[Any]:
    datamodule.setup("fit")
    return list(datamodule.train_dataloader())


def halves(losses: list[float]) -> tuple[float, float]:
    first, last = losses[0], sum(losses[-3:]) / 3
    assert last <= 0.5 * first, f"loss did not halve: {first:.4f} -> {last:.4f}"
    return first, last


@pytest.mark.slow
def test_classifier_overfits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = make_classification_dataset(tmp_path, num_classes=3, images_per_class=4, image_size=32)
    dm = ImageDataModule(root, image_size=32, batch_size=12, num_workers=0, hflip_prob=0.0)
    batches = batches_of(dm)
    model = ImageClassifier(BACKBONE, num_classes=3, pretrained=False)
    recorder = fit(model, batches, steps=15)
    first, last = halves(recorder.losses)
    model.eval()
    with torch.no_grad():
        accuracy = (model(batches[0]["image"]).argmax(1) == batches[0]["label"]).float().mean()
    print(f"\nclassifier: loss {first:.3f} -> {last:.3f}, train accuracy {accuracy:.2f}")
    assert accuracy >= 0.9


@pytest.mark.slow
def test_segmentor_overfits(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = make_segmentation_dataset(tmp_path, num_classes=3, num_train=4, image_size=64)
    dm = SegmentationDataModule(root, image_size=64, batch_size=4, num_workers=0, hflip_prob=0.0)
    batches = batches_of(dm)
    model = SemanticSegmentor(
        BACKBONE, num_classes=3, pretrained=False, lr=2e-3, decoder_channels=64
    )
    recorder = fit(model, batches, steps=30)
    first, last = halves(recorder.losses)
    assert {"train/loss_ce", "train/loss_dice"} <= set(recorder.metrics[-1])
    masks = batches[0]["mask"]
    predicted = model.predict(batches[0]["image"])
    valid = masks != 255
    pixel_acc = ((predicted == masks) & valid).sum() / valid.sum()
    print(f"\nsegmentor: loss {first:.3f} -> {last:.3f}, train pixel accuracy {pixel_acc:.3f}")
    assert pixel_acc > 0.8


@pytest.mark.slow
def test_binary_segmentor_with_one_sigmoid_channel_overfits(tmp_path: Path) -> None:
    """num_classes=1 with bce_with_logits: binary masks {0, 1} (and 255) train correctly."""
    torch.manual_seed(0)
    root = make_segmentation_dataset(tmp_path, num_classes=2, num_train=4, image_size=64)
    dm = SegmentationDataModule(root, image_size=64, batch_size=4, num_workers=0, hflip_prob=0.0)
    batches = batches_of(dm)
    model = SemanticSegmentor(
        BACKBONE,
        num_classes=1,
        loss_fn="bce_with_logits",
        pretrained=False,
        lr=2e-3,
        decoder_channels=64,
    )
    recorder = fit(model, batches, steps=30)
    first, last = halves(recorder.losses)
    masks = batches[0]["mask"]
    predicted = model.predict(batches[0]["image"])
    valid = masks != 255
    foreground = (masks == 1) & valid
    pixel_acc = ((predicted == masks) & valid).sum() / valid.sum()
    recall = (predicted.bool() & foreground).sum() / foreground.sum()
    print(
        f"\nbinary segmentor: loss {first:.3f} -> {last:.3f}, pixel accuracy {pixel_acc:.3f}, "
        f"foreground recall {recall:.3f}"
    )
    assert pixel_acc > 0.9 and recall > 0.5


def check_detections(
    predictions: list[dict[str, torch.Tensor]], batch: dict[str, Any], masks: bool = False
) -> dict[str, float]:
    """Every box found (IoU > 0.5, right class), at most one confident false positive each."""
    ious, mask_ious, false_positives = [], [], []
    for i, prediction in enumerate(predictions):
        boxes, labels = batch["boxes"][i], batch["labels"][i]
        confident = prediction["scores"] > 0.3
        found = prediction["boxes"][confident]
        iou = box_iou(boxes, found) if len(found) else torch.zeros(len(boxes), 0)
        same = labels[:, None] == prediction["labels"][confident][None]
        iou = iou * same
        best = iou.max(1) if iou.shape[1] else None
        ious += best.values.tolist() if best is not None else [0.0] * len(boxes)
        very_confident = prediction["scores"][confident] > 0.5
        unmatched = (
            iou.max(0).values < 0.5 if iou.shape[0] else torch.ones(len(found), dtype=torch.bool)
        )
        false_positives.append(int((very_confident & unmatched).sum()))
        if masks and best is not None:
            gt = batch["masks"][i].bool()
            mine = prediction["masks"][confident][best.indices]
            inter = (gt & mine).flatten(1).sum(1).float()
            union = (gt | mine).flatten(1).sum(1).clamp(min=1).float()
            mask_ious += (inter / union).tolist()
    assert min(ious) > 0.5, f"a box was missed: best IoUs {ious}"
    assert max(false_positives) <= 1, f"confident false positives per image: {false_positives}"
    result = {
        "min_iou": min(ious),
        "mean_iou": sum(ious) / len(ious),
        "max_fp": max(false_positives),
    }
    if masks:
        assert min(mask_ious) > 0.5, f"mask IoUs {mask_ious}"
        result["min_mask_iou"] = min(mask_ious)
    return result


@pytest.mark.slow
def test_detector_finds_the_shapes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = make_detection_dataset(tmp_path, num_classes=2, num_train=4, image_size=64)
    dm = DetectionDataModule(root, image_size=64, batch_size=8, num_workers=0, hflip_prob=0.0)
    batches = batches_of(dm)
    model = ObjectDetector(
        BACKBONE, num_classes=2, pretrained=False, lr=1e-3, fpn_channels=64, head_convs=2
    )
    recorder = fit(model, batches, steps=30)
    first, last = halves(recorder.losses)
    assert {"train/loss_cls", "train/loss_reg", "train/loss_centerness"} <= set(
        recorder.metrics[-1]
    )
    found = check_detections(model.predict(batches[0]["image"]), batches[0])
    print(f"\ndetector: loss {first:.3f} -> {last:.3f}, {found}")


@pytest.mark.slow
def test_instance_segmentor_finds_the_shapes_and_their_masks(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = make_instance_segmentation_dataset(tmp_path, num_classes=2, num_train=4, image_size=64)
    dm = InstanceSegmentationDataModule(
        root, image_size=64, batch_size=8, num_workers=0, hflip_prob=0.0
    )
    batches = batches_of(dm)
    model = InstanceSegmentor(
        BACKBONE,
        num_classes=2,
        pretrained=False,
        lr=1e-3,
        fpn_channels=64,
        head_convs=2,
        mask_channels=64,
        mask_convs=2,
    )
    recorder = fit(model, batches, steps=30)
    first, last = halves(recorder.losses)
    mask_losses = [m["train/loss_mask"] for m in recorder.metrics]
    assert mask_losses[-1] <= 0.5 * mask_losses[0], (
        f"mask loss {mask_losses[0]} -> {mask_losses[-1]}"
    )
    found = check_detections(model.predict(batches[0]["image"]), batches[0], masks=True)
    print(
        f"\ninstance segmentor: loss {first:.3f} -> {last:.3f}, "
        f"mask loss {mask_losses[0]:.3f} -> {mask_losses[-1]:.3f}, {found}"
    )

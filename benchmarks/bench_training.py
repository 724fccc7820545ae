"""One training step of ``SemanticSegmentor`` against a plain Lightning module.

The peer trains the *same* timm backbone and DeepLabV3+ head (the segmentor's own network)
with a hand-written cross-entropy + dice loss in a minimal ``LightningModule``; ours adds the
registry loss, component logging and metrics. Both run through a real ``lightning.Trainer``
for a few steps per round, alternating which goes first. Target: within 5% (ratio <= 1.05).

Run: ``python benchmarks/bench_training.py``.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from benchmarks._table import Row
from benchmarks._timing import interleaved_many

__all__ = ["PlainSegmentation", "run"]

BACKBONE = "resnet10t"
NUM_CLASSES = 4


class _Dicts(TensorDataset):
    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # type: ignore[override]
        image, mask = super().__getitem__(index)
        return {"image": image, "mask": mask}


class PlainSegmentation(lightning.LightningModule):
    """The peer: the segmentor's network, a hand-written CE + dice loss, AdamW. Nothing else."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.network(batch["image"])
        target = batch["mask"]
        ce = F.cross_entropy(logits, target, ignore_index=255)
        valid = (target != 255).unsqueeze(1)
        probs = logits.softmax(1) * valid
        onehot = F.one_hot(target.clamp(max=NUM_CLASSES - 1), NUM_CLASSES).permute(0, 3, 1, 2)
        onehot = onehot * valid
        inter = (probs * onehot).sum((2, 3))
        dice = 1 - (2 * inter + 1) / (probs.sum((2, 3)) + onehot.sum((2, 3)) + 1)
        return ce + dice.mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


def run(rounds: int = 7, steps: int = 4, image_size: int = 64, batch_size: int = 8) -> list[Row]:
    """One row: seconds per training step of ours and the peer, interleaved."""
    from autotimm import SemanticSegmentor

    torch.manual_seed(0)
    images = torch.randn(steps * batch_size, 3, image_size, image_size)
    masks = torch.randint(0, NUM_CLASSES, (steps * batch_size, image_size, image_size))
    loader = DataLoader(_Dicts(images, masks), batch_size=batch_size)
    ours_model = SemanticSegmentor(
        BACKBONE, num_classes=NUM_CLASSES, pretrained=False, decoder_channels=64
    )
    peer_model = PlainSegmentation(
        SemanticSegmentor(BACKBONE, num_classes=NUM_CLASSES, pretrained=False, decoder_channels=64)
    )

    def fit(model: lightning.LightningModule) -> None:
        trainer = lightning.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(model, train_dataloaders=loader)

    timing = interleaved_many(
        [lambda: fit(ours_model), lambda: fit(peer_model)], rounds=rounds, warmup=1, numbers=[1, 1]
    )
    return [
        Row(
            key="training",
            benchmark=(
                f"SemanticSegmentor training step ({BACKBONE}, {batch_size}x{image_size}px) "
                "vs the same network + hand-written loss in a plain LightningModule"
            ),
            threads=str(torch.get_num_threads()),
            ours=f"{timing.median(0) / steps * 1e3:.0f} ms/step",
            peer=f"{timing.median(1) / steps * 1e3:.0f} ms/step",
            ratio=timing.ratio(0, 1),
            target="<= 1.05",
            note=f"{steps} steps per fit, Trainer set-up included for both",
        )
    ]


if __name__ == "__main__":
    from benchmarks._table import to_markdown

    print(to_markdown(run()))

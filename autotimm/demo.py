"""``autotimm demo``: compare segmentation losses on a generated dataset, end to end.

The seed page's "Comparing Multiple Losses" example on an embedded default: write a small
synthetic segmentation dataset (real PNG files in the real layout), train a
:class:`~autotimm.SemanticSegmentor` once per loss with :class:`~autotimm.AutoTrainer`, then
print a results table and write a figure of training curves and predictions.

Every loss is built (and its arguments validated by the registry) before any training starts.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning
import torch

__all__ = ["DEFAULT_LOSSES", "DemoResult", "parse_losses", "run_demo"]

DEFAULT_LOSSES = ("dice", "focal_pixelwise", "combined_segmentation")
NUM_CLASSES = 4  # background + three shape classes


@dataclasses.dataclass
class DemoResult:
    """One trained loss: validation metrics, the final training loss and its training curve."""

    loss: str
    miou: float
    pixel_acc: float
    final_train_loss: float
    seconds: float
    curve: list[float]
    predictions: torch.Tensor  # [N, H, W] class ids on the figure's validation images


def parse_losses(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse ``"dice,focal_pixelwise:gamma=3:alpha=0.5"`` into names and keyword arguments.

    Values are read as JSON where they parse (``3``, ``0.5``, ``true``, ``[1, 2]``), else kept
    as strings.

    Example:
        >>> parse_losses("dice,focal_pixelwise:gamma=3")
        [('dice', {}), ('focal_pixelwise', {'gamma': 3})]
    """
    parsed = []
    for item in filter(None, (part.strip() for part in _split_top_level(text))):
        name, *assignments = item.split(":")
        kwargs: dict[str, Any] = {}
        for assignment in assignments:
            key, sep, raw = assignment.partition("=")
            if not sep or not key:
                raise ValueError(
                    f"expected key=value after {name!r} in --losses, got {assignment!r}"
                )
            try:
                kwargs[key] = json.loads(raw)
            except json.JSONDecodeError:
                kwargs[key] = raw
        parsed.append((name, kwargs))
    if not parsed:
        raise ValueError("--losses needs at least one loss name")
    return parsed


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside brackets (``alpha=[1,2]`` stays whole)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    return [*parts, text[start:]]


def run_demo(
    losses: Sequence[str | tuple[str, Mapping[str, Any]]] = DEFAULT_LOSSES,
    *,
    epochs: int = 10,
    image_size: int = 64,
    out: str | Path = "autotimm_demo",
    seed: int = 0,
    backbone: str = "resnet10t",
    num_train: int = 32,
    num_val: int = 8,
    batch_size: int = 8,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> list[DemoResult]:
    """Train one segmentor per loss on generated data; print a table and write a figure.

    Args:
        losses: Registry names, or ``(name, kwargs)`` pairs.
        epochs: Training epochs per loss.
        image_size: Side of the generated (and trained-on) images, in pixels.
        out: Folder for the dataset, logs, ``results.json`` and ``comparison.png``.
        seed: Seeds the data generator and training.
        backbone: timm backbone (trained from scratch: ``pretrained=False``).
        num_train: Generated training images.
        num_val: Generated validation images.
        batch_size: Batch size.
        trainer_kwargs: Extra :class:`~autotimm.AutoTrainer` keywords (they win).

    Raises:
        UnknownLossError, LossConfigError: before any training, for a bad name or argument.

    Example: ``run_demo(["dice"], epochs=1, image_size=32)`` (see ``autotimm demo --help``).
    """
    from autotimm import AutoTrainer, SegmentationDataModule, SemanticSegmentor
    from autotimm.data.synthetic import make_segmentation_dataset

    out = Path(out)
    specs = [(item, {}) if isinstance(item, str) else (item[0], dict(item[1])) for item in losses]

    def build(name: str, kwargs: Mapping[str, Any]) -> SemanticSegmentor:
        return SemanticSegmentor(
            backbone=backbone,
            num_classes=NUM_CLASSES,
            loss_fn=name,
            loss_kwargs=kwargs,
            pretrained=False,
            lr=3e-3,
            decoder_channels=64,
        )

    for name, kwargs in specs:  # fail on a bad name or argument before any data or training
        build(name, kwargs)

    data_dir = make_segmentation_dataset(
        out / "data",
        num_classes=NUM_CLASSES,
        num_train=num_train,
        num_val=num_val,
        image_size=image_size,
        seed=seed,
    )
    print(f"Dataset: {data_dir} ({num_train} train / {num_val} val images, {image_size}px)")

    results = []
    for name, kwargs in specs:
        lightning.seed_everything(seed, verbose=False)
        data = SegmentationDataModule(
            data_dir, image_size=image_size, batch_size=batch_size, num_workers=0
        )
        model = build(name, kwargs)
        curve = _LossCurve()
        options: dict[str, Any] = {
            "max_epochs": epochs,
            "default_root_dir": str(out / "runs" / name),
            "enable_checkpointing": False,
            "log_every_n_steps": 1,
            "callbacks": [curve],
            "accelerator": "cpu",
            "enable_model_summary": False,
        }
        options.update(trainer_kwargs or {})
        print(f"Training with {name}...")
        start = time.perf_counter()
        trainer = AutoTrainer(**options)
        trainer.fit(model, datamodule=data)
        seconds = time.perf_counter() - start
        metrics = trainer.validate(model, datamodule=data, verbose=False)[0]
        results.append(
            DemoResult(
                loss=name,
                miou=float(metrics.get("val/miou", float("nan"))),
                pixel_acc=float(metrics.get("val/pixel_acc", float("nan"))),
                final_train_loss=curve.values[-1] if curve.values else float("nan"),
                seconds=seconds,
                curve=curve.values,
                predictions=_predict(model, data),
            )
        )

    print()
    print(format_results(results))
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(
            [
                {k: v for k, v in dataclasses.asdict(r).items() if k != "predictions"}
                for r in results
            ],
            indent=2,
        )
    )
    figure = _write_figure(results, data, out / "comparison.png")
    print(f"\nWrote {out / 'results.json'} and {figure}; logs under {out / 'runs'}")
    return results


def format_results(results: Sequence[DemoResult]) -> str:
    """The results table: loss, validation mIoU and pixel accuracy, final train loss, time."""
    lines = [
        f"{'loss':<26}{'val mIoU':>10}{'val pixel acc':>15}{'final train loss':>18}{'seconds':>9}"
    ]
    lines.append("-" * len(lines[0]))
    for r in results:
        lines.append(
            f"{r.loss:<26}{r.miou:>10.3f}{r.pixel_acc:>15.3f}{r.final_train_loss:>18.4f}"
            f"{r.seconds:>9.1f}"
        )
    return "\n".join(lines)


def _figure_batch(data: Any, count: int = 3) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = next(iter(data.val_dataloader()))
    return {key: value[:count] for key, value in batch.items()}


@torch.no_grad()
def _predict(model: torch.nn.Module, data: Any) -> torch.Tensor:
    model.eval()
    logits = model(_figure_batch(data)["image"])
    return logits.argmax(dim=1)


class _LossCurve(lightning.Callback):
    """Records the mean training loss of every epoch."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self._epoch: list[float] = []

    def on_train_batch_end(
        self, trainer: lightning.Trainer, module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        self._epoch.append(float(loss))

    def on_train_epoch_end(self, trainer: lightning.Trainer, module: Any) -> None:
        if self._epoch:
            self.values.append(sum(self._epoch) / len(self._epoch))
        self._epoch = []


def _write_figure(results: Sequence[DemoResult], data: Any, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = _figure_batch(data)
    mean = torch.tensor(data.mean).view(3, 1, 1)
    std = torch.tensor(data.std).view(3, 1, 1)
    images = (batch["image"] * std + mean).clamp(0, 1)
    rows = images.shape[0]
    columns = 2 + len(results)
    fig = plt.figure(figsize=(3 * max(columns, 3), 3 * (rows + 1.2)))
    grid = fig.add_gridspec(rows + 1, columns, height_ratios=[1.2] + [1] * rows)
    curves = fig.add_subplot(grid[0, :])
    for r in results:
        curves.plot(range(1, len(r.curve) + 1), r.curve, marker="o", label=r.loss)
    curves.set(xlabel="epoch", ylabel="training loss", title="Training loss per epoch")
    curves.legend()
    titles = ["input", "ground truth", *(f"{r.loss}\nmIoU {r.miou:.2f}" for r in results)]
    for row in range(rows):
        mask = batch["mask"][row].clone()
        panels = [images[row].permute(1, 2, 0), mask, *(r.predictions[row] for r in results)]
        for column, panel in enumerate(panels):
            ax = fig.add_subplot(grid[row + 1, column])
            if column == 0:
                ax.imshow(panel.numpy())
            else:
                shown = panel.numpy().astype(float)
                shown[shown == 255] = float("nan")  # ignored pixels stay blank
                ax.imshow(shown, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[column])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path

"""``PredictionFiles``: ``autotimm predict`` writes what the model predicts, in common formats.

Under ``<run directory>/predictions/`` (the logger's version directory, next to the saved
config):

- class probabilities (``[B, C]`` float predictions): ``predictions.csv`` with the image path,
  the most likely class and one probability column per class;
- masks (``[B, H, W]`` class indices): ``masks/<image stem>.png``, resized back to the image's
  own size (nearest neighbour), like the masks the segmentation data module reads;
- detections (lists of ``{"boxes", "scores", "labels"[, "masks"]}``): ``detections.json`` in
  the COCO results format (``image_id``, ``category_id``, ``bbox`` as ``[x, y, w, h]`` in the
  original image's pixels, ``score``, and an RLE ``segmentation`` for instance masks).

The format is chosen by what the model returns, not by the model's class.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from PIL import Image
from torch import Tensor

from autotimm.config.hooks import SampleSource, sample_source

__all__ = ["PredictionFiles"]


class PredictionFiles(BasePredictionWriter):
    """Write predictions to files under the run directory (see the module docs).

    Example:
        >>> writer = PredictionFiles()
        >>> writer.written
        []
    """

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.rows: list[list[Any]] = []
        self.class_names: list[str] = []
        self.detections: list[dict[str, Any]] = []
        self.masks = 0
        self.written: list[Path] = []
        self._directory: Path | None = None

    # ------------------------------------------------------------------ Lightning hooks
    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        root = trainer.log_dir or trainer.default_root_dir
        self._directory = Path(root) / "predictions"
        self.rows, self.detections, self.masks, self.written = [], [], 0, []

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        dataset = _dataset(trainer, dataloader_idx)
        images = batch["image"] if isinstance(batch, dict) else batch[0]
        size = (int(images.shape[-2]), int(images.shape[-1]))
        count = len(prediction)
        indices = list(batch_indices) if batch_indices is not None else [None] * count
        sources = [
            sample_source(dataset, i) if dataset is not None and i is not None else None
            for i in indices
        ]
        if (
            isinstance(prediction, Tensor)
            and prediction.is_floating_point()
            and prediction.ndim == 2
        ):
            self._add_probabilities(trainer, prediction, sources, batch_idx)
        elif isinstance(prediction, Tensor) and prediction.ndim == 3:
            self._write_masks(prediction, sources, batch_idx)
        elif isinstance(prediction, list) and all(isinstance(p, dict) for p in prediction):
            self._add_detections(trainer, prediction, sources, size, batch, batch_idx)
        else:
            raise TypeError(
                "autotimm predict writes class probabilities [B, C], masks [B, H, W] or "
                f"detection dicts; the model returned {type(prediction).__name__}"
            )

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        directory = self._require_directory()
        suffix = f".rank{trainer.global_rank}" if trainer.world_size > 1 else ""
        if self.rows:
            path = directory / f"predictions{suffix}.csv"
            with path.open("w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["image", "label", *self.class_names])
                writer.writerows(self.rows)
            self.written.append(path)
        if self.detections or (not self.rows and not self.masks):
            path = directory / f"detections{suffix}.json"
            path.write_text(json.dumps(self.detections), encoding="utf-8")
            self.written.append(path)
        if self.masks:
            self.written.append(directory / "masks")
        for path in self.written:
            print(f"autotimm predict: wrote {path}")

    # ------------------------------------------------------------------ formats
    def _require_directory(self) -> Path:
        assert self._directory is not None, "on_predict_start sets the output directory"
        self._directory.mkdir(parents=True, exist_ok=True)
        return self._directory

    def _add_probabilities(
        self,
        trainer: Trainer,
        probabilities: Tensor,
        sources: list[SampleSource | None],
        batch_idx: int,
    ) -> None:
        values = probabilities.detach().float().cpu()
        if not self.class_names:
            names = getattr(_datamodule(trainer), "class_names", None)
            count = values.shape[1]
            if isinstance(names, Sequence) and len(names) >= count:
                self.class_names = [str(name) for name in names]
            else:
                self.class_names = [f"class_{k}" for k in range(count)]
        root = _data_root(trainer)
        for row, (scores, source) in enumerate(zip(values, sources)):
            image = _display(source.path, root) if source else f"batch{batch_idx}_{row}"
            label = self.class_names[int(scores.argmax())]
            self.rows.append([image, label, *(f"{float(s):.6f}" for s in scores)])

    def _write_masks(
        self, masks: Tensor, sources: list[SampleSource | None], batch_idx: int
    ) -> None:
        directory = self._require_directory() / "masks"
        directory.mkdir(exist_ok=True)
        for row, (mask, source) in enumerate(zip(masks.detach().cpu(), sources)):
            array = mask.numpy()
            image = Image.fromarray(
                array.astype(np.uint8 if array.max(initial=0) < 256 else np.int32)
            )
            if source is not None:
                with Image.open(source.path) as original:
                    size = original.size
                if size != image.size:
                    image = image.resize(size, Image.Resampling.NEAREST)
                name = f"{source.path.stem}.png"
            else:
                name = f"batch{batch_idx}_{row}.png"
            image.save(directory / name)
            self.masks += 1

    def _add_detections(
        self,
        trainer: Trainer,
        detections: list[dict[str, Tensor]],
        sources: list[SampleSource | None],
        size: tuple[int, int],
        batch: Any,
        batch_idx: int,
    ) -> None:
        from pycocotools import mask as mask_utils

        found = getattr(_datamodule(trainer), "category_ids", None)
        category_ids = [int(i) for i in found] if isinstance(found, Sequence) else []
        batch_ids = batch.get("image_id") if isinstance(batch, dict) else None
        for row, (detection, source) in enumerate(zip(detections, sources)):
            width = source.width if source and source.width else size[1]
            height = source.height if source and source.height else size[0]
            scale = torch.tensor([width / size[1], height / size[0]] * 2)
            if source is not None and source.image_id is not None:
                image_id = source.image_id
            elif batch_ids is not None:
                image_id = int(batch_ids[row])
            else:
                image_id = batch_idx * len(detections) + row
            boxes = detection["boxes"].detach().float().cpu() * scale
            masks = detection.get("masks")
            for k in range(boxes.shape[0]):
                x1, y1, x2, y2 = (float(v) for v in boxes[k])
                label = int(detection["labels"][k])
                result: dict[str, Any] = {
                    "image_id": image_id,
                    "category_id": category_ids[label] if label < len(category_ids) else label + 1,
                    "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                    "score": round(float(detection["scores"][k]), 5),
                }
                if masks is not None:
                    result["segmentation"] = _rle(masks[k], (width, height), mask_utils)
                self.detections.append(result)


def _rle(mask: Tensor, size: tuple[int, int], mask_utils: Any) -> dict[str, Any]:
    image = Image.fromarray(mask.detach().cpu().numpy().astype(np.uint8))
    if image.size != size:
        image = image.resize(size, Image.Resampling.NEAREST)
    rle = mask_utils.encode(np.asfortranarray(np.asarray(image, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _dataset(trainer: Trainer, dataloader_idx: int) -> Any:
    loaders = trainer.predict_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[dataloader_idx] if dataloader_idx < len(loaders) else None
    return getattr(loaders, "dataset", None)


def _datamodule(trainer: Trainer) -> Any:
    return getattr(trainer, "datamodule", None)


def _data_root(trainer: Trainer) -> Path | None:
    root = getattr(_datamodule(trainer), "data_dir", None)
    return Path(root) if isinstance(root, (str, os.PathLike)) else None


def _display(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()

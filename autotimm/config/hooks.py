"""What the config CLI needs to know about the models and data modules, without building them.

- :func:`loss_slots`: each loss argument of a model and what the model feeds it. The models
  say it themselves (``Model.loss_slots(init_args)``, the hook their ``__init__`` resolves
  through); other LightningModules get generic slots (their loss-typed parameters, the
  generic context values, no feed to check against).

Each remaining table stands in for a small hook the classes could provide themselves (and
should: then this module shrinks to the generic fallbacks):

- :func:`layout_problems`: whether ``data_dir`` has the layout a data module reads, by
  looking at the directory only. Proposed hook: ``DataModule.check_layout(stage) -> problems``.
- :func:`sample_source`: which file a dataset index came from (for prediction files).
  Proposed hook: ``Dataset.source(index)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autotimm.config.parser import Parameter
from autotimm.losses.resolve import LossSlot

__all__ = [
    "SampleSource",
    "layout_problems",
    "loss_slots",
    "sample_source",
    "splits_for",
]

GENERIC_CONTEXT = ("num_classes", "ignore_index")
"""Model arguments passed as loss context by a model without a ``loss_slots`` hook."""


def loss_slots(
    model_class: type, values: Mapping[str, Any], parameters: Mapping[str, Parameter]
) -> list[LossSlot]:
    """The loss arguments of ``model_class`` (those its signature types as losses), each with
    what the model feeds it, for the init ``values`` of a config (defaults filled in).

    Example:
        >>> from autotimm.config.parser import class_parameters
        >>> from autotimm.models import ObjectDetector
        >>> parameters = class_parameters(ObjectDetector)
        >>> [s.argument for s in loss_slots(ObjectDetector, {"num_classes": 2}, parameters)]
        ['cls_loss_fn', 'reg_loss_fn']
    """
    from autotimm.models.checks import weights_or_none

    hook: Any = getattr(model_class, "loss_slots", None)
    known: Mapping[str, LossSlot] = {}
    if hook is not None:
        try:
            known = hook(values)
        except NotImplementedError:  # TaskModel itself, or a subclass that has no losses
            known = {}
    slots = []
    for name, parameter in parameters.items():
        if not parameter.is_loss:
            continue
        slot = known.get(name)
        if slot is None:
            kwargs_name = name.removesuffix("_fn") + "_kwargs"
            slot = LossSlot(
                name,
                None,
                owner=model_class.__name__,
                context={c: values.get(c) for c in GENERIC_CONTEXT if c in parameters},
                class_weights=weights_or_none(values.get("class_weights")),
                kwargs_argument=kwargs_name if kwargs_name in parameters else None,
            )
        slots.append(slot)
    return slots


# --------------------------------------------------------------------------- data layouts
@dataclasses.dataclass(frozen=True)
class _Layout:
    has_split: Callable[[Path, str], bool]
    check_split: Callable[[Path, str], object]
    """Raises ``FileNotFoundError``/``ValueError`` naming what is missing or wrong."""


def _data_table() -> dict[type, _Layout]:
    from autotimm.data import DetectionDataModule, ImageDataModule, SegmentationDataModule
    from autotimm.data.classification import scan_class_folders
    from autotimm.data.files import require_dir, require_file
    from autotimm.data.segmentation import pair_images_and_masks

    def annotations(root: Path, split: str) -> Path:
        return root / "annotations" / f"instances_{split}.json"

    def check_coco(root: Path, split: str) -> object:
        require_file(annotations(root, split), f"COCO annotation file of the {split} split")
        return require_dir(root / split, f"{split} image directory")

    return {
        ImageDataModule: _Layout(
            lambda root, split: (root / split).is_dir(),
            lambda root, split: scan_class_folders(root / split),
        ),
        SegmentationDataModule: _Layout(
            lambda root, split: (root / split).is_dir(),
            lambda root, split: pair_images_and_masks(root / split),
        ),
        DetectionDataModule: _Layout(
            lambda root, split: annotations(root, split).is_file(), check_coco
        ),
    }


def splits_for(stage: str, has_split: Callable[[str], bool]) -> list[str]:
    """The splits a data module reads for ``stage`` (as ``BaseImageDataModule.setup`` does).

    Example:
        >>> splits_for("fit", lambda s: True), splits_for("test", lambda s: s != "test")
        (['train', 'val'], ['val'])
    """
    if stage == "fit":
        return ["train", "val"]
    if stage == "validate":
        return ["val"]
    return ["test"] if has_split("test") else ["val"]


def layout_problems(data_class: type, data_dir: Any, stage: str) -> list[str]:
    """What is missing or wrong in ``data_dir`` for ``data_class`` at ``stage`` (empty: fine).

    Only directory listings and file names are looked at; no image or annotation is read.

    Example:
        >>> from autotimm.data import ImageDataModule
        >>> layout_problems(ImageDataModule, "/nonexistent", "fit")
        ['directory not found: /nonexistent']
    """
    root = Path(str(data_dir))
    if not root.is_dir():
        return [f"directory not found: {root}"]
    table = _data_table()
    layout = next((table[c] for c in data_class.__mro__ if c in table), None)
    if layout is None:
        return []
    problems = []
    for split in splits_for(stage, lambda split: layout.has_split(root, split)):
        try:
            layout.check_split(root, split)
        except (FileNotFoundError, ValueError) as error:
            problems.append(str(error))
    return problems


# --------------------------------------------------------------------------- prediction sources
@dataclasses.dataclass(frozen=True)
class SampleSource:
    """The file a dataset sample was read from, and what is known about it."""

    path: Path
    width: int | None = None
    height: int | None = None
    image_id: int | None = None


def sample_source(dataset: Any, index: int) -> SampleSource | None:
    """Where sample ``index`` of an autotimm dataset came from (``None`` if unknown).

    Example:
        >>> from autotimm.data import ClassificationDataset
        >>> sample_source(ClassificationDataset([(Path("a.png"), 0)], transform=None), 0).path
        PosixPath('a.png')
    """
    records: Sequence[Any] | None = getattr(dataset, "records", None)
    if records is not None:  # CocoDataset
        record = records[index]
        return SampleSource(record.path, record.width, record.height, record.image_id)
    pairs: Sequence[Any] | None = getattr(dataset, "pairs", None)
    if pairs is not None:  # SegmentationDataset: (image, mask)
        return SampleSource(Path(pairs[index][0]))
    samples: Sequence[Any] | None = getattr(dataset, "samples", None)
    if samples is not None:  # ClassificationDataset: (image, label)
        return SampleSource(Path(samples[index][0]))
    return None

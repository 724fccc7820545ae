"""What the config CLI needs to know about the models and data modules, without building them.

Each table here stands in for a small hook the classes could provide themselves (and should:
then this module shrinks to the generic fallbacks):

- :func:`loss_slots`: for each loss argument of a model, the model values that reach the loss
  as context, fixed context values, neutral fallbacks and the model's task. Proposed hook:
  ``Model.loss_context(argument, init_args) -> (context, fallbacks)`` plus ``Model.task``.
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

__all__ = [
    "LossSlot",
    "SampleSource",
    "layout_problems",
    "loss_slots",
    "sample_source",
    "splits_for",
]

GENERIC_CONTEXT = ("num_classes", "ignore_index", "class_weights")
"""Model arguments passed as loss context by a model this module has no entry for."""


@dataclasses.dataclass(frozen=True)
class LossSlot:
    """One loss argument of a model and how the model resolves it.

    Attributes:
        argument: The model argument (``loss_fn``, ``cls_loss_fn``, ...).
        task: The model's task for this loss (``None``: unknown, no task warning).
        context: Model arguments whose values reach the loss when it has such a parameter.
        fixed: Context values the model sets itself (e.g. ``reduction="sum"`` for FCOS terms).
        fallbacks: Required loss parameters the model fills with neutral values when unset.
        kwargs_argument: The model argument with explicit loss kwargs (``loss_kwargs``), if any.
    """

    argument: str
    task: str | None
    context: tuple[str, ...] = ("num_classes",)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    fallbacks: tuple[str, ...] = ()
    kwargs_argument: str | None = None

    def context_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The context the model passes, given its (default-filled) init values."""
        context = {name: values.get(name) for name in self.context}
        return {**context, **self.fixed}

    def fallback_values(self, values: Mapping[str, Any]) -> dict[str, Callable[[], Any]]:
        """Neutral values for ``fallbacks``, as the model makes them (uniform class weights)."""
        num_classes = values.get("num_classes")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            return {}
        uniform = [1.0] * num_classes
        return {name: lambda: list(uniform) for name in self.fallbacks}


def _model_table() -> dict[type, tuple[LossSlot, ...]]:
    from autotimm.models import (
        ImageClassifier,
        InstanceSegmentor,
        ObjectDetector,
        SemanticSegmentor,
    )

    fcos_terms = (
        LossSlot("cls_loss_fn", "detection", fixed={"reduction": "sum"}),
        LossSlot("reg_loss_fn", "detection", fixed={"reduction": "sum"}),
    )
    return {
        ImageClassifier: (
            LossSlot(
                "loss_fn",
                "classification",
                ("num_classes", "class_weights"),
                fallbacks=("class_weights",),
            ),
        ),
        SemanticSegmentor: (
            LossSlot(
                "loss_fn",
                "segmentation",
                ("num_classes", "ignore_index", "class_weights", "ce_weight", "dice_weight"),
                fallbacks=("class_weights",),
            ),
        ),
        ObjectDetector: fcos_terms,
        InstanceSegmentor: (*fcos_terms, LossSlot("mask_loss_fn", "segmentation")),
    }


def loss_slots(model_class: type, parameters: Mapping[str, Parameter]) -> list[LossSlot]:
    """The loss arguments of ``model_class`` (those its signature types as losses).

    Example:
        >>> from autotimm.config.parser import class_parameters
        >>> from autotimm.models import ObjectDetector
        >>> [s.argument for s in loss_slots(ObjectDetector, class_parameters(ObjectDetector))]
        ['cls_loss_fn', 'reg_loss_fn']
    """
    table = _model_table()
    known = next((table[c] for c in model_class.__mro__ if c in table), ())
    by_argument = {slot.argument: slot for slot in known}
    slots = []
    for name, parameter in parameters.items():
        if not parameter.is_loss:
            continue
        slot = by_argument.get(name) or LossSlot(
            name, None, tuple(c for c in GENERIC_CONTEXT if c in parameters)
        )
        kwargs_name = name.removesuffix("_fn") + "_kwargs"
        slots.append(
            dataclasses.replace(
                slot, kwargs_argument=kwargs_name if kwargs_name in parameters else None
            )
        )
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

"""``ImageClassifier``: a timm backbone with its classification head, as a LightningModule."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import BinaryAccuracy, MulticlassAccuracy, MultilabelAccuracy

from autotimm.losses.adapt import LossFeed
from autotimm.losses.model_loss import ModelLoss
from autotimm.losses.resolve import LossLike, LossSlot
from autotimm.models.backbones import create_backbone
from autotimm.models.batches import images_and, images_of
from autotimm.models.checks import (
    check_class_weights,
    check_images,
    check_num_classes,
    check_probability,
    count_or_none,
    weights_or_none,
)
from autotimm.models.hparams import plain_hparam
from autotimm.models.optim import SchedulerName
from autotimm.models.task import Stage, TaskModel

__all__ = ["ImageClassifier", "MixedTargets"]


@dataclasses.dataclass(frozen=True)
class MixedTargets:
    """The targets of a mixed training batch (``timm.data.Mixup``): class probabilities
    ``[B, C]`` (mixed multi-hot vectors with ``multi_label``, ``[B, 1]`` with one output)."""

    probabilities: Tensor


class ImageClassifier(TaskModel):
    """Image classification on any timm backbone; ``model(x)`` is ``[B, num_classes]`` logits.

    Args:
        backbone: A timm model name (``timm.list_models()``).
        num_classes: Number of classes (>= 1). ``1`` without ``multi_label`` is binary
            classification with one sigmoid output: labels are 0 or 1, and the loss must take
            dense targets (e.g. ``"bce_with_logits"``, the default then).
        loss_fn: A registry name or alias, a ``LossSpec`` (or its dict) or an ``nn.Module``.
            ``None``: ``"cross_entropy"``, or ``"bce_with_logits"`` when ``multi_label`` or
            ``num_classes=1``. A loss that cannot take what the model feeds it is refused
            here, naming the losses that can.
        loss_kwargs: Arguments for a loss given by name; they win over the model's context
            values (``num_classes``) that reach the loss when its constructor has a parameter
            of that name.
        multi_label: Targets are multi-hot ``[B, num_classes]`` vectors, not class ids.
        class_weights: Per-class weights; they reach the loss's per-class weight parameter
            (``weight`` of ``cross_entropy``, ...), with a warning for a loss that has none.
        pretrained: Load pretrained backbone weights (needs them cached or a network).
        lr: AdamW learning rate (the peak of the schedule).
        weight_decay: AdamW weight decay (not applied to biases and norm parameters).
        warmup_ratio: Fraction of the training steps with linear warmup before cosine decay.
        scheduler: ``"cosine"`` (warmup + cosine) or ``"none"`` (constant learning rate).
        drop_rate: Dropout before the classifier (timm's ``drop_rate``).
        mixup_alpha: Mixup's beta-distribution alpha (``timm.data.Mixup``); 0 turns mixup off.
        cutmix_alpha: CutMix's alpha; 0 turns CutMix off. With both on, each batch uses one
            of them (half the time each).
        mix_prob: The probability that a training batch is mixed at all, in [0, 1].
        label_smoothing: Smoothing of the training targets, in [0, 1), applied by the same
            ``Mixup`` (also without mixup or CutMix).

    Mixup, CutMix and label smoothing (any of ``mixup_alpha``, ``cutmix_alpha`` and
    ``label_smoothing`` above 0) change the training batches only: images are mixed in
    pairs and the targets become class probabilities (with ``multi_label``, mixed multi-hot
    vectors; with ``num_classes=1``, the mixed probability of class 1). So the loss must take
    soft targets (its registration says ``soft_targets=True``: ``cross_entropy``,
    ``bce_with_logits``, ...); any other is refused here, naming those that fit. Validation
    and test batches are not mixed, and their loss is the same loss fed the labels as without
    mixing. A batch of odd size mixes all but its last image. Training accuracy is measured
    against the dominant class of the mixed targets.

    Batches are ``{"image": [B, 3, H, W], "label": [B]}`` dicts or ``(images, labels)``.
    ``model.loss`` is the :class:`~autotimm.models.model_loss.ModelLoss` it trains with.

    Example:
        >>> import torch
        >>> model = ImageClassifier("resnet18", num_classes=10, pretrained=False)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        loss_fn: LossLike | None = None,
        loss_kwargs: Mapping[str, Any] | None = None,
        multi_label: bool = False,
        class_weights: Tensor | Sequence[float] | None = None,
        pretrained: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_ratio: float = 0.05,
        scheduler: SchedulerName = "cosine",
        drop_rate: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        num_classes = check_num_classes(num_classes)
        self.set_optimisation(lr, weight_decay, warmup_ratio, scheduler)
        weights = check_class_weights(class_weights, num_classes)
        mixing = _check_mixing(mixup_alpha, cutmix_alpha, mix_prob, label_smoothing)
        # the loss first: a loss that does not fit, or bad loss arguments, fail before the
        # backbone is built or data is read
        init_args = {
            "num_classes": num_classes,
            "multi_label": multi_label,
            "class_weights": weights,
            "mixup_alpha": mixup_alpha,
            "cutmix_alpha": cutmix_alpha,
            "label_smoothing": label_smoothing,
        }
        resolved = self.loss_slots(init_args)["loss_fn"].resolve(loss_fn, loss_kwargs)
        self.loss = ModelLoss(resolved)
        # mixed training targets are probabilities; validation feeds the labels: the same
        # loss resolved for what validation feeds (its messages were given already)
        self.eval_loss: ModelLoss | None = None
        self.mixup: Any = None
        if mixing:
            plain = {**init_args, "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "label_smoothing": 0.0}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                eval_resolved = self.loss_slots(plain)["loss_fn"].resolve(loss_fn, loss_kwargs)
            self.eval_loss = ModelLoss(eval_resolved)
            self.mixup = _mixup(
                mixup_alpha, cutmix_alpha, mix_prob, label_smoothing, num_classes, multi_label
            )
        self.backbone = create_backbone(
            backbone, pretrained=pretrained, num_classes=num_classes, drop_rate=drop_rate
        )
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.in_chans = 3
        self.train_acc = _accuracy(num_classes, multi_label)
        self.val_acc = _accuracy(num_classes, multi_label)
        self.save_hyperparameters(
            {
                "backbone": backbone,
                "num_classes": num_classes,
                "loss_fn": resolved.to_hparam(),
                "loss_kwargs": None,  # merged into loss_fn's params
                "multi_label": multi_label,
                "class_weights": plain_hparam(weights),
                "pretrained": pretrained,
                "lr": lr,
                "weight_decay": weight_decay,
                "warmup_ratio": warmup_ratio,
                "scheduler": scheduler,
                "drop_rate": drop_rate,
                "mixup_alpha": mixup_alpha,
                "cutmix_alpha": cutmix_alpha,
                "mix_prob": mix_prob,
                "label_smoothing": label_smoothing,
            }
        )

    @classmethod
    def loss_slots(cls, init_args: Mapping[str, Any]) -> dict[str, LossSlot]:
        """``loss_fn``: logits ``[N, C]`` and class indices ``[N]`` (multi-hot ``[N, C]``
        targets with ``multi_label``; class probabilities ``[N, C]`` when training batches
        are mixed); see :meth:`TaskModel.loss_slots`.

        Example:
            >>> ImageClassifier.loss_slots({"num_classes": 3})["loss_fn"].feed.describe()
            'logits [N, C] (C = 3) and class indices [N]'
            >>> ImageClassifier.loss_slots({"num_classes": 3, "mixup_alpha": 0.2}
            ...                            )["loss_fn"].feed.soft_targets
            True
        """
        num_classes = init_args.get("num_classes")
        classes = count_or_none(num_classes)
        multi_label = init_args.get("multi_label") is True
        mixed = [
            name
            for name in ("mixup_alpha", "cutmix_alpha", "label_smoothing")
            if _positive(init_args.get(name))
        ]
        if mixed:
            target = "dense"
            note = f"{', '.join(mixed)}: the training targets are mixed " + (
                "multi-hot vectors" if multi_label else "class probabilities"
            )
        elif multi_label:
            target, note = "dense", "multi_label=True: multi-hot targets"
        elif classes == 1:
            target, note = "class_indices", "num_classes=1: one sigmoid output for class 1"
        else:
            target, note = "class_indices", ""
        feed = LossFeed(
            task="classification",
            target=target,
            prediction=("N", "C"),
            num_classes=classes,
            soft_targets=bool(mixed),
            note=note,
            multi_label=multi_label,
        )
        return {
            "loss_fn": LossSlot(
                "loss_fn",
                feed,
                owner=cls.__name__,
                context={"num_classes": num_classes},
                class_weights=weights_or_none(init_args.get("class_weights")),
                default="bce_with_logits" if multi_label or classes == 1 else "cross_entropy",
                kwargs_argument="loss_kwargs",
            )
        }

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]`` for images ``[B, 3, H, W]``."""
        return self.backbone(check_images(x, self.in_chans))

    def unpack_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        return images_and(batch, "label")

    def mix_batch(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Any]:
        """Mixup / CutMix / label smoothing of a training batch (``timm.data.Mixup``), when
        enabled: the images mixed in pairs and :class:`MixedTargets`."""
        if self.mixup is None:
            return images, targets
        _check_labels_to_mix(targets, self.num_classes, self.multi_label)
        if self.multi_label or self.num_classes == 1:  # timm's multi-label mode: dense targets
            targets = targets.float().reshape(targets.shape[0], -1)
        images, probabilities = _mix(self.mixup, images, targets)
        return images, MixedTargets(probabilities)

    def compute_loss(
        self, outputs: Tensor, targets: Tensor | MixedTargets
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if isinstance(targets, MixedTargets):
            return self.loss(outputs, targets.probabilities), self.loss.components()
        loss = self.eval_loss if self.eval_loss is not None else self.loss
        return loss(outputs, targets), loss.components()

    def update_metrics(
        self, stage: Stage, images: Tensor, outputs: Tensor, targets: Tensor | MixedTargets
    ) -> None:
        metric = self.train_acc if stage == "train" else self.val_acc
        if isinstance(targets, MixedTargets):  # the dominant class of the mix
            probabilities = targets.probabilities
            mixed_multi = self.multi_label or self.num_classes == 1
            targets = (probabilities >= 0.5).long() if mixed_multi else probabilities.argmax(1)
        if self.multi_label or self.num_classes == 1:  # independent sigmoid outputs
            probs = outputs.detach().sigmoid()
            if self.num_classes == 1:  # BinaryAccuracy
                probs, targets = probs.reshape(-1), targets.reshape(-1)
            metric(probs, targets.long())
        else:
            metric(outputs.detach().argmax(1), targets)
        self.log(f"{stage}/acc", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities: softmax, or sigmoid with ``multi_label`` or one output."""
        images = images_of(batch)
        logits = self(images)
        return logits.sigmoid() if self.multi_label or self.num_classes == 1 else logits.softmax(1)


def _check_labels_to_mix(targets: Tensor, num_classes: int, multi_label: bool) -> None:
    """timm's ``Mixup`` one-hot encodes the labels (there is no ``ignore_index``), and fails on
    a bad one with a bare index error, or mixes it into a value no loss can name: check first."""
    why = "mixup_alpha, cutmix_alpha and label_smoothing mix one-hot training targets"
    if multi_label:
        if targets.ndim != 2 or targets.shape[1] != num_classes:
            raise ValueError(
                f"ImageClassifier: multi_label=True takes multi-hot targets [N, {num_classes}], "
                f"got a batch of shape {tuple(targets.shape)}"
            )
        bad = targets[(targets < 0) | (targets > 1)]
        if bad.numel():
            raise ValueError(
                f"ImageClassifier: target value {bad[0].item()} is outside [0, 1]; "
                "multi_label=True takes multi-hot targets of 0 and 1"
            )
        return
    classes = 2 if num_classes == 1 else num_classes
    if targets.ndim != 1 or targets.is_floating_point():
        raise ValueError(
            f"ImageClassifier: expected class indices [N] (integers), got a batch of shape "
            f"{tuple(targets.shape)} and dtype {targets.dtype}"
        )
    bad = targets[(targets < 0) | (targets >= classes)]
    if bad.numel():
        raise ValueError(
            f"ImageClassifier: label {int(bad[0])} is not a class in [0, {classes}); {why}, "
            "so every training label must be a class (there is no ignore_index)"
        )


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def _check_mixing(mixup_alpha: Any, cutmix_alpha: Any, mix_prob: Any, label_smoothing: Any) -> bool:
    """Check the mixing arguments; whether training batches are mixed (or smoothed)."""
    for name, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{name} must be a finite number >= 0 (0: off); got {value!r}")
    check_probability(mix_prob, "mix_prob")
    if (
        isinstance(label_smoothing, bool)
        or not isinstance(label_smoothing, (int, float))
        or not 0 <= label_smoothing < 1
    ):
        raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing!r}")
    return mixup_alpha > 0 or cutmix_alpha > 0 or label_smoothing > 0


def _mixup(
    mixup_alpha: float,
    cutmix_alpha: float,
    mix_prob: float,
    label_smoothing: float,
    num_classes: int,
    multi_label: bool,
) -> Any:
    from timm.data.mixup import Mixup

    mixup = Mixup(
        mixup_alpha=float(mixup_alpha),
        cutmix_alpha=float(cutmix_alpha),
        prob=float(mix_prob),
        label_smoothing=float(label_smoothing),
        num_classes=num_classes,
        multi_label=multi_label or num_classes == 1,
    )
    # label smoothing alone: timm's switch for "smooth the targets, mix nothing"
    mixup.mixup_enabled = mixup_alpha > 0 or cutmix_alpha > 0
    return mixup


def _mix(mixup: Any, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``mixup(images, targets)``; timm mixes pairs, so an odd batch mixes all but its last
    image, whose target is only smoothed."""
    from timm.data.mixup import mixup_target

    size = int(images.shape[0])
    even = size - size % 2
    if even == size:
        mixed_images, probabilities = mixup(images, targets)
        return mixed_images, probabilities
    last = mixup_target(
        targets[even:], mixup.num_classes, 1.0, mixup.label_smoothing, mixup.multi_label
    )
    if even == 0:
        return images, last
    head_images, head = mixup(images[:even], targets[:even])
    return torch.cat([head_images, images[even:]]), torch.cat([head, last])


def _accuracy(num_classes: int, multi_label: bool) -> Metric:
    if num_classes == 1:  # one sigmoid output: class 1 against the rest
        return BinaryAccuracy()
    if multi_label:
        return MultilabelAccuracy(num_labels=num_classes)
    return MulticlassAccuracy(num_classes=num_classes, average="micro")

"""Joint image / mask / box transforms built on ``torchvision.transforms.v2``.

All three transforms resize to a fixed ``image_size``, flip horizontally at random when
``train=True`` (never for evaluation), convert to ``float32`` in ``[0, 1]`` and normalise with
timm's ImageNet mean/std unless ``mean``/``std`` are given. Masks and boxes are wrapped as
``tv_tensors`` so that every geometric step moves them together with the image:

- masks are resized with ``NEAREST_EXACT`` (class ids are never blended);
- boxes are ``BoundingBoxes`` in ``XYXY`` pixels; after the geometric steps they are clamped
  to the image and boxes narrower or shorter than ``min_box_size`` pixels are dropped together
  with their labels and instance masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

__all__ = [
    "ClassificationTransform",
    "DetectionTransform",
    "SegmentationTransform",
    "image_hw",
    "resolve_image_size",
    "resolve_mean_std",
]

ImageInput = Image.Image | torch.Tensor


def resolve_image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """Return ``(height, width)`` from an int (square) or a ``(height, width)`` pair.

    Example:
        >>> resolve_image_size(224), resolve_image_size((480, 640))
        ((224, 224), (480, 640))
    """
    size = [image_size] * 2 if isinstance(image_size, int) else [int(s) for s in image_size]
    if len(size) != 2:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    if min(size) <= 0:
        raise ValueError(f"image_size must be positive, got {image_size!r}")
    return size[0], size[1]


def resolve_mean_std(
    mean: Sequence[float] | None, std: Sequence[float] | None
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Fill in timm's ImageNet defaults and validate per-channel ``mean``/``std``.

    Example:
        >>> resolve_mean_std(None, (0.5, 0.5, 0.5))[1]
        (0.5, 0.5, 0.5)
    """
    m = tuple(float(v) for v in (IMAGENET_DEFAULT_MEAN if mean is None else mean))
    s = tuple(float(v) for v in (IMAGENET_DEFAULT_STD if std is None else std))
    if len(m) != 3 or len(s) != 3:
        raise ValueError(f"mean and std need 3 values (RGB), got mean={m} std={s}")
    if any(v <= 0 for v in s):
        raise ValueError(f"std values must be positive, got {s}")
    return (m[0], m[1], m[2]), (s[0], s[1], s[2])


def _check_prob(hflip_prob: float) -> float:
    if not 0.0 <= hflip_prob <= 1.0:
        raise ValueError(f"hflip_prob must be in [0, 1], got {hflip_prob}")
    return float(hflip_prob)


class _ResizeMaskNearestExact:
    """Resize a ``tv_tensors.Mask`` with ``NEAREST_EXACT`` (picklable, for ``v2.Lambda``).

    ``v2.Resize`` would use legacy ``NEAREST``, which shifts masks towards the top-left by up to
    half an output pixel relative to the bilinearly resized image. Running this first leaves
    the mask already at the target size, so the following ``v2.Resize`` passes it through.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, mask: torch.Tensor) -> torch.Tensor:
        return F.resize(mask, list(self.size), interpolation=v2.InterpolationMode.NEAREST_EXACT)


def _geometry(size: tuple[int, int], train: bool, hflip_prob: float) -> list[v2.Transform]:
    steps: list[v2.Transform] = [
        v2.Lambda(_ResizeMaskNearestExact(size), tv_tensors.Mask),
        v2.Resize(size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True),
    ]
    if train and hflip_prob > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip_prob))
    return steps


def _to_float_normalized(
    mean: tuple[float, float, float], std: tuple[float, float, float]
) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


class _Transform:
    """What the three transforms share: settings, and the resize/flip/normalise pipeline.

    Subclasses add steps between the geometry and the normalisation (``_target_steps``) and
    define ``__call__`` for their inputs.
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        *,
        train: bool,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip_prob: float = 0.5,
    ) -> None:
        self.size = resolve_image_size(image_size)
        self.train = train
        self.mean, self.std = resolve_mean_std(mean, std)
        self.hflip_prob = _check_prob(hflip_prob)
        self.pipeline = v2.Compose(
            [
                v2.ToImage(),
                *_geometry(self.size, train, self.hflip_prob),
                *self._target_steps(),
                *_to_float_normalized(self.mean, self.std),
            ]
        )

    def _target_steps(self) -> list[v2.Transform]:
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={self.train}, {self.pipeline!r})"


class ClassificationTransform(_Transform):
    """Image-only transform: resize, (train) random h-flip, to float, normalise.

    Args:
        image_size: output size, an int (square) or ``(height, width)``.
        train: enable the random horizontal flip.
        mean, std: normalisation statistics (default: timm's ImageNet mean/std).
        hflip_prob: flip probability when ``train`` is true.

    Example:
        >>> t = ClassificationTransform(32, train=False)
        >>> t(Image.new("RGB", (64, 48))).shape
        torch.Size([3, 32, 32])
    """

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return self.pipeline(image).as_subclass(torch.Tensor)


class SegmentationTransform(_Transform):
    """Joint image + semantic mask transform; the mask comes back as ``long [H, W]``.

    Example:
        >>> t = SegmentationTransform(32, train=True, hflip_prob=1.0)
        >>> image, mask = t(Image.new("RGB", (64, 64)), torch.zeros(64, 64, dtype=torch.uint8))
        >>> image.shape, mask.shape, mask.dtype
        (torch.Size([3, 32, 32]), torch.Size([32, 32]), torch.int64)
    """

    def __call__(self, image: ImageInput, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mask.ndim != 2:
            raise ValueError(f"mask must be [H, W], got shape {tuple(mask.shape)}")
        out = self.pipeline({"image": image, "mask": tv_tensors.Mask(mask)})
        return out["image"].as_subclass(torch.Tensor), out["mask"].as_subclass(torch.Tensor).long()


class DetectionTransform(_Transform):
    """Joint image + boxes (+ instance masks) transform for detection / instance segmentation.

    Boxes are ``[K, 4]`` ``x1, y1, x2, y2`` pixels of the input image; the output boxes are in
    pixels of the resized (and possibly flipped) image, clamped to it, and boxes whose width or
    height falls below ``min_box_size`` are dropped together with their labels and masks.

    Example:
        >>> t = DetectionTransform(32, train=False)
        >>> out = t(Image.new("RGB", (64, 64)), torch.tensor([[0.0, 0.0, 32.0, 16.0]]),
        ...         torch.tensor([1]))
        >>> out["boxes"], out["labels"]
        (tensor([[ 0.,  0., 16.,  8.]]), tensor([1]))
    """

    def __init__(
        self,
        image_size: int | Sequence[int],
        *,
        train: bool,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        hflip_prob: float = 0.5,
        min_box_size: float = 1.0,
    ) -> None:
        self.min_box_size = float(min_box_size)  # read by _target_steps while building
        super().__init__(image_size, train=train, mean=mean, std=std, hflip_prob=hflip_prob)

    def _target_steps(self) -> list[v2.Transform]:
        return [
            v2.ClampBoundingBoxes(),
            v2.SanitizeBoundingBoxes(min_size=self.min_box_size, labels_getter="default"),
        ]

    def __call__(
        self,
        image: ImageInput,
        boxes: torch.Tensor,
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Return ``{"image", "boxes", "labels"}`` (+ ``"masks"`` if masks were given)."""
        height, width = image_hw(image)
        boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if labels.shape[0] != boxes.shape[0]:
            raise ValueError(f"got {boxes.shape[0]} boxes but {labels.shape[0]} labels")
        sample: dict[str, Any] = {
            "image": image,
            "boxes": tv_tensors.BoundingBoxes(  # pyright: ignore[reportCallIssue]
                boxes, format=tv_tensors.BoundingBoxFormat.XYXY, canvas_size=(height, width)
            ),
            "labels": labels,
        }
        if masks is not None:
            if masks.ndim != 3 or masks.shape[0] != boxes.shape[0]:
                raise ValueError(
                    f"masks must be [K, H, W] with K={boxes.shape[0]}, got {tuple(masks.shape)}"
                )
            sample["masks"] = tv_tensors.Mask(masks)
        out = self.pipeline(sample)
        result = {
            "image": out["image"].as_subclass(torch.Tensor),
            "boxes": out["boxes"].as_subclass(torch.Tensor).float(),
            "labels": out["labels"].long(),
        }
        if masks is not None:
            result["masks"] = out["masks"].as_subclass(torch.Tensor)
        return result


def image_hw(image: ImageInput) -> tuple[int, int]:
    """``(height, width)`` of a PIL image or a ``[..., H, W]`` tensor.

    Example:
        >>> image_hw(Image.new("RGB", (64, 48))), image_hw(torch.zeros(3, 48, 64))
        ((48, 64), (48, 64))
    """
    if isinstance(image, Image.Image):
        return image.height, image.width
    return int(image.shape[-2]), int(image.shape[-1])

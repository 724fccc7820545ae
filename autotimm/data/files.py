"""File discovery, up-front validation and loading of image and mask files.

Every data module validates its files here at ``setup()`` so that a missing or corrupt file
fails early with its path in the message, not halfway through an epoch inside a worker.

Images become the model's RGB input by one fixed rule per pixel format (:func:`load_image`):
8-bit images as PIL ``RGB`` (the transform maps 0..255 to [0, 1]); 16-bit greyscale divided by
65535 (the full range of the stored type, never the image's own min/max, so that an intensity
means the same in every image); 32-bit integer images as 16-bit data (values must lie in
0..65535); 32-bit float images as they are (values must lie in [0, 1]). Values outside those
ranges raise ``ValueError`` naming the file; nothing is clipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

__all__ = [
    "HIGH_DEPTH_MODES",
    "IMAGE_EXTENSIONS",
    "MASK_MODES",
    "ImageInfo",
    "is_image_file",
    "list_images",
    "load_image",
    "load_mask",
    "require_dir",
    "require_file",
    "verify_image",
    "verify_input_image",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""File suffixes (compared case-insensitively) that are treated as images."""

HIGH_DEPTH_MODES: dict[str, float] = {
    "I;16": 65535.0,
    "I;16B": 65535.0,
    "I;16L": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,
    "F": 1.0,
}
"""Single-channel PIL modes above 8 bits -> the value that becomes 1.0 in the model's input.

``I;16*`` are 16-bit PNG/TIFF files. ``I`` (32-bit integer) is read as 16-bit data, which is
what it holds when Pillow exposes a 16-bit file that way; larger values are refused. ``F`` is
32-bit float, taken to be in [0, 1] already (the convention of float images).
"""

MASK_MODES: frozenset[str] = frozenset({"1", "L", "P", "I", "I;16", "I;16B", "I;16L"})
"""PIL modes accepted for single-channel class-index masks."""


@dataclass(frozen=True)
class ImageInfo:
    """Header information of a verified image file."""

    path: Path
    width: int
    height: int
    mode: str


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a directory, else raise ``FileNotFoundError`` naming it.

    Example:
        >>> require_dir(Path("/"), "root")
        PosixPath('/')
    """
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a regular file, else raise ``FileNotFoundError`` naming it.

    Example:
        >>> require_file(Path("/nonexistent.json"), "annotation file")
        Traceback (most recent call last):
        FileNotFoundError: annotation file not found: /nonexistent.json
    """
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image suffix and is not a hidden file (e.g. ``._x.png``).

    Example:
        >>> is_image_file(Path("a/cat.JPG")), is_image_file(Path("a/notes.txt"))
        (True, False)
    """
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_images(directory: Path) -> list[Path]:
    """Sorted image files directly inside ``directory`` (not recursive).

    Example:
        >>> list_images(Path("data/train/cat"))  # doctest: +SKIP
        [PosixPath('data/train/cat/001.png'), PosixPath('data/train/cat/002.jpg')]
    """
    return sorted(p for p in directory.iterdir() if p.is_file() and is_image_file(p))


def verify_image(path: Path) -> ImageInfo:
    """Check that ``path`` exists and PIL can open and verify it; return its size and mode.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image (truncated, corrupt, unknown format).

    Example:
        >>> info = verify_image(Path("data/train/cat/001.png"))  # doctest: +SKIP
        >>> info.width, info.height, info.mode  # doctest: +SKIP
        (64, 64, 'RGB')
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            info = ImageInfo(path=path, width=image.width, height=image.height, mode=image.mode)
            image.verify()
    except Exception as exc:  # PIL raises many types (OSError, SyntaxError, struct.error, ...)
        raise ValueError(f"corrupt or unreadable image file {path}: {exc}") from exc
    if info.width <= 0 or info.height <= 0:
        raise ValueError(f"image file {path} has an empty size {info.width}x{info.height}")
    return info


def verify_input_image(path: Path) -> ImageInfo:
    """:func:`verify_image`, plus the value check of :func:`load_image` for 32-bit images.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a readable image, or a 32-bit image holds values outside
            the range :func:`load_image` accepts.

    Example:
        >>> verify_input_image(Path("data/train/cell/001.tif")).mode  # doctest: +SKIP
        'F'
    """
    info = verify_image(path)
    if info.mode in ("I", "F"):  # the only formats whose values can fall outside the rule
        load_image(path)
    return info


def _high_depth_rgb(image: Image.Image, path: Path) -> tv_tensors.Image:
    """``float32 [3, H, W]`` in [0, 1] from a single-channel 16/32-bit image (see module doc)."""
    full_scale = HIGH_DEPTH_MODES[image.mode]
    pixels = np.asarray(image).astype(np.float32)  # uint16 / big-endian / int32 -> exact
    if image.mode in ("I", "F"):
        low, high = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high <= full_scale):
            kind = "32-bit integer" if image.mode == "I" else "32-bit float"
            limit = "0..65535 (16-bit data)" if image.mode == "I" else "[0, 1]"
            raise ValueError(
                f"image file {path} is {kind} (PIL mode {image.mode!r}) with values in "
                f"[{low:g}, {high:g}]; expected {limit}. Rescale the data when writing it, every "
                f"image by the same factor so that intensities stay comparable"
            )
    scaled = torch.from_numpy(pixels / np.float32(full_scale))
    return tv_tensors.Image(scaled.unsqueeze(0).expand(3, -1, -1).contiguous())


def load_image(path: Path) -> Image.Image | tv_tensors.Image:
    """Decode ``path`` as the model's RGB input, naming the file if that fails.

    8-bit images (``L``, ``P``, ``RGB``, ``RGBA``, ``CMYK``, ...) come back as a PIL ``RGB``
    image, exactly as ``Image.open(path).convert("RGB")``. 16-bit colour PNGs are also 8-bit
    here: Pillow keeps their high byte. Single-channel images of more than 8 bits
    (:data:`HIGH_DEPTH_MODES`) come back as ``float32 [3, H, W]`` in [0, 1] (grey repeated on
    the three channels): the value divided by the full range of the stored type, not by the
    image's own min/max, so that the same intensity means the same in every image.

    Raises:
        ValueError: the file cannot be decoded, or a 32-bit image holds values outside its
            range (``I``: 0..65535; ``F``: finite and in [0, 1]).

    Example:
        >>> load_image(Path("data/train/cat/001.png")).mode  # doctest: +SKIP
        'RGB'
        >>> load_image(Path("data/train/cell/001.png")).dtype  # a 16-bit PNG  # doctest: +SKIP
        torch.float32
    """
    try:
        with Image.open(path) as image:
            if image.mode in HIGH_DEPTH_MODES:
                image.load()
                high_depth = image
            else:
                return image.convert("RGB")
    except Exception as exc:
        raise ValueError(f"failed to decode image file {path}: {exc}") from exc
    return _high_depth_rgb(high_depth, path)


def load_mask(path: Path) -> np.ndarray:
    """Decode a single-channel class-index mask as an integer ``[H, W]`` array.

    ``uint8`` masks stay ``uint8``; 16/32-bit masks become ``int64``.

    Example:
        >>> load_mask(Path("data/train/masks/0001.png")).dtype  # doctest: +SKIP
        dtype('uint8')
    """
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.array(image) if mode in MASK_MODES else None
    except Exception as exc:
        raise ValueError(f"failed to decode mask file {path}: {exc}") from exc
    if array is None:
        raise ValueError(
            f"mask {path} has mode {mode!r}; expected a single-channel class-index image "
            f"(one of {sorted(MASK_MODES)})"
        )
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype != np.uint8:
        return array.astype(np.int64)
    return array

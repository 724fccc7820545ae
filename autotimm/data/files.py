"""File discovery, up-front validation and loading of image and mask files.

Every data module validates its files here at ``setup()`` so that a missing or corrupt file
fails early with its path in the message, not halfway through an epoch inside a worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "MASK_MODES",
    "ImageInfo",
    "is_image_file",
    "list_images",
    "load_mask",
    "load_rgb",
    "require_dir",
    "require_file",
    "verify_image",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""File suffixes (compared case-insensitively) that are treated as images."""

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


def load_rgb(path: Path) -> Image.Image:
    """Decode ``path`` as an RGB PIL image, naming the file if decoding fails.

    Example:
        >>> load_rgb(Path("data/train/cat/001.png")).mode  # doctest: +SKIP
        'RGB'
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except Exception as exc:
        raise ValueError(f"failed to decode image file {path}: {exc}") from exc


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

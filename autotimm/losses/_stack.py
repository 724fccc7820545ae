"""Where a warning points: the user's line, not the library's.

A warning raised while a model resolves its loss, or while a loss runs inside a training step,
is several frames deep in autotimm, torch and Lightning; a fixed ``stacklevel`` names one of
those frames, or the wrong one after a refactor. :func:`user_stacklevel` counts the frames.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys

__all__ = ["user_stacklevel"]


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """The folders of autotimm and of the libraries it calls back through (not imported)."""
    dirs = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]  # autotimm/
    for name in ("torch", "lightning", "lightning_fabric", "pytorch_lightning"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            dirs.append(os.path.dirname(spec.origin))
    return tuple(d + os.sep for d in dirs)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes ``warnings.warn``, called next in the same function, name
    the first frame outside autotimm, torch and Lightning (the line the user wrote).

    Example:
        >>> import warnings
        >>> def library_function() -> None:
        ...     warnings.warn("look here", stacklevel=user_stacklevel())
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     library_function()
        >>> caught[0].lineno > 0  # a doctest is the user's code: it names its own line
        True
    """
    libraries = _library_dirs()
    frame = sys._getframe(1)  # the function about to call warnings.warn: stacklevel 1
    level = 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(
        libraries
    ):
        frame = frame.f_back
        level += 1
    return level

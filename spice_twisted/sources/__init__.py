"""What is shown: a source draws into the render service's primary surface and commits damage."""

from __future__ import annotations

from .base import DisplaySource
from .demo import DemoSource
from .image import ImageSource


def make_source(spec: str) -> DisplaySource:
    """`demo`, `image:PATH` or `x11[:DISPLAY]`; raises ValueError with a message meant for the user."""
    if spec == "demo":
        return DemoSource()
    if spec.startswith("image:"):
        return ImageSource(spec[len("image:") :])
    if spec == "x11" or spec.startswith("x11:"):
        try:
            from .x11 import X11Source  # xcffib is needed for this source only
        except ImportError as exc:
            raise ValueError(f"--source x11 needs xcffib ({exc}); pip install xcffib") from None
        return X11Source(spec[len("x11:") :] or None)
    raise ValueError(f"unknown source {spec!r}: use 'demo', 'image:PATH' or 'x11[:DISPLAY]'")


__all__ = ["DisplaySource", "DemoSource", "ImageSource", "make_source"]

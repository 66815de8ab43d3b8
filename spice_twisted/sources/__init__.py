"""What is shown: a source draws into the render service's primary surface and commits damage."""

from __future__ import annotations

from .base import DisplaySource
from .demo import DemoSource
from .image import ImageSource


def make_source(spec: str) -> DisplaySource:
    """`demo` or `image:PATH`; raises ValueError with a message meant for the user."""
    if spec == "demo":
        return DemoSource()
    if spec.startswith("image:"):
        return ImageSource(spec[len("image:") :])
    raise ValueError(f"unknown source {spec!r}: use 'demo' or 'image:PATH'")


__all__ = ["DisplaySource", "DemoSource", "ImageSource", "make_source"]

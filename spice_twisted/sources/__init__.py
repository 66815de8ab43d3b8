"""What is shown: a source draws into the render service's primary surface and commits damage."""

from __future__ import annotations

from ..render.surface import DEFAULT_MAX_SURFACE, SurfaceBound
from .base import DisplaySource
from .demo import DemoSource
from .image import ImageSource


def make_source(spec: str, max_surface: SurfaceBound = DEFAULT_MAX_SURFACE) -> DisplaySource:
    """`demo`, `demo:video`, `image:PATH`, `x11[:DISPLAY]` or `spice://HOST:PORT`, kept within `max_surface`
    (a size known now and over it is refused here); raises ValueError with a message meant for the user."""
    source = _make_source(spec, max_surface)
    source.max_surface = max_surface
    if not max_surface.allows(source.width, source.height):
        raise ValueError(max_surface.refusal(f"--source {spec}", source.width, source.height))
    return source


def _make_source(spec: str, max_surface: SurfaceBound) -> DisplaySource:
    if spec == "demo":
        return DemoSource()
    if spec == "demo:video":  # the demo with its video window playing from the start
        return DemoSource(video=True)
    if spec.startswith("image:"):
        return ImageSource(spec[len("image:") :], max_surface)
    if spec == "x11" or spec.startswith("x11:"):
        try:
            from .x11 import X11Source  # xcffib is needed for this source only
        except ImportError as exc:
            raise ValueError(f"--source x11 needs xcffib ({exc}); pip install xcffib") from None
        return X11Source(spec[len("x11:") :] or None)
    if spec.startswith("spice://"):
        from .vm import VmSource  # spice-gtk runs in a helper process under the system Python

        return VmSource.from_uri(spec)
    raise ValueError(f"unknown source {spec!r}: use 'demo', 'demo:video', 'image:PATH', 'x11[:DISPLAY]' or 'spice://HOST:PORT'")


__all__ = ["DisplaySource", "DemoSource", "ImageSource", "make_source"]

"""What the known client programs say in their links, to tell them apart.

spice-html5 0.2.2 offers exactly AGENT_CONNECTED_TOKENS on its main channel and only
AUTH_SELECTION and MINI_HEADER as common caps; spice-gtk 0.39+ offers all four main caps
and never a PREF_COMPRESSION display cap (a server cap that ryll and the Go client send
anyway). PROTOCOL-NOTES.md, "Clients". The dashboard's client kind (stats.py) reads
these; one behaviour follows from them (channels/display_streams.py): spice-html5 keeps
a stream's STREAM_CLIP but draws every frame whole, so it is not sent clipped streams.
"""

from __future__ import annotations

from collections.abc import Iterable

from .wire.enums import CommonCap, MainCap

HTML5_MAIN_CAPS = frozenset({MainCap.AGENT_CONNECTED_TOKENS})
HTML5_COMMON_CAPS = frozenset({CommonCap.AUTH_SELECTION, CommonCap.MINI_HEADER})
GTK_MAIN_CAPS = frozenset(MainCap)


def links_as_spice_html5(main_caps: Iterable[int], common_caps: Iterable[int]) -> bool:
    """Whether a main channel's link (its channel and common caps) is spice-html5's."""
    return frozenset(main_caps) == HTML5_MAIN_CAPS and frozenset(common_caps) <= HTML5_COMMON_CAPS

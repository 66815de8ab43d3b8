"""Which codec a display client gets: the server's setting, the client's caps, its preference.

`--image-compression` (QEMU's `image-compression`): `off` sends raw bitmaps, `lz` sends
LZ (LZ_RGB) and `quic` sends QUIC to every client (all real clients decode both; no cap
says so), `lz4` and `auto` send LZ4 to clients that advertised DISPLAY_CAP_LZ4_COMPRESSION
and raw bitmaps to the rest. A client's DISPLAY_PREFERRED_COMPRESSION (spice-gtk sends it
only to a server with DISPLAY_CAP_PREF_COMPRESSION) wins where we can honour it: OFF gives
raw, LZ gives LZ, QUIC gives QUIC, LZ4 gives LZ4 if the client decodes it; GLZ keeps the
server's choice. Capability words are hints (PROTOCOL-NOTES.md); raw bitmaps are
what every client decodes.
"""

from __future__ import annotations

from ..wire.enums import DisplayCap, ImageCompression
from . import BITMAP, LZ, LZ4, QUIC

SETTINGS = ("auto", "lz", "lz4", "quic", "off")
JPEG_WAN_SETTINGS = ("auto", "never", "always")  # --jpeg-wan-compression (QEMU's jpeg-wan-compression)


def decodes_lz4(display_caps: frozenset[int]) -> bool:
    """Whether a client decodes LZ4, from its display caps (hints, not proof).

    Every client we know decodes raw 32-bit bitmaps and JPEG; spice-gtk decodes LZ4 and
    says so with DISPLAY_CAP_LZ4_COMPRESSION; spice-html5 does not say so. The Go client
    (Shells-com/spice) says LZ4 but cannot decode it; it is the one client that also
    advertises DISPLAY_CAP_PREF_COMPRESSION, a *server* cap (PROTOCOL-NOTES.md), so a
    client that claims both gets no LZ4."""
    return DisplayCap.LZ4_COMPRESSION in display_caps and DisplayCap.PREF_COMPRESSION not in display_caps


def choose_codec(setting: str, decodes_lz4: bool, preferred: int | None = None) -> str:
    if preferred == ImageCompression.OFF:
        return BITMAP
    if preferred == ImageCompression.LZ:
        return LZ
    if preferred == ImageCompression.LZ4:
        return LZ4 if decodes_lz4 else BITMAP
    if preferred == ImageCompression.QUIC or setting == "quic":
        return QUIC
    if setting == "lz":
        return LZ
    if setting in ("auto", "lz4") and decodes_lz4:
        return LZ4
    return BITMAP


def lossy_allowed(setting: str, is_wan: bool) -> bool:
    """May this client get lossy (JPEG) images? `always`/`never` say so; `auto` follows the
    client's link verdict (`client.link.is_wan`), which may change during the session."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return is_wan

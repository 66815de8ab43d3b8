"""Which codec a display client gets: the server's setting, what the client decodes, its
preference and the picture.

`--image-compression` takes QEMU's names: `off` (raw bitmaps), `quic`, `lz`, `glz`,
`lz4`, `auto_lz` and `auto_glz` (the default, as in QEMU); `auto` is our older name
for `auto_glz` and stays an alias. The auto settings pick per picture: QUIC for
photo-like images (JPEG instead where lossy is allowed, decided by the display
channel), and for synthetic ones GLZ (auto_glz, through a shared dictionary: see
render/glz_group.py) or LZ, except that a client that decodes LZ4 on a link of at least
`LZ4_MIN_BPS` gets LZ4, which costs a fifth of LZ's CPU for bytes such a link carries. A fixed setting a client cannot
decode falls back the same way (GLZ to LZ, LZ4 to LZ), and a codec whose encoder is
not built in falls back to the next one that is (finally raw bitmaps, which every
client decodes). A client's DISPLAY_PREFERRED_COMPRESSION (spice-gtk sends it only to a
server with DISPLAY_CAP_PREF_COMPRESSION) replaces the server's setting for that client.

What a client decodes (`Decoders`) comes from what is known of each client kind
(PROTOCOL-NOTES.md), never from one cap alone; see `decoders()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wire.enums import DisplayCap, ImageCompression
from . import BITMAP, ENCODERS, LZ4, LZ_PLT

QUIC = "quic"
LZ = "lz"
GLZ = "glz"

SETTINGS = ("auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off", "auto")
ALIASES = {"auto": "auto_glz"}
JPEG_WAN_SETTINGS = ("auto", "never", "always")  # --jpeg-wan-compression (QEMU's jpeg-wan-compression)
ZLIB_GLZ_WAN_SETTINGS = ("auto", "never", "always")  # --zlib-glz-wan-compression (QEMU's zlib-glz-wan-compression)

# Under the auto settings a client that decodes LZ4 gets it (not LZ) on a link at least this
# fast. Measured on a 1024x768 text-and-UI picture (one core, benchmarks/codecs.py's
# images): LZ4 about 210 KiB/MP at 380 MP/s, LZ about 60 KiB/MP at 72 MP/s. LZ4 then
# delivers more pixels a second than LZ once the link carries 72 MP/s x 210 KiB/MP, about
# 120 Mbit/s; below that LZ's smaller images win.
LZ4_MIN_BPS = 120_000_000

# DISPLAY_PREFERRED_COMPRESSION values as the setting they stand for.
_PREFERRED = {
    ImageCompression.OFF: "off",
    ImageCompression.AUTO_GLZ: "auto_glz",
    ImageCompression.AUTO_LZ: "auto_lz",
    ImageCompression.QUIC: "quic",
    ImageCompression.GLZ: "glz",
    ImageCompression.LZ: "lz",
    ImageCompression.LZ4: "lz4",
}


@dataclass(frozen=True)
class Decoders:
    """What one client decodes beyond what every known client does (raw 32-bit bitmaps,
    QUIC, LZ_RGB, JPEG: spice-gtk, spice-html5, the Go client and ryll all do)."""

    lz4: bool = False
    glz: bool = False  # it gave a GLZ window in DISPLAY_INIT (spice-html5 and the Go client give 0)
    lz_plt: bool = False  # LZ_PLT (palette) images: spice-gtk, see decoders()

    def takes(self, codec: str) -> bool:
        if codec == LZ4:
            return self.lz4
        if codec == GLZ:
            return self.glz
        if codec == LZ_PLT:
            return self.lz_plt
        return True


# The Go client (Shells-com/spice) advertises exactly these display caps, LZ4 among them,
# and cannot decode LZ4. spice-gtk never advertises PREF_COMPRESSION (a server cap);
# ryll and PureSpice do, together with COMPOSITE and A8_SURFACE, which the Go client lacks.
_GO_CLIENT_CAPS = frozenset(
    {DisplayCap.SIZED_STREAM, DisplayCap.STREAM_REPORT, DisplayCap.MONITORS_CONFIG, DisplayCap.LZ4_COMPRESSION, DisplayCap.PREF_COMPRESSION}
)


def decoders(display_caps: frozenset[int], glz_window: int = 0, preferred: int | None = None) -> Decoders:
    """A client's decoders from its display caps (hints), its DISPLAY_INIT GLZ window and
    its preferred compression.

    - LZ4: the client advertised DISPLAY_CAP_LZ4_COMPRESSION, unless its caps are the Go
      client's set (LZ4 and PREF_COMPRESSION with none of the drawing caps, COMPOSITE or
      A8_SURFACE, that every other LZ4 decoder we know sends). A client that asks for LZ4
      by DISPLAY_PREFERRED_COMPRESSION decodes it, whatever its caps.
    - GLZ: a GLZ window in DISPLAY_INIT (spice-gtk and ryll give one; spice-html5 and the
      Go client give 0 and do not decode GLZ).
    - LZ_PLT: spice-gtk, told by a GLZ window without DISPLAY_CAP_PREF_COMPRESSION (a server
      cap spice-gtk never sends; ryll and PureSpice send it, and ryll 0.3 has no LZ_PLT
      decoder). spice-html5 and the Go client (window 0) do not decode it.
    """
    caps = frozenset(display_caps)
    lz4 = DisplayCap.LZ4_COMPRESSION in caps and not _looks_like_go_client(caps)
    if preferred == ImageCompression.LZ4:
        lz4 = True
    lz_plt = glz_window > 0 and DisplayCap.PREF_COMPRESSION not in caps
    return Decoders(lz4=lz4, glz=glz_window > 0, lz_plt=lz_plt)


def _looks_like_go_client(caps: frozenset[int]) -> bool:
    return DisplayCap.PREF_COMPRESSION in caps and caps <= _GO_CLIENT_CAPS


def decodes_lz4(display_caps: frozenset[int]) -> bool:
    """Whether a client decodes LZ4, from its display caps alone (see `decoders`)."""
    return decoders(display_caps).lz4


def effective_setting(setting: str, preferred: int | None) -> str:
    """The setting that applies to one client: its preferred compression if it sent one we
    know, else the server's (aliases resolved)."""
    if preferred is not None and preferred in _PREFERRED:
        return _PREFERRED[ImageCompression(preferred)]
    return ALIASES.get(setting, setting)


def _available(codec: str) -> bool:
    return codec in (BITMAP, GLZ) or codec in ENCODERS


def _first(*candidates: str) -> str:
    for codec in candidates:
        if _available(codec):
            return codec
    return BITMAP


def choose_codec(
    setting: str, dec: Decoders | bool, preferred: int | None = None, photo_like: bool = False, lan: bool = True, glz_ok: bool = False
) -> str:
    """The lossless codec of one picture for one client.

    `dec` is the client's `Decoders` (a bool means "decodes LZ4", the older form);
    `photo_like` is `Drawable.photo_like()`; `lan`: the client's link is fast enough for
    LZ4 (`LZ4_MIN_BPS`);
    `glz_ok`: GLZ may be the answer (render/glz_group.py asks so for the members of a GLZ
    generation at commit; a picture goes GLZ only through a generation)."""
    if isinstance(dec, bool):
        dec = Decoders(lz4=dec)
    codec = _choose(effective_setting(setting, preferred), dec, photo_like, lan, glz_ok)
    # LZ means LZ_PLT (palette images where a picture has <= 16 colours) to those that decode it
    return LZ_PLT if codec == LZ and dec.lz_plt and _available(LZ_PLT) else codec


def _choose(s: str, dec: Decoders, photo_like: bool, lan: bool, glz_ok: bool) -> str:
    lz4 = (LZ4,) if dec.lz4 else ()
    glz = (GLZ,) if dec.glz and glz_ok else ()
    if s == "off":
        return BITMAP
    if s == "quic":
        return _first(QUIC, LZ, *lz4)
    if s == "lz":
        return _first(LZ, *lz4)
    if s == "lz4":
        return _first(*lz4, LZ)
    if s == "glz":
        return _first(*glz, LZ, *lz4)
    # auto_glz / auto_lz
    if photo_like:
        return _first(QUIC, *(lz4 if lan else ()), LZ, *lz4)
    dictionary = glz if s == "auto_glz" else ()
    if lan:
        return _first(*dictionary, *lz4, LZ)
    return _first(*dictionary, LZ, *lz4)


def allows_glz(setting: str, preferred: int | None) -> bool:
    """Whether a client's setting ever gives GLZ (it may then join a GLZ generation)."""
    return effective_setting(setting, preferred) in ("glz", "auto_glz")


def zlib_glz_wanted(setting: str, is_wan: bool) -> bool:
    """`--zlib-glz-wan-compression`: GLZ images deflated again for this client?"""
    return lossy_allowed(setting, is_wan)


def lossy_allowed(setting: str, is_wan: bool) -> bool:
    """May this client get lossy (JPEG) images? `always`/`never` say so; `auto` follows the
    client's link verdict (`client.link.is_wan`), which may change during the session."""
    if setting == "always":
        return True
    if setting == "never":
        return False
    return is_wan

"""Each client gets only what it decodes, whatever its capability words claim.

Three clients as they introduce themselves on the wire (PROTOCOL-NOTES.md, "Clients"):
spice-gtk, spice-html5 (no LZ4 cap, DISPLAY_INIT cache id 1 of 10 Mpx, glz window 0)
and the Go client (claims LZ4 and the server-only PREF_COMPRESSION cap but decodes
neither LZ4 nor the cache; DISPLAY_INIT all zeros). The same photos, text, repeats and
moves go to all three; what each received is read back from its own bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
from support.images import palette_picture, photo, text_ui
from support.inprocess import Reader, make_server, noise, open_display

from spice_twisted.render.rect import Rect
from spice_twisted.wire.enums import DisplayCap as C
from spice_twisted.wire.enums import ImageType as T
from spice_twisted.wire.enums import MsgCommon
from spice_twisted.wire.enums import MsgDisplay as M

SPICE_GTK = (
    {C.SIZED_STREAM, C.MONITORS_CONFIG, C.COMPOSITE, C.A8_SURFACE, C.STREAM_REPORT, C.LZ4_COMPRESSION, C.MULTI_CODEC, C.CODEC_MJPEG},
    20_971_520,
)
HTML5 = ({C.SIZED_STREAM, C.STREAM_REPORT, C.MULTI_CODEC, C.CODEC_MJPEG}, 10 * 1024 * 1024)
GO = ({C.SIZED_STREAM, C.STREAM_REPORT, C.MONITORS_CONFIG, C.LZ4_COMPRESSION, C.PREF_COMPRESSION}, 0)
# ryll 0.3.0 as seen on the wire (PROTOCOL-NOTES.md): LZ4 *and* PREF_COMPRESSION, like the Go
# client, but it decodes LZ4 (and every other image type).
RYLL = (
    {
        C.SIZED_STREAM, C.MONITORS_CONFIG, C.COMPOSITE, C.A8_SURFACE, C.STREAM_REPORT, C.LZ4_COMPRESSION,
        C.PREF_COMPRESSION, C.MULTI_CODEC, C.CODEC_MJPEG, C.CODEC_H264, C.PREF_VIDEO_CODEC_TYPE,
    },
    20_971_520,
)  # fmt: skip
# What each decodes (H/display.js, Shells-com/spice image.go), as far as we send it.
DECODES = {
    "spice-gtk": {T.BITMAP, T.LZ4, T.JPEG, T.FROM_CACHE, T.QUIC, T.LZ_RGB, T.LZ_PLT, T.GLZ_RGB},
    "html5": {T.BITMAP, T.JPEG, T.FROM_CACHE, T.QUIC, T.LZ_RGB},
    "go": {T.BITMAP, T.JPEG, T.QUIC, T.LZ_RGB},
    "ryll": {T.BITMAP, T.LZ4, T.JPEG, T.FROM_CACHE, T.QUIC, T.LZ_RGB, T.GLZ_RGB},
}
CLIENTS = (("spice-gtk", SPICE_GTK), ("html5", HTML5), ("go", GO), ("ryll", RYLL))
# Display messages spice-html5 implements (H/display.js); the others take these too.
HTML5_MESSAGES = {M.MARK, M.DRAW_COPY, M.DRAW_FILL, M.COPY_BITS, M.INVAL_LIST, M.INVAL_ALL_PALETTES, M.SURFACE_CREATE, M.SURFACE_DESTROY}
HTML5_MESSAGES |= {MsgCommon.SET_ACK, MsgCommon.PING}


@pytest.mark.parametrize("lossy", ["never", "always"])
def test_every_client_gets_only_what_it_decodes(lossy):
    srv = make_server()
    srv.display_settings.jpeg_wan_compression = lossy
    noise(srv)
    readers = {name: Reader(*open_display(srv, caps, cache_px=px)) for name, (caps, px) in CLIENTS}
    for r in readers.values():
        r.catch_up(srv)
    pic, text = photo(80, 160, 1), text_ui(40, 100)
    for i in range(3):
        for where, px in ((Rect(20, 10, 180, 90), pic), (Rect(90, 55, 190, 95), text)):
            srv.render.primary.pixels[where.top : where.bottom, where.left : where.right] = px
            srv.render.damage(where)
            srv.render.flush()
        srv.render.copy_bits(Rect(0, 0, 50, 50), 5 * i + 1, 2 * i + 1)
        srv.render.flush()
    srv.reactor.advance(0.6)  # the lossless upgrade
    for name, r in readers.items():
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3]), name
        assert set(r.screen.image_types) <= DECODES[name], (name, r.screen.image_types)
        assert {m for m, _ in r.messages} <= HTML5_MESSAGES | ({M.MONITORS_CONFIG} if name != "html5" else set()), name
    assert T.LZ4 in readers["spice-gtk"].screen.image_types
    assert T.LZ4 in readers["ryll"].screen.image_types  # PREF_COMPRESSION does not shut it out
    assert T.FROM_CACHE in readers["html5"].screen.image_types
    if lossy == "always":
        assert all(T.JPEG in r.screen.image_types for r in readers.values())


def test_one_colour_goes_as_a_fill_to_every_client():
    """A drawable of one colour is a DRAW_FILL (41 bytes) for every client, no image at all."""
    srv = make_server()
    noise(srv)
    readers = {name: Reader(*open_display(srv, caps, cache_px=px)) for name, (caps, px) in CLIENTS}
    for r in readers.values():
        r.catch_up(srv)
        r.messages.clear()
    where = Rect(30, 20, 150, 90)
    srv.render.primary.pixels[where.top : where.bottom, where.left : where.right] = (10, 200, 30, 0)
    srv.render.damage(where)
    srv.render.flush()
    for name, r in readers.items():
        r.catch_up(srv)
        fills = [b for m, b in r.messages if m == M.DRAW_FILL]
        assert len(fills) == 1 and len(fills[0]) == 41, name
        assert not [m for m, _ in r.messages if m == M.DRAW_COPY], name
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3]), name


def test_image_compression_lz_reaches_every_client():
    """LZ_RGB is the one lossless codec all three decode: under `lz` each gets it (the Go
    client too, whose LZ4 claim is false), and every picture arrives exact."""
    srv = make_server(image_compression="lz")
    srv.display_settings.jpeg_wan_compression = "never"
    noise(srv)
    readers = {
        name: Reader(*open_display(srv, caps, cache_px=px)) for name, (caps, px) in (("spice-gtk", SPICE_GTK), ("html5", HTML5), ("go", GO))
    }
    for r in readers.values():
        r.catch_up(srv)
    for where, px in ((Rect(20, 10, 180, 90), photo(80, 160, 1)), (Rect(90, 55, 190, 95), text_ui(40, 100))):
        srv.render.primary.pixels[where.top : where.bottom, where.left : where.right] = px
        srv.render.damage(where)
        srv.render.flush()
    for name, r in readers.items():
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3]), name
        assert set(r.screen.image_types) - {T.FROM_CACHE} == {T.LZ_RGB}, (name, r.screen.image_types)


def test_lz_plt_goes_to_spice_gtk_only():
    """Under `lz`, pictures of 2 and of 12 colours go as LZ_PLT to spice-gtk (a GLZ window,
    no PREF_COMPRESSION cap) and as LZ_RGB to spice-html5, the Go client and ryll, none of
    which decodes LZ_PLT; every picture arrives exact (each decoded from its own bytes)."""
    srv = make_server(image_compression="lz")
    srv.display_settings.jpeg_wan_compression = "never"
    noise(srv)
    windows = {"spice-gtk": 1 << 22, "html5": 0, "go": 0, "ryll": 1 << 22}
    readers = {name: Reader(*open_display(srv, caps, cache_px=px, glz_window=windows[name])) for name, (caps, px) in CLIENTS}
    for r in readers.values():
        r.catch_up(srv)
        r.screen.image_types.clear()  # the noise before (LZ_RGB to all)
    for where, colours in ((Rect(3, 5, 16, 12), 2), (Rect(20, 10, 181, 60), 12), (Rect(0, 70, 199, 97), 2)):
        srv.render.primary.pixels[where.top : where.bottom, where.left : where.right] = palette_picture(where.height, where.width, colours)
        srv.render.damage(where)
        srv.render.flush()
    for name, r in readers.items():
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3]), name
        want = {T.LZ_PLT} if name == "spice-gtk" else {T.LZ_RGB}
        assert set(r.screen.image_types) - {T.FROM_CACHE} == want, (name, r.screen.image_types)


class _CountingLz:
    """codecs.lz's C module, counting its calls: the encoder boundary itself."""

    def __init__(self, real) -> None:
        self.real, self.PLT_MAX_COLOURS = real, real.PLT_MAX_COLOURS
        self.calls = {"encode_lz": 0, "encode_lz_plt": 0}

    def encode_lz(self, px):
        self.calls["encode_lz"] += 1
        return self.real.encode_lz(px)

    def encode_lz_plt(self, px):
        self.calls["encode_lz_plt"] += 1
        return self.real.encode_lz_plt(px)


@pytest.mark.parametrize("first", ["spice-gtk", "html5"])
def test_lz_and_lz_plt_clients_share_one_lz_rgb_encode(monkeypatch, first):
    """spice-gtk (lz_plt) and spice-html5 (lz) under `lz`: a picture of many colours is
    LZ_RGB32 for both, encoded once whichever codec is asked first (counted at the C
    module); a picture of few colours costs one LZ_RGB32 and one LZ_PLT encode."""
    from spice_twisted.codecs import lz

    counting = _CountingLz(lz._lz)
    monkeypatch.setattr(lz, "_lz", counting)
    srv = make_server(image_compression="lz")
    srv.display_settings.jpeg_wan_compression = "never"
    noise(srv)
    order = ["spice-gtk", "html5"] if first == "spice-gtk" else ["html5", "spice-gtk"]
    readers = {name: Reader(*open_display(srv, dict(CLIENTS)[name][0], glz_window=1 << 22 if name == "spice-gtk" else 0)) for name in order}
    for r in readers.values():
        r.catch_up(srv)
        r.screen.image_types.clear()
    for where, px, calls in (
        (Rect(10, 10, 110, 50), text_ui(40, 100), {"encode_lz": 1, "encode_lz_plt": 1}),
        (Rect(20, 60, 181, 90), palette_picture(30, 161, 5), {"encode_lz": 1, "encode_lz_plt": 1}),
    ):
        counting.calls = {"encode_lz": 0, "encode_lz_plt": 0}
        srv.render.primary.pixels[where.top : where.bottom, where.left : where.right] = px
        srv.render.damage(where)
        srv.render.flush()
        for r in readers.values():
            r.catch_up(srv)
        assert counting.calls == calls, (where, counting.calls)
    for name, r in readers.items():
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3]), name
    assert readers["spice-gtk"].screen.image_types == {T.LZ_RGB: 1, T.LZ_PLT: 1}
    assert readers["html5"].screen.image_types == {T.LZ_RGB: 2}

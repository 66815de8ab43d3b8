"""The display pipeline (issue 8) with real spice-gtk clients, watched on the wire by a tap.

Every client here connects through a `WireTap` (tests/support/tap.py), one tap per
client, so the tap's display connection is that client's and its link message names
the session. Pixels are compared three ways: the server's framebuffer, spice-gtk's
decoded surface, and the tap's own decode of the bytes that crossed the wire.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from support.display_decode import image_pixels
from support.processes import as_rgb, assert_clients_match, wait_until
from support.tap import Draw, TapConnection
from support.tapped import connect

from spice_twisted.wire.enums import ChannelType, DisplayCap, ImageCompression, ImageType, MsgcDisplay, MsgDisplay
from spice_twisted.wire.messages import CLIENT, SERVER, decode_body

LZ4, BITMAP = ImageType.LZ4, ImageType.BITMAP
PREFERRED = CLIENT[(ChannelType.DISPLAY, MsgcDisplay.PREFERRED_COMPRESSION)]
SURFACE_CREATE = SERVER[(ChannelType.DISPLAY, MsgDisplay.SURFACE_CREATE)]
MONITORS_CONFIG = SERVER[(ChannelType.DISPLAY, MsgDisplay.MONITORS_CONFIG)]


def encoded_types(conn: TapConnection, start: int = 0) -> dict[int, int]:
    """The image types of the draws that carried pixels (a FROM_CACHE carries none: the
    pixmap cache may send any repeat that way, whatever the codec)."""
    types = conn.image_types(start)
    types.pop(ImageType.FROM_CACHE, None)
    return types


def _mismatch(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape, (a.shape, b.shape)
    return int(np.any(a != b, axis=2).sum())


def assert_exact(server, clients, conns: list[TapConnection] = ()) -> np.ndarray:
    """The source is paused: once every client is quiet, each client's surface and each tap
    connection's own decode equal the server's framebuffer."""
    expect = assert_clients_match(server, clients)
    fb = server.framebuffer()
    for conn in conns:
        # The tap recorded every message before forwarding it, so the client's quiet
        # means the tap holds everything the client drew.
        screen = conn.screen()
        assert screen.fb is not None, f"{conn}: no SURFACE_CREATE on the wire"
        n = _mismatch(screen.fb[..., :3], fb[..., :3])
        assert n == 0, f"{conn}: the tap's decode differs from the server in {n} pixels"
    assert_no_server_errors(server)
    return expect


def assert_no_server_errors(server) -> None:
    log = server.stderr()
    for bad in ("Traceback", "Unhandled"):
        assert bad not in log, log[max(0, log.index(bad) - 2000) : log.index(bad) + 3000]


def display_stats(server, session_id: int) -> dict:
    for c in server.stats()["clients"]:
        if c["id"] == session_id:
            return next(ch for ch in c["channels"] if ch["channel"] == "display")
    raise AssertionError(f"no client {session_id:#x} in the server stats")


def wait_codec(server, conn: TapConnection, codec: str) -> None:
    wait_until(lambda: display_stats(server, conn.connection_id)["codec"] == codec, timeout=15, what=f"codec {codec} for {conn}")


def switch(server, client, conn: TapConnection, compression: int, codec: str) -> None:
    """Ask spice-gtk for a preferred compression and see it go out and take effect."""
    before = len(conn.client_messages)
    client.send(f"compression {compression}")
    conn.wait_for(
        lambda k: any(t == MsgcDisplay.PREFERRED_COMPRESSION for t, _ in k.client_messages[before:]),
        what="PREFERRED_COMPRESSION from the client",
    )
    sent = [decode_body(PREFERRED, b) for t, b in conn.client_messages[before:] if t == MsgcDisplay.PREFERRED_COMPRESSION]
    assert sent[-1]["image_compression"] == compression
    wait_codec(server, conn, codec)


def draw_for_a_while(server, clients, seconds: float = 2.0) -> None:
    server.resume()
    time.sleep(seconds)
    server.pause()
    for c in clients:
        c.wait_quiet(0.4)


def test_two_lz4_clients_exact_on_the_wire(spawn, tap_for):
    server = spawn.harness("--image-compression", "lz4")  # the demo; auto would send its photos as QUIC
    taps, clients, conns = connect(server, tap_for, 2)
    time.sleep(1.5)  # the demo keeps drawing
    server.pause()
    assert_exact(server, clients, conns)
    for conn in conns:
        assert DisplayCap.LZ4_COMPRESSION in conn.client_channel_caps  # spice-gtk decodes LZ4 ...
        assert DisplayCap.PREF_COMPRESSION in conn.server_channel_caps  # ... and we take its preference
        types = encoded_types(conn)
        assert set(types) == {LZ4}, types
        assert types[LZ4] > 10  # the ball moved: not only the first full image
        assert display_stats(server, conn.connection_id)["codec"] == "lz4"
        assert not conn.parse_errors


def test_lz4_and_raw_clients_at_the_same_time(spawn, tap_for):
    server = spawn.harness("--image-compression", "lz4")
    taps, clients, conns = connect(server, tap_for, 5)
    lz4, raw = list(range(3)), [3, 4]
    for i in raw:  # right after connecting
        switch(server, clients[i], conns[i], ImageCompression.OFF, "bitmap")
    # Everything sent so far has arrived: from here on, the wire is after the switch.
    server.pause()
    for c in clients:
        c.wait_quiet(0.4)
    marks = [conn.mark() for conn in conns]
    draw_for_a_while(server, clients)
    assert_exact(server, clients, conns)
    for i in lz4:
        types = encoded_types(conns[i], marks[i])
        assert set(types) == {LZ4} and types[LZ4] > 10, (i, types)
    for i in raw:
        types = encoded_types(conns[i], marks[i])
        assert set(types) == {BITMAP} and types[BITMAP] > 10, (i, types)
    assert [display_stats(server, c.connection_id)["codec"] for c in conns] == ["lz4"] * 3 + ["bitmap"] * 2


def test_preferred_compression_switched_live(spawn, tap_for):
    server = spawn.harness("--image-compression", "lz4")
    (tap,), (client,), (conn,) = connect(server, tap_for, 1)
    time.sleep(1.0)
    assert set(encoded_types(conn)) == {LZ4}
    for compression, codec, image_type in ((ImageCompression.OFF, "bitmap", BITMAP), (ImageCompression.LZ4, "lz4", LZ4)):
        server.pause()
        client.wait_quiet(0.4)
        switch(server, client, conn, compression, codec)
        mark = conn.mark()
        server.resume()
        conn.wait_for(lambda k, m=mark: len(k.draws(m)) >= 10, what="10 draws after the switch")
        server.pause()
        client.wait_quiet(0.4)
        types = encoded_types(conn, mark)
        assert set(types) == {image_type}, (compression, types)
        assert_exact(server, [client], [conn])  # exact across the switch
    assert set(encoded_types(conn)) == {LZ4, BITMAP}


def test_image_compression_off_sends_raw_bitmaps(spawn, tap_for):
    server = spawn.harness("--image-compression", "off")
    taps, clients, conns = connect(server, tap_for, 2)
    time.sleep(1.5)
    server.pause()
    assert_exact(server, clients, conns)
    for conn in conns:
        assert DisplayCap.LZ4_COMPRESSION in conn.client_channel_caps  # it could decode LZ4 ...
        types = encoded_types(conn)
        assert set(types) == {BITMAP} and types[BITMAP] > 10, types  # ... and got raw bitmaps
        assert display_stats(server, conn.connection_id)["codec"] == "bitmap"


def _lz4_draws_agree(draws: list[list[Draw]]) -> None:
    """The same drawable (image id) carries byte-identical payloads on every connection."""
    by_id: dict[int, bytes] = {}
    for conn_draws in draws:
        for d in conn_draws:
            seen = by_id.setdefault(d.image_id, d.payload)
            assert seen == d.payload, f"image {d.image_id}: different payload bytes on two connections"


def test_encode_once_at_the_codec_boundary(spawn, tap_for):
    server = spawn.harness("--image-compression", "lz4", paused=True)
    assert server.command("count_codecs", "count_codecs")["codecs"] == [
        "bitmap",
        "jpeg",
        "lz",
        "lz4",
        "lz_plt",
        "mjpeg",
        "mjpeg_low",
        "mjpeg_min",
        "quic",
    ]
    # No pixmap cache here: a repeat a client holds is (rightly) not encoded at all, which
    # tests/test_pixmap_cache.py shows; this counts one encode per drawable and codec.
    taps, clients, conns = connect(server, tap_for, 5, "--cache-size", "0")
    for i in (3, 4):  # clients 0-2 stay on LZ4, 3 and 4 go raw
        switch(server, clients[i], conns[i], ImageCompression.OFF, "bitmap")
    for c in clients:
        c.wait_quiet(0.4)
    before = server.command("codec_calls", "codec_calls")["calls"]
    r0 = server.stats()["render"]
    marks = [conn.mark() for conn in conns]

    draw_for_a_while(server, clients, 2.0)
    assert_exact(server, clients, conns)
    after = server.command("codec_calls", "codec_calls")["calls"]
    r1 = server.stats()["render"]
    calls = {k: after[k] - before.get(k, 0) for k in after}
    drawables = (r1["drawables"] - r1["fills"]) - (r0["drawables"] - r0["fills"])  # a fill needs no encode
    snapshots = r1["snapshots"] - r0["snapshots"]  # refreshes of a pipe that fell behind
    assert drawables > 20, r1  # the demo really ran
    # One encode per drawable per codec in use, whatever the number of clients on it
    # (three on LZ4 would show as 3x, two on raw as 2x).
    if snapshots == 0:
        assert calls["lz4"] == calls["bitmap"] == drawables, (calls, drawables)
    else:  # a collapsed pipe's refresh is encoded once, for its own codec only
        for codec in ("lz4", "bitmap"):
            assert drawables <= calls[codec] <= drawables + snapshots, (calls, drawables, snapshots)

    # On the wire: all three LZ4 connections got the same payload bytes for the same drawables.
    lz4_draws = [conn.draws(m) for conn, m in zip(conns[:3], marks[:3], strict=True)]
    raw_draws = [conn.draws(m) for conn, m in zip(conns[3:], marks[3:], strict=True)]
    assert all(d.image_type == LZ4 for ds in lz4_draws for d in ds)
    assert all(d.image_type == BITMAP for ds in raw_draws for d in ds)
    _lz4_draws_agree(lz4_draws)
    _lz4_draws_agree(raw_draws)
    distinct_lz4_payloads = {d.payload for ds in lz4_draws for d in ds}
    assert len(distinct_lz4_payloads) <= calls["lz4"]
    assert len({d.image_id for ds in lz4_draws for d in ds}) <= calls["lz4"]
    assert len({d.image_id for ds in raw_draws for d in ds}) <= calls["bitmap"]
    # Each connection carried (nearly) every encode: one encode fed all its sockets. A pipe
    # that fell behind (a loaded machine) sends a refresh instead of what it dropped.
    share = 0.9 if snapshots == 0 else 0.5
    first = Counter(d.payload for d in lz4_draws[0])
    for i, ds in enumerate(lz4_draws[1:], 1):
        other = Counter(d.payload for d in ds)
        differ = sum(((first - other) + (other - first)).values())
        assert differ <= max(3, (1 - share) * len(ds)), f"LZ4 connection {i}: {differ} payloads differ from connection 0"
    for ds, codec in ((lz4_draws, "lz4"), (raw_draws, "bitmap")):
        for conn_draws in ds:
            assert len(conn_draws) >= share * calls[codec], (len(conn_draws), calls, snapshots)
    # The same drawable seen as LZ4 by one client and raw by another: the same pixels.
    raw_by_id = {d.image_id: d for d in raw_draws[0]}
    both = [d for d in lz4_draws[0] if d.image_id in raw_by_id]
    assert len(both) >= share * len(lz4_draws[0])
    for d in both:
        r = raw_by_id[d.image_id]
        w, h = d.box[2] - d.box[0], d.box[3] - d.box[1]
        lz4_px = image_pixels({"type": LZ4, "width": w, "height": h, "data": d.payload})
        raw_px = image_pixels({"type": BITMAP, "width": w, "height": h, "y": h, "stride": w * 4, "data": r.payload})
        assert r.box == d.box and np.array_equal(lz4_px, raw_px), d.image_id
    for conn in conns:
        assert not conn.parse_errors


def test_resize_mid_session(spawn, tap_for, random_image):
    path, rgb = random_image
    server = spawn.harness("--source", f"image:{path}")
    taps, clients, conns = connect(server, tap_for, 2)
    for c in clients:
        c.wait_quiet(0.3)
    assert np.array_equal(as_rgb(clients[0].framebuffer()), rgb)
    for w, h in ((500, 300), (800, 600)):
        marks = [conn.mark() for conn in conns]
        shown = [sum(e.get("event") == "mark" for e in c.events) for c in clients]
        r = server.command(f"resize {w} {h}", "resize")
        assert (r.get("width"), r.get("height")) == (w, h), r
        for c, n in zip(clients, shown, strict=True):
            c.wait_event("primary-create", width=w, height=h)
            # the MARK after the new surface's full content: it has been drawn
            wait_until(lambda c=c, n=n: sum(e.get("event") == "mark" for e in c.events) > n, 20, "the new surface's MARK")
        expect = assert_exact(server, clients, conns)
        reps = (-(-h // rgb.shape[0]), -(-w // rgb.shape[1]), 1)
        assert np.array_equal(expect, np.tile(rgb, reps)[:h, :w])  # the picture, tiled on the new size
        for conn, mark in zip(conns, marks, strict=True):
            after = conn.snapshot(mark)
            types = [t for t, _ in after]
            assert MsgDisplay.SURFACE_DESTROY in types and MsgDisplay.SURFACE_CREATE in types, types
            assert types.index(MsgDisplay.SURFACE_DESTROY) < types.index(MsgDisplay.SURFACE_CREATE)
            create = decode_body(SURFACE_CREATE, next(b for t, b in after if t == MsgDisplay.SURFACE_CREATE))
            assert (create["width"], create["height"]) == (w, h)
            if DisplayCap.MONITORS_CONFIG in conn.client_channel_caps:
                mc = decode_body(MONITORS_CONFIG, next(b for t, b in after if t == MsgDisplay.MONITORS_CONFIG))
                assert [(hd["width"], hd["height"]) for hd in mc["heads"]] == [(w, h)]
            # Whatever was drawn after the new surface lies inside it.
            start = mark + types.index(MsgDisplay.SURFACE_CREATE)
            assert all(d.box[2] <= w and d.box[3] <= h for d in conn.draws(start))
    assert server.stats()["render"]["resizes"] == 2

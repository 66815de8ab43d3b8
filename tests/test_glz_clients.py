"""The shared GLZ dictionary with real spice-gtk clients, watched on the wire through taps.

Three spice-gtk clients start together (the source paused until all three show their
first screen), so they make one GLZ generation; one of them sits behind a slow link, its
pipe fills up and coalesces, so it leaves the generation; a fourth joins late and enters
the generation (its GLZ ids counted from its first image). Every client stays exact (spice-gtk's own decoded surface and the
tap's independent decode, which keeps a GLZ window per client and fails on a reference to
an image the client was not sent), and the members' dictionary is encoded once per image
for all of them, counted at the codec boundary (GlzEncoder.encode, server_harness).
"""

from __future__ import annotations

import time

from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect
from test_pipeline_clients import assert_exact, display_stats

from spice_twisted.wire.enums import ImageType


def _glz_calls(server) -> dict[str, int]:
    calls = server.command("codec_calls", "codec_calls")["calls"]
    return {k: v for k, v in calls.items() if k.startswith("glz:")}


def test_three_members_one_slow_and_a_late_joiner_all_exact(spawn, tap_for):
    # The demo, --image-compression auto_glz (the default). No JPEG: the slowed client would be
    # judged WAN and get the slideshow lossy, and its lossless upgrade is issue 16's matter.
    server = spawn.harness("--jpeg-wan-compression", "never", paused=True)
    server.command("count_codecs", "count_codecs")
    taps, clients, conns = connect(server, tap_for, 3)
    for c in clients:
        c.wait_quiet(0.3)
    taps[2].shape(rate=100_000, delay=0.05)  # 0.8 Mbit/s
    server.resume()
    wait_until(lambda: all(display_stats(server, c.connection_id)["glz_generation"] is not None for c in conns[:2]), 15, "a GLZ generation")
    gens = {display_stats(server, c.connection_id)["glz_generation"] for c in conns[:2]}
    assert len(gens) == 1
    server.command("busy 20 96", "busy")  # incompressible squares, 30 a second: the slow link backs up
    wait_until(lambda: display_stats(server, conns[2].connection_id)["collapses"] > 0, 60, "the slow client's pipe collapsing")
    server.command("busy 0", "busy")
    slow = display_stats(server, conns[2].connection_id)
    assert slow["glz_generation"] is None  # it left before coalescing
    # A fourth client joins while the demo runs: it enters the generation.
    late_tap, late = tap_for(server)
    late.wait_event("mark")
    late_conn = late_tap.display()
    wait_until(lambda: display_stats(server, late_conn.connection_id)["glz_generation"] is not None, 15, "the late joiner's generation")
    assert display_stats(server, late_conn.connection_id)["glz_generation"] in gens
    time.sleep(2.0)  # the demo draws on for all four
    server.pause()
    taps[2].shape()  # the slow link recovers, so the slow client can catch up
    everyone, their_conns = [*clients, late], [*conns, late_conn]
    # Polls: the slow client may still be taking its backlog ("quiet" cannot tell).
    wait_match(lambda: as_rgb(server.framebuffer()), everyone, "the server's framebuffer", timeout=60)
    assert_exact(server, everyone, their_conns)
    screens = [c.screen() for c in their_conns]
    for s in screens:  # each client's GLZ ids: 0, 1, 2, ... with no hole
        assert s.glz_ids == list(range(len(s.glz_ids))), s.glz_ids[:20]
    fast_ids = [len(s.glz_ids) for s in screens[:2]]
    assert min(fast_ids) > 20 and fast_ids[0] == fast_ids[1]  # the members got the same images
    assert 0 < len(screens[3].glz_ids) < fast_ids[0]
    assert ImageType.GLZ_RGB in their_conns[0].image_types() or ImageType.ZLIB_GLZ_RGB in their_conns[0].image_types()
    # Once per image for all members, at the codec boundary: one encoder, which ran
    # exactly as many times as each first member received images from it.
    assert list(_glz_calls(server).values()) == [fast_ids[0]], (_glz_calls(server), fast_ids)


def _images(server, number: int) -> int:
    return next(g["images"] for g in server.stats()["render"]["glz"]["generations"] if g["number"] == number)


def test_two_members_and_two_late_joiners_one_encode_per_image(spawn, tap_for):
    """Two spice-gtk clients start a generation; a third and then a fourth join while the
    demo runs. All four enter the one generation: each image encoded once for all four,
    the late joiners' ids run 0, 1, 2, ... from their first image, all exact."""
    server = spawn.harness("--jpeg-wan-compression", "never", paused=True)
    server.command("count_codecs", "count_codecs")
    taps, clients, conns = connect(server, tap_for, 2)
    for c in clients:
        c.wait_quiet(0.3)
    server.resume()
    wait_until(lambda: all(display_stats(server, c.connection_id)["glz_generation"] is not None for c in conns), 15, "a GLZ generation")
    (gen,) = {display_stats(server, c.connection_id)["glz_generation"] for c in conns}
    wait_until(lambda: _images(server, gen) >= 10, 30, "ten images of the generation")
    for _ in range(2):  # a third, later a fourth
        tap, client = tap_for(server)
        client.wait_event("mark")
        conn = tap.display()
        clients.append(client)
        conns.append(conn)
        wait_until(lambda c=conn: display_stats(server, c.connection_id)["glz_base"] is not None, 15, "the late joiner entering")
        assert display_stats(server, conn.connection_id)["glz_generation"] == gen
        base = display_stats(server, conn.connection_id)["glz_base"]
        wait_until(lambda b=base: _images(server, gen) >= b + 10, 30, "ten images more")
    server.pause()
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=60)
    assert_exact(server, clients, conns)
    bases = [display_stats(server, c.connection_id)["glz_base"] for c in conns]
    assert bases[0] == bases[1] == 0 and 0 < bases[2] < bases[3]
    screens = [c.screen() for c in conns]  # the tap's decode: spice-gtk's window rules
    total = len(screens[0].glz_ids)
    for s, base in zip(screens, bases, strict=True):
        assert s.glz_ids == list(range(total - base)), (base, s.glz_ids[:10])
    # One encoder for all four, once per image: as many encodes as the first members got images.
    assert list(_glz_calls(server).values()) == [total] and total == _images(server, gen)


def test_zlib_glz_always_on_the_live_demo(spawn, tap_for):
    """`--zlib-glz-wan-compression always`: the members get ZLIB_GLZ_RGB (GLZ deflated once
    more, where that saves bytes; GLZ where it does not), and spice-gtk decodes it exactly;
    a late joiner too (its form deflated with its own header)."""
    server = spawn.harness("--zlib-glz-wan-compression", "always", paused=True)
    taps, clients, conns = connect(server, tap_for, 2)
    for c in clients:
        c.wait_quiet(0.3)
    server.resume()
    wait_until(lambda: all(display_stats(server, c.connection_id)["glz_generation"] is not None for c in conns), 15, "a GLZ generation")
    (gen,) = {display_stats(server, c.connection_id)["glz_generation"] for c in conns}
    wait_until(lambda: _images(server, gen) >= 10, 30, "ten images of the generation")
    late_tap, late = tap_for(server)
    late.wait_event("mark")
    late_conn = late_tap.display()
    clients.append(late)
    conns.append(late_conn)
    wait_until(lambda: display_stats(server, late_conn.connection_id)["glz_base"] is not None, 15, "the late joiner entering")
    base = display_stats(server, late_conn.connection_id)["glz_base"]
    wait_until(lambda: _images(server, gen) >= base + 20, 30, "twenty images more")
    server.pause()
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    assert_exact(server, clients, conns)
    for conn in conns:
        types = conn.image_types()
        assert types.get(ImageType.ZLIB_GLZ_RGB, 0) > 5, types
        s = conn.screen()
        assert s.glz_ids == list(range(len(s.glz_ids)))
    assert len(conns[2].screen().glz_ids) == len(conns[0].screen().glz_ids) - base > 0

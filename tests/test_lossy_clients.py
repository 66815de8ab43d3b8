"""JPEG, lossy regions and the lossless upgrade with real spice-gtk clients through wire taps.

spice-gtk decodes our JPEG; its pixels are compared with the server's framebuffer by
PSNR while an area is lossy, and exactly once the area was quiet long enough for the
lossless upgrade (`lossless_after`, a harness knob, holds the upgrade back while the
test looks at the lossy picture). The WAN client of the mixed test is made WAN by its
tap's shaped link, which the server measures itself.
"""

from __future__ import annotations

import numpy as np
from support.images import photo, psnr
from support.processes import as_rgb, wait_match, wait_until
from support.tapped import connect

from spice_twisted.wire.enums import ImageType, MsgDisplay

PHOTO = (20, 10, 260, 190)  # left, top, right, bottom: a 240x180 picture on the 333x217 screen


LOSSLESS = {
    ImageType.LZ4,
    ImageType.QUIC,
    ImageType.LZ_RGB,
    ImageType.LZ_PLT,
    ImageType.GLZ_RGB,
}  # the upgrade's lossless codec (QUIC for a photo)


def _photos(tmp_path, n: int) -> list[str]:
    left, top, right, bottom = PHOTO
    paths = []
    for seed in range(n):
        path = tmp_path / f"photo{seed}.npy"
        np.save(path, photo(bottom - top, right - left, seed))
        paths.append(str(path))
    return paths


def _region(box: tuple[int, int, int, int]) -> tuple[slice, slice]:
    left, top, right, bottom = box
    return slice(top, bottom), slice(left, right)


def _wait_lossy(client, fb: np.ndarray, box: tuple[int, int, int, int] = PHOTO) -> float:
    """Until the client shows `box` of the server's picture `fb` at 35 dB or better (it may
    still be on its way: "quiet" cannot tell), then that it is lossy, not exact."""
    r = _region(box)
    q = wait_until(lambda: (v := psnr(client.framebuffer()[r], fb[r])) >= 35 and v, 30, f"{box} at >= 35 dB")
    assert q < float("inf"), "exact: the area was not sent lossy"
    return q


def _wait_exact(client, fb: np.ndarray) -> None:
    wait_until(lambda: np.array_equal(client.framebuffer()[..., :3], fb[..., :3]), 30, "the client exact")


def _exact(server, clients, conns) -> None:
    # Polls: a client may not have drawn what is on its way yet ("quiet" cannot tell).
    wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=30)
    fb = server.framebuffer()
    for conn in conns:
        assert np.array_equal(conn.screen().fb[..., :3], fb[..., :3]), f"{conn}: the tap's decode differs"


def test_jpeg_is_good_while_the_display_changes_and_exact_after_it_is_quiet(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", "--jpeg-wan-compression", "always")
    server.command("lossless_after 60", "lossless_after")  # hold the upgrade while we look
    server.command("count_codecs", "count_codecs")
    taps, clients, conns = connect(server, tap_for, 2)
    marks = [c.mark() for c in conns]
    for p in _photos(tmp_path, 3):  # the display changes: three pictures in turn
        server.command(f"paste {p} {PHOTO[0]} {PHOTO[1]}", "paste")
        fb = server.framebuffer()
        for c in clients:
            _wait_lossy(c, fb)  # lossy, and good
    jpeg = [[d for d in conn.draws(m) if d.image_type == ImageType.JPEG] for conn, m in zip(conns, marks, strict=True)]
    assert len(jpeg[0]) == len(jpeg[1]) >= 3
    assert [d.payload for d in jpeg[0]] == [d.payload for d in jpeg[1]]  # the same bytes to both
    calls = server.command("codec_calls", "codec_calls")["calls"]
    assert calls["jpeg"] == len(jpeg[0])  # one encode for both clients
    server.command("lossless_after 0.3", "lossless_after")
    wait_until(
        lambda: all(any(d.image_type in LOSSLESS for d in conn.draws(m)) for conn, m in zip(conns, marks, strict=True)),
        15,
        "the lossless upgrade",
    )
    _exact(server, clients, conns)


def test_three_clients_one_on_a_slow_link_gets_jpeg_and_converges(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}")  # --jpeg-wan-compression auto
    server.command("lossless_after 60", "lossless_after")
    slow_tap, slow = tap_for(server)
    slow_tap.shape(rate=250_000, delay=0.05)  # 2 Mbit/s, 50 ms: a WAN
    slow.wait_event("mark")
    slow_conn = slow_tap.display()
    wait_until(lambda: any(c["link"]["wan"] for c in server.stats()["clients"]), 30, "the slow client judged WAN")
    _, fast, fast_conns = connect(server, tap_for, 2)
    clients, conns = [slow, *fast], [slow_conn, *fast_conns]
    marks = [c.mark() for c in conns]
    for p in _photos(tmp_path, 2):
        server.command(f"paste {p} {PHOTO[0]} {PHOTO[1]}", "paste")
        fb = server.framebuffer()
        for c in fast:
            _wait_exact(c, fb)  # exact throughout
        _wait_lossy(slow, fb)
    assert any(d.image_type == ImageType.JPEG for d in slow_conn.draws(marks[0]))
    for conn, m in zip(fast_conns, marks[1:], strict=True):
        assert not any(d.image_type == ImageType.JPEG for d in conn.draws(m))
    server.command("lossless_after 0.3", "lossless_after")
    wait_until(lambda: any(d.image_type in LOSSLESS for d in slow_conn.draws(marks[0])), 30, "the lossless upgrade")
    _wait_exact(slow, server.framebuffer())  # through the slow link
    _exact(server, clients, conns)


def test_a_moved_lossy_area_is_made_exact_too(spawn, tap_for, random_image, tmp_path):
    path, _ = random_image
    server = spawn.harness("--source", f"image:{path}", "--jpeg-wan-compression", "always")
    server.command("lossless_after 60", "lossless_after")
    taps, clients, conns = connect(server, tap_for, 1)
    server.command(f"paste {_photos(tmp_path, 1)[0]} {PHOTO[0]} {PHOTO[1]}", "paste")
    _wait_lossy(clients[0], server.framebuffer())
    mark = conns[0].mark()
    server.command("copy 20 10 140 100 200 110", "copy")  # lossy pixels move where there were none
    _wait_lossy(clients[0], server.framebuffer(), (200, 110, 320, 200))  # held lossy where it went
    assert MsgDisplay.COPY_BITS in [t for t, _ in conns[0].snapshot(mark)]
    server.command("lossless_after 0.3", "lossless_after")
    wait_until(lambda: any(d.image_type in LOSSLESS for d in conns[0].draws(mark)), 15, "the lossless upgrade")
    _exact(server, clients, conns)


def test_the_demo_window_dragged_and_its_log_scrolled_arrive_as_copy_bits_lossy_slide_included(spawn, tap_for):
    from spice_twisted.sources.demo import WELCOME
    from spice_twisted.sources.demo_window import SLIDE

    server = spawn.harness()  # the demo, running: the slideshow changes every 0.5 s
    server.command("lossless_after 60", "lossless_after")
    slow_tap, slow = tap_for(server)
    slow_tap.shape(rate=250_000, delay=0.05)
    slow.wait_event("mark")
    slow_conn = slow_tap.display()
    wait_until(lambda: any(c["link"]["wan"] for c in server.stats()["clients"]), 30, "the slow client judged WAN")
    _, fast, fast_conns = connect(server, tap_for, 2)
    clients, conns = [slow, *fast], [slow_conn, *fast_conns]
    wait_until(lambda: sum(d.image_type == ImageType.JPEG for d in slow_conn.draws()) >= 2, 30, "slides as JPEG on the slow link")
    server.pause()  # the ball, clock, log and slides stand still: input only from here
    for c in fast:
        c.wait_event("channel", channel="inputs", what="opened")
    marks = [c.mark() for c in conns]
    gx, gy, dx, dy = WELCOME.left + 120, WELCOME.top + 12, 240, 170
    driver = fast[0]
    driver.send(f"position {gx} {gy} 0")
    driver.send("press 1 1")
    for i in range(1, 9):
        driver.send(f"position {gx + dx * i // 8} {gy + dy * i // 8} 1")
    driver.send("release 1 0")
    wait_until(lambda: server.stats()["source_state"]["window"] == [WELCOME.left + dx, WELCOME.top + dy], 15, "the window moved")
    lines = server.stats()["source_state"]["log_lines"]
    for key in (0x23, 0x17, 0x1C):  # "hi", Enter: a line in the log, which scrolls
        fast[1].send(f"key {key}")
    wait_until(lambda: (st := server.stats()["source_state"])["log_lines"] > lines and not st["typed"], 15, "the typed line")
    server.command("flush", "flush")  # painted: what follows compares with the final picture
    for conn, m in zip(conns, marks, strict=True):
        conn.wait_for(
            lambda k, m=m: sum(t == MsgDisplay.COPY_BITS for t, _ in k.snapshot(m)) >= 2, what="the drag and the scroll as COPY_BITS"
        )
    fb = server.framebuffer()  # paused: this is what every client must end with
    for c in fast:
        _wait_exact(c, fb)
    sx, sy = WELCOME.left + dx + SLIDE.left, WELCOME.top + dy + SLIDE.top
    _wait_lossy(slow, fb, (sx, sy, sx + SLIDE.width, sy + SLIDE.height))  # the JPEG it got, moved by COPY_BITS
    server.command("lossless_after 0.3", "lossless_after")
    _wait_exact(slow, fb)
    _exact(server, clients, conns)

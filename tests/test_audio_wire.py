"""The playback channel on the wire (through a tap) and the demo's sounds, with real
spice-gtk clients: message order, multimedia times, VOLUME and MUTE."""

from __future__ import annotations

import struct
import time

from support.processes import wait_until

from spice_twisted.wire.enums import ChannelType, MsgMain, MsgPlayback

FRAME_MS = 10


def playback_messages(tap) -> list[tuple[int, bytes]]:
    conns = [c for c in tap.channels(ChannelType.PLAYBACK) if c.link_result == 0]
    return conns[0].snapshot() if conns else []


def test_playback_order_and_times_follow_the_main_channel_clock(spawn, tap_for, tmp_path) -> None:
    server = spawn.server("--disable-ticketing", "--audio-source", str(_tone(tmp_path)), "--playback-compression", "off")
    tap, client = tap_for(server, "--audio")
    main = wait_until(lambda: [c for c in tap.channels(ChannelType.MAIN) if c.snapshot()], what="main INIT")[0]
    seen_init = time.monotonic()
    init = next(body for t, body in main.snapshot() if t == MsgMain.INIT)
    mm0 = struct.unpack_from("<I", init, 24)[0]  # INIT's multi_media_time (7th u32)
    client.wait_event("playback-start", timeout=30)
    wait_until(lambda: sum(1 for t, _ in playback_messages(tap) if t == MsgPlayback.DATA) >= 200, timeout=60, what="200 frames")
    elapsed_ms = (time.monotonic() - seen_init) * 1000
    msgs = [(t, b) for t, b in playback_messages(tap) if t >= 100]  # not PING / SET_ACK
    types = [t for t, _ in msgs]
    # MODE first (raw), LATENCY (spice-gtk has the cap), then START, then the frames.
    assert types[:3] == [MsgPlayback.MODE, MsgPlayback.LATENCY, MsgPlayback.START], types[:5]
    assert struct.unpack_from("<H", msgs[0][1], 4)[0] == 1  # SPICE_AUDIO_DATA_MODE_RAW
    assert struct.unpack_from("<IHI", msgs[2][1]) == (2, 1, 48000)  # START: stereo, S16, 48 kHz
    assert set(types[3:]) == {MsgPlayback.DATA}
    times = [struct.unpack_from("<I", b)[0] for t, b in msgs if t == MsgPlayback.DATA]
    # On the main channel's clock: after the INIT's time and not ahead of the time since.
    assert all(mm0 <= t <= mm0 + elapsed_ms + 1000 for t in times), (mm0, times[:3], times[-1], elapsed_ms)
    # Never backwards, and 10 ms of time per 10 ms frame on average.
    assert all(b >= a for a, b in zip(times, times[1:], strict=False))
    span = times[-1] - times[0]
    assert 0.5 * FRAME_MS * (len(times) - 1) <= span <= 2 * FRAME_MS * (len(times) - 1) + 1000


def test_volume_and_mute_reach_the_client(spawn, tap_for, tmp_path) -> None:
    server = spawn.harness("--disable-ticketing", "--audio-source", str(_tone(tmp_path)), "--playback-compression", "off")
    tap, client = tap_for(server, "--audio")
    client.wait_event("playback-start", timeout=30)
    server.command("audio_volume 1000 40000", "audio_volume")
    server.command("audio_mute 1", "audio_mute")
    r = wait_until(lambda: (lambda a: a if a["mute"] else None)(client.command("audio", "audio")), what="mute on the client")
    assert r["nchannels"] == 2
    vol = next(b for t, b in playback_messages(tap) if t == MsgPlayback.VOLUME)
    assert vol == struct.pack("<BHH", 2, 1000, 40000)
    server.command("audio_mute 0", "audio_mute")
    wait_until(lambda: not client.command("audio", "audio")["mute"], what="mute off on the client")
    # A client that joins later hears the levels as they are now, before any sound.
    late_tap, late = tap_for(server, "--audio")
    late.wait_event("playback-start", timeout=30)
    types = [t for t, _ in playback_messages(late_tap) if t >= 100]
    start = types.index(MsgPlayback.START)
    assert MsgPlayback.VOLUME in types[:start] and MsgPlayback.MUTE in types[:start]


def test_demo_chimes_on_a_click_and_plays_a_tone_while_f8_is_on(spawn) -> None:
    server = spawn.server("--disable-ticketing")
    client = spawn.client("--port", str(server.port), "--audio")
    client.wait_for(lambda e: e.get("event") == "channel" and e.get("channel") == "inputs" and e.get("what") == "opened", timeout=30)
    client.wait_for(lambda e: e.get("event") == "channel" and e.get("channel") == "playback" and e.get("what") == "opened", timeout=30)
    assert client.command("audio", "audio")["frames"] == 0  # silence: no stream at all
    client.send("position 900 700 0")
    client.send("press 1 1")
    client.send("release 1 0")
    client.wait_event("playback-start", timeout=30)
    client.wait_event("playback-stop", timeout=30)  # a chime is short
    chime = client.command("audio", "audio")
    assert 5 <= chime["frames"] <= 40  # 120 ms of chime in 10 ms frames (and no more)
    client.send("key 0x42")  # F8: tone on
    wait_until(lambda: client.command("audio", "audio")["frames"] >= chime["frames"] + 100, timeout=30, what="a second of tone")
    assert client.command("audio", "audio")["stops"] == 1  # it goes on while the toggle is on
    client.send("key 0x42")  # off again
    wait_until(lambda: client.command("audio", "audio")["stops"] == 2, timeout=30, what="the tone stops")


def _tone(tmp_path):
    import wave

    import numpy as np

    t = np.arange(48000) / 48000
    pcm = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2"), 2)
    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.tobytes())
    return path


def test_playback_over_tls(spawn, certs, tmp_path) -> None:
    from support.processes import free_port

    server = spawn.server(
        "--disable-ticketing",
        "--cert",
        str(certs["cert"]),
        "--key",
        str(certs["key"]),
        "--audio-source",
        str(_tone(tmp_path)),
        tls_port=free_port(),
    )
    client = spawn.client("--port", "0", "--tls-port", str(server.tls_port), "--ca-file", str(certs["ca"]), "--tls-only", "--audio")
    client.wait_event("playback-start", timeout=30)
    wait_until(lambda: client.command("audio", "audio")["frames"] >= 100, timeout=30, what="a second of sound over TLS")

"""Recording with real spice-gtk clients (SpiceRecordChannel send_data): only the primary
is heard, into --record-to; when it leaves, the next client records. Raw PCM is written
exactly (clients with SPICE_DISABLE_OPUS); a client that records in Opus is decoded and
heard as what it sent, within the codec's loss."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from support.processes import GtkClient, wait_until


def wav_pcm(path: Path) -> bytes:
    try:
        with wave.open(str(path), "rb") as w:
            return w.readframes(w.getnframes())
    except (EOFError, wave.Error):
        return b""  # not written yet


def noise(tmp: Path, name: str, seed: int, seconds: float = 0.5) -> tuple[Path, bytes]:
    pcm = np.random.default_rng(seed).integers(-20000, 20000, size=(int(48000 * seconds), 2)).astype("<i2").tobytes()
    path = tmp / name
    path.write_bytes(pcm)
    return path, pcm


def client(spawn, port: int, opus: bool = False) -> GtkClient:
    c = spawn.client("--port", str(port), "--audio", *(() if opus else ("--no-opus",)))
    c.wait_for(lambda e: e.get("event") == "channel" and e.get("channel") == "record" and e.get("what") == "opened", timeout=30)
    return c


def test_the_primary_records_and_the_recording_moves_when_it_leaves(spawn, tmp_path: Path) -> None:
    out = tmp_path / "recorded.wav"
    server = spawn.server("--disable-ticketing", "--record-to", str(out))
    first = client(spawn, server.port)
    first.wait_event("record-start", timeout=30)
    second = client(spawn, server.port)
    # The second is not the primary: it is never asked to record, and what it sends anyway
    # is not written.
    pcm_b1_path, pcm_b1 = noise(tmp_path, "b1.raw", 2)
    assert second.command(f"record_send {pcm_b1_path} 20", "record_send", timeout=30)["ok"]
    pcm_a_path, pcm_a = noise(tmp_path, "a.raw", 1)
    assert first.command(f"record_send {pcm_a_path} 20", "record_send", timeout=30)["ok"]
    wait_until(lambda: len(wav_pcm(out)) >= len(pcm_a), timeout=30, what="the primary's samples in the file")
    assert wav_pcm(out) == pcm_a
    assert second.command("audio", "audio")["record_starts"] == 0
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 48000)
    # The primary leaves: the second is asked to record, and is heard.
    first.close()
    second.wait_event("record-start", timeout=30)
    pcm_b2_path, pcm_b2 = noise(tmp_path, "b2.raw", 3)
    assert second.command(f"record_send {pcm_b2_path} 20", "record_send", timeout=30)["ok"]
    wait_until(lambda: len(wav_pcm(out)) >= len(pcm_a) + len(pcm_b2), timeout=30, what="the new primary's samples")
    assert wav_pcm(out) == pcm_a + pcm_b2


def test_a_client_not_asked_to_record_is_not_heard_and_bad_record_input_closes_only_it(spawn, tmp_path: Path) -> None:
    import struct

    from support.rawclient import _main_session, closed_by_peer, link

    from spice_twisted.wire.enums import ChannelType, LinkError, MsgcRecord

    out = tmp_path / "recorded.wav"
    server = spawn.harness("--disable-ticketing", "--record-to", str(out))
    primary = client(spawn, server.port)
    primary.wait_event("record-start", timeout=30)
    # A client of our own that records without being asked: it is not written.
    main, sid = _main_session(server.port)
    rec, result = link(server.port, channel=ChannelType.RECORD, connection_id=sid)
    assert result == LinkError.OK

    def send(msg: int, body: bytes) -> None:
        rec.sendall(struct.pack("<HI", msg, len(body)) + body)

    send(MsgcRecord.MODE, struct.pack("<IH", 0, 77))  # a mode that does not exist
    send(MsgcRecord.MODE, struct.pack("<IH", 0, 1))  # raw
    send(MsgcRecord.DATA, struct.pack("<I", 0) + b"\x55\xaa" * 2000)
    # Another that says Opus and sends what is no Opus packet: closed, alone.
    rec2, result = link(server.port, channel=ChannelType.RECORD, connection_id=sid)
    assert result == LinkError.OK
    rec2.sendall(struct.pack("<HI", MsgcRecord.MODE, 6) + struct.pack("<IH", 0, 3))
    rec2.sendall(struct.pack("<HI", MsgcRecord.DATA, 54) + struct.pack("<I", 0) + b"\xff" * 50)
    assert closed_by_peer(rec2, timeout=20)

    def received() -> int:
        ours = [c for c in server.stats()["clients"] if c["id"] == sid]
        return sum(ch["messages_received"] for c in ours for ch in c["channels"] if ch["channel"] == "record")

    wait_until(lambda: received() >= 3, what="our three record messages handled")
    # A record message over 32 KiB closes that connection, before its body is read.
    rec.sendall(struct.pack("<HI", MsgcRecord.DATA, 40 * 1024) + b"\0" * 64)
    assert closed_by_peer(rec, timeout=20)
    # The primary goes on recording, and is the only one heard.
    pcm_path, pcm = noise(tmp_path, "a.raw", 4)
    assert primary.command(f"record_send {pcm_path} 20", "record_send", timeout=30)["ok"]
    wait_until(lambda: len(wav_pcm(out)) >= len(pcm), timeout=30, what="the primary's samples in the file")
    assert wav_pcm(out) == pcm
    main.close()
    rec.close()


def test_a_primary_recording_in_opus_is_decoded_into_the_file(spawn, tmp_path: Path) -> None:
    out = tmp_path / "recorded.wav"
    server = spawn.harness("--disable-ticketing", "--record-to", str(out))
    primary = client(spawn, server.port, opus=True)
    primary.wait_event("record-start", timeout=30)
    t = np.arange(48000) / 48000  # 1 s of a 440 Hz tone, a little louder on the left
    tone = np.stack([np.sin(2 * np.pi * 440 * t) * 12000, np.sin(2 * np.pi * 440 * t) * 9000], axis=1).astype("<i2")
    path = tmp_path / "tone.raw"
    path.write_bytes(tone.tobytes())
    assert primary.command(f"record_send {path} 20", "record_send", timeout=30)["ok"]
    # Opus sends whole 10 ms frames: all but the last partial one arrive.
    wait_until(lambda: len(wav_pcm(out)) >= len(tone.tobytes()) - 480 * 4, timeout=30, what="the decoded tone in the file")
    got = np.frombuffer(wav_pcm(out), dtype="<i2").reshape(-1, 2).astype(float)
    assert len(got) <= len(tone) + 480  # decoded, not the packets' bytes
    assert not np.array_equal(got[: len(tone)], tone[: len(got)])  # lossy: it did go through Opus
    mode = [ch["audio"]["mode"] for c in server.stats()["clients"] for ch in c["channels"] if ch["channel"] == "record"]
    # The codec delays the signal by a few ms: the best lag within 20 ms lines them up.
    ref = tone.astype(float)
    n = len(got) - 960
    best = max((float(np.corrcoef(got[lag : lag + n, 0], ref[:n, 0])[0, 1]), lag) for lag in range(0, 960))
    assert best[0] > 0.95, (best, mode)
    assert mode == ["opus"]
    lag = best[1]
    left, right = np.abs(got[lag : lag + n]).mean(axis=0)
    assert 1.2 < left / right < 1.45  # the channels kept apart (12000 / 9000)

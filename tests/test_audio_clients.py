"""Playback to every client, with real spice-gtk clients (SpicePlaybackChannel signals).

The server loops a WAV file of random samples (no two 10 ms frames alike), so each
frame a client received says where in the file it came from: a client's PCM is the
file's, contiguous, when it missed nothing, and shows the frames it dropped when not.
"""

from __future__ import annotations

import os
import signal
import time
import wave
from pathlib import Path

import numpy as np
import pytest
from support.processes import GtkClient, wait_until

FRAME_BYTES = 480 * 2 * 2  # 10 ms of 48 kHz 16-bit stereo: the server's frame
SECONDS = 10


def write_noise(path: Path, seconds: int) -> bytes:
    """A WAV file of `seconds` of random stereo samples at 48 kHz; returns its PCM."""
    pcm = np.random.default_rng(21).integers(-20000, 20000, size=(48000 * seconds, 2)).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm)
    return pcm


@pytest.fixture
def noise_wav(tmp_path: Path) -> tuple[Path, bytes]:
    """A WAV file of SECONDS of random stereo samples at 48 kHz, and its PCM."""
    path = tmp_path / "noise.wav"
    return path, write_noise(path, SECONDS)


def frame_positions(received: bytes, source: bytes) -> list[int]:
    """Where in `source` each received frame comes from (asserting every one does)."""
    index = {source[i : i + FRAME_BYTES]: i // FRAME_BYTES for i in range(0, len(source), FRAME_BYTES)}
    assert len(received) % FRAME_BYTES == 0, f"{len(received)} bytes is not a whole number of frames"
    out = []
    for i in range(0, len(received), FRAME_BYTES):
        pos = index.get(received[i : i + FRAME_BYTES])
        assert pos is not None, f"frame {i // FRAME_BYTES} received is not a frame of the source"
        out.append(pos)
    return out


def missed(positions: list[int], nframes: int) -> int:
    """Frames skipped between consecutive received frames (the source loops)."""
    return sum((b - a - 1) % nframes for a, b in zip(positions, positions[1:], strict=False))


def pcm_of(client: GtkClient, tmp: Path) -> bytes:
    path = tmp / f"pcm-{client.proc.pid}-{time.monotonic_ns()}.raw"
    client.command(f"audio_dump {path}", "audio_dump")
    return path.read_bytes()


def audio_client(spawn, port: int) -> GtkClient:
    c = spawn.client("--port", str(port), "--audio")
    c.wait_event("playback-start", timeout=30)
    return c


def test_two_clients_hear_the_same_samples_the_source_played(spawn, noise_wav, tmp_path: Path) -> None:
    path, source = noise_wav
    server = spawn.server("--disable-ticketing", "--audio-source", str(path), "--playback-compression", "off")
    a, b = audio_client(spawn, server.port), audio_client(spawn, server.port)
    start = a.wait_event("playback-start")
    assert (start["format"], start["channels"], start["rate"]) == (1, 2, 48000)  # S16, stereo, 48 kHz
    wait_until(lambda: min(c.command("audio", "audio")["frames"] for c in (a, b)) >= 300, timeout=60, what="3 s of sound each")
    nframes = len(source) // FRAME_BYTES
    pa, pb = pcm_of(a, tmp_path), pcm_of(b, tmp_path)
    pos_a, pos_b = frame_positions(pa, source), frame_positions(pb, source)
    # Each heard the file in order, missing nothing...
    assert missed(pos_a, nframes) == 0 and missed(pos_b, nframes) == 0
    # ... and where both heard a frame, they heard the same samples (b joined later).
    shared = set(pos_a) & set(pos_b)
    assert len(shared) >= 200
    for p in shared:
        fa = pa[pos_a.index(p) * FRAME_BYTES :][:FRAME_BYTES]
        fb = pb[pos_b.index(p) * FRAME_BYTES :][:FRAME_BYTES]
        assert fa == fb == source[p * FRAME_BYTES : (p + 1) * FRAME_BYTES]


def test_a_client_that_stops_reading_drops_frames_the_other_keeps_all(spawn, tmp_path: Path) -> None:
    # Longer than any stop below: a gap of a whole loop of the file would look like no gap.
    path = tmp_path / "noise.wav"
    source = write_noise(path, 120)
    server = spawn.harness("--disable-ticketing", "--audio-source", str(path), "--playback-compression", "off")
    steady, stopped = audio_client(spawn, server.port), audio_client(spawn, server.port)
    wait_until(lambda: stopped.command("audio", "audio")["frames"] >= 50, timeout=30, what="half a second of sound")
    os.kill(stopped.proc.pid, signal.SIGSTOP)  # it reads nothing: its socket buffers fill
    try:
        before = steady.command("audio", "audio")["frames"]
        # 8 s of sound is usually more than the kernel buffers of a stopped reader hold at
        # 192 KB/s; where they hold more (receive-buffer autotuning), go on until the server
        # has had to drop (its count only says when to resume; the client's gaps are the check).
        wait_until(lambda: steady.command("audio", "audio")["frames"] >= before + 800, timeout=60, what="8 s more of sound")

        def server_dropped() -> int:
            return max(c["playback"]["frames_dropped"] for c in server.stats()["clients"])

        wait_until(lambda: server_dropped() >= 250, timeout=90, what="the server dropping the stopped client's frames")
    finally:
        os.kill(stopped.proc.pid, signal.SIGCONT)
    after = stopped.command("audio", "audio")["frames"]
    wait_until(lambda: stopped.command("audio", "audio")["frames"] >= after + 100, timeout=30, what="the stopped one hears again")
    nframes = len(source) // FRAME_BYTES
    pos_steady = frame_positions(pcm_of(steady, tmp_path), source)
    pos_stopped = frame_positions(pcm_of(stopped, tmp_path), source)
    assert missed(pos_steady, nframes) == 0, "the steady client lost frames while the other was stopped"
    dropped = missed(pos_stopped, nframes)
    assert dropped >= 200, f"the stopped client missed only {dropped} frames"
    # What it did get is whole frames of the file, in order (checked by frame_positions).
    # The server's per-client stats tell the same story (taken after the dumps: they count
    # at least what the clients missed).
    by_sid = {c["id"]: c["playback"] for c in server.stats()["clients"]}
    assert len(by_sid) == 2
    counts = sorted(by_sid.values(), key=lambda p: p["frames_dropped"])
    assert counts[0]["frames_dropped"] == 0 and counts[1]["frames_dropped"] >= dropped
    assert {p["mode"] for p in counts} == {"raw"}
    assert counts[0]["frames_sent"] >= len(pos_steady)


def best_correlation(decoded: np.ndarray, source: np.ndarray) -> float:
    """The highest normalised correlation of `decoded` (mono) against the looping `source`
    (mono) at any shift: Opus is lossy and delays, but what it plays is the source."""
    n = len(source)
    d = decoded - decoded.mean()
    s = source - source.mean()
    # Circular cross-correlation of a source-long window by FFT.
    win = np.zeros(n)
    win[: len(d)] = d
    xc = np.fft.irfft(np.fft.rfft(s) * np.conj(np.fft.rfft(win)), n)
    shift = int(np.argmax(xc))
    aligned = np.roll(s, -shift)[: len(d)]
    return float(np.dot(aligned, d) / (np.linalg.norm(aligned) * np.linalg.norm(d)))


def test_opus_client_hears_the_source_and_each_frame_is_encoded_once_per_mode(spawn, tmp_path: Path) -> None:
    # A tonal source (Opus keeps tones, not white noise, close to the original).
    t = np.arange(48000 * 2) / 48000
    mono = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1000 * t) * (1 + np.sin(2 * np.pi * 1.5 * t)) / 2
    source = (mono * 32767).astype("<i2")
    path = tmp_path / "tones.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(np.repeat(source, 2).tobytes())
    server = spawn.harness("--disable-ticketing", "--audio-source", str(path))
    if not server.stats()["audio"]["opus_available"]:
        pytest.fail("no Opus encoder (PyAV with libopus): scripts/setup.sh installs it")
    raw = spawn.client("--port", str(server.port), "--audio", "--no-opus")
    opus = [spawn.client("--port", str(server.port), "--audio") for _ in range(2)]
    for c in (raw, *opus):
        c.wait_event("playback-start", timeout=30)
    modes = wait_until(
        lambda: sorted(c["playback"]["mode"] for c in server.stats()["clients"] if c["playback"]) or None, what="playback channels"
    )
    assert modes == ["opus", "opus", "raw"]
    wait_until(lambda: min(c.command("audio", "audio")["frames"] for c in (raw, *opus)) >= 200, timeout=60, what="2 s of sound")
    # The raw client gets the file's samples exactly; the Opus ones what spice-gtk decoded.
    got_raw = pcm_of(raw, tmp_path)
    stereo = np.repeat(source, 2).tobytes()
    assert missed(frame_positions(got_raw, stereo), len(stereo) // FRAME_BYTES) == 0
    for c in opus:
        decoded = np.frombuffer(pcm_of(c, tmp_path), dtype="<i2").reshape(-1, 2)
        assert len(decoded) >= 48000
        window = decoded[len(decoded) // 2 - 12000 : len(decoded) // 2 + 12000, 0].astype(float)  # 0.5 s, left
        corr = best_correlation(window, source.astype(float))
        assert corr > 0.9, f"decoded Opus correlates only {corr:.3f} with the source"
    # One encode per frame per mode, however many clients use the mode.
    audio = server.stats()["audio"]
    assert 0 < audio["encodes"]["opus"] <= audio["frames"]
    assert 0 < audio["encodes"]["raw"] <= audio["frames"]

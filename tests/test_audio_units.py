"""Audio pieces alone: WAV files as sources, the record sink, and option errors."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest
from test_twistd_options import run_twistd

from spice_twisted.audio.playback import FRAME_BYTES, FREQUENCY
from spice_twisted.audio.record import WavSink
from spice_twisted.sources.audio import DemoSounds, WavLoop


def write_wav(path: Path, samples: np.ndarray, rate: int, width: int = 2) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(samples.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def test_a_stereo_48k_file_loops_sample_exact(tmp_path: Path) -> None:
    pcm = np.arange(-1500, 1500, dtype="<i2").reshape(-1, 2)  # 1500 frames: not a multiple of a frame
    src = WavLoop(str(write_wav(tmp_path / "a.wav", pcm, 48000)))
    out = b"".join(src.next_frame() for _ in range(10))
    assert all(len(out[i : i + FRAME_BYTES]) == FRAME_BYTES for i in range(0, len(out), FRAME_BYTES))
    assert out == (pcm.tobytes() * 13)[: len(out)]


def test_a_mono_22k_file_is_played_as_48k_stereo(tmp_path: Path) -> None:
    t = np.arange(22050) / 22050
    mono = (np.sin(2 * np.pi * 441 * t) * 10000).astype("<i2").reshape(-1, 1)
    src = WavLoop(str(write_wav(tmp_path / "m.wav", mono, 22050)))
    got = np.frombuffer(src.pcm, dtype="<i2").reshape(-1, 2)
    assert abs(len(got) - FREQUENCY) <= 1  # one second
    assert (got[:, 0] == got[:, 1]).all()
    # Still a 441 Hz tone: the strongest frequency of one second is 441.
    assert int(np.argmax(np.abs(np.fft.rfft(got[:, 0].astype(float))))) == 441


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: write_wav(p, np.zeros((10, 2), dtype=np.uint8), 48000, width=1), "only 16-bit PCM"),
        (lambda p: (p.write_bytes(b"not a wav file at all"), p)[1], "not a readable WAV file"),
        (lambda p: write_wav(p, np.zeros((0, 2), dtype="<i2"), 48000), "no samples"),
        (lambda p: p, "not a readable WAV file"),  # no such file
    ],
)
def test_unplayable_files_are_refused_with_a_reason(tmp_path: Path, make, message) -> None:
    path = make(tmp_path / "x.wav")
    with pytest.raises(ValueError, match=message):
        WavLoop(str(path))


def test_audio_options_give_clear_errors(tmp_path: Path) -> None:
    r = run_twistd("--audio-source", str(tmp_path / "missing.wav"), cwd=tmp_path)
    assert r.returncode != 0 and "--audio-source:" in r.stdout + r.stderr and "Traceback" not in r.stdout + r.stderr
    r = run_twistd("--record-to", str(tmp_path / "no" / "dir.wav"), cwd=tmp_path)
    assert r.returncode != 0 and "--record-to:" in r.stdout + r.stderr
    r = run_twistd("--playback-compression", "maybe", cwd=tmp_path)
    assert r.returncode != 0 and "expected on or off" in r.stdout + r.stderr


def test_demo_sounds_are_silent_until_asked(tmp_path: Path) -> None:
    s = DemoSounds()
    assert s.next_frame() is None
    s.click()
    chime = [s.next_frame() for _ in range(20)]
    assert chime[0] is not None and len(chime[0]) == FRAME_BYTES and any(chime[0])
    assert chime[-1] is None  # 120 ms later the chime is over
    s.toggle_tone()
    assert all(s.next_frame() is not None for _ in range(300))


def test_the_record_sink_writes_whole_samples_to_a_valid_wav(tmp_path: Path) -> None:
    sink = WavSink(str(tmp_path / "r.wav"))
    sink.write(b"\x01\x00\x02\x00\x03")  # one whole stereo sample and a torn byte
    with wave.open(str(tmp_path / "r.wav"), "rb") as w:  # readable while still being written
        assert w.readframes(w.getnframes()) == b"\x01\x00\x02\x00"
    sink.close()

"""Units of the sound plumbing that have no socket: the VM helper's sound frames (hostile
ones refused) and the re-framing of a stream in another format into our 10 ms frames."""

from __future__ import annotations

import numpy as np
import pytest

from spice_twisted.audio.convert import Converter, Reframer
from spice_twisted.audio.playback import FRAME_BYTES
from spice_twisted.sources import vm_protocol as p


@pytest.mark.parametrize(
    "msg",
    [
        p.PlaybackStart(2, 48000),
        p.PlaybackStart(1, 44100),
        p.PlaybackData(b"\x01\x02" * 960),
        p.PlaybackStop(),
        p.RecordStart(2, 48000),
        p.RecordStop(),
        p.PlaybackVolume((0, 0xFFFF)),
        p.PlaybackMute(True),
    ],
)
def test_the_helpers_sound_frames_round_trip(msg) -> None:
    assert p.Decoder(p.HELPER_TYPES).receive_data(p.encode(msg)) == [msg]


def test_the_sources_microphone_frame_round_trips_and_each_side_takes_only_its_own() -> None:
    mic = p.RecordData(b"\x00\x10" * 100)
    assert p.Decoder(p.SOURCE_TYPES).receive_data(p.encode(mic)) == [mic]
    with pytest.raises(p.ProtocolError, match="unexpected frame type 112"):
        p.Decoder(p.HELPER_TYPES).receive_data(p.encode(mic))
    with pytest.raises(p.ProtocolError, match="unexpected frame type 49"):
        p.Decoder(p.SOURCE_TYPES).receive_data(p.encode(p.PlaybackData(b"ab")))


@pytest.mark.parametrize(
    "frame, error",
    [
        (p.HEADER.pack(48, 5) + bytes([3]) + (48000).to_bytes(4, "little"), "3 channels"),
        (p.HEADER.pack(48, 5) + bytes([2]) + (400).to_bytes(4, "little"), "at 400 Hz"),
        (p.HEADER.pack(48, 4) + bytes(4), "expected 5"),
        (p.HEADER.pack(49, 3) + b"abc", "not 16-bit PCM"),
        (p.HEADER.pack(49, p.MAX_PCM + 2) + bytes(p.MAX_PCM + 2), "not 16-bit PCM"),
        (p.HEADER.pack(50, 1) + b"x", "expected none"),
        (p.HEADER.pack(53, 4) + bytes([2, 0, 0, 0]), "do not hold"),
        (p.HEADER.pack(53, 35) + bytes([17]) + bytes(34), "do not hold"),
        (p.HEADER.pack(54, 1) + bytes([2]), "out of range"),
    ],
)
def test_bad_sound_frames_are_refused(frame: bytes, error: str) -> None:
    with pytest.raises(p.ProtocolError, match=error):
        p.Decoder(p.HELPER_TYPES).receive_data(frame)
    with pytest.raises(ValueError):
        p.encode(p.PlaybackData(b"abc"))


def test_48k_stereo_passes_untouched_in_whole_frames_whatever_the_chunks() -> None:
    pcm = np.random.default_rng(1).integers(-30000, 30000, size=48000 * 2).astype("<i2").tobytes()
    r, out, i = Reframer(2, 48000), [], 0
    for n in np.random.default_rng(2).integers(1, 5000, size=1000):  # torn samples too
        out += r.feed(pcm[i : i + int(n)])
        i += int(n)
        if i >= len(pcm):
            break
    assert all(len(f) == FRAME_BYTES for f in out)
    assert b"".join(out) == pcm[: len(out) * FRAME_BYTES] and len(out) == len(pcm) // FRAME_BYTES
    assert r.flush() is None  # 1 s is exactly 100 frames


def test_another_rate_and_mono_become_48k_stereo_with_no_click_between_chunks() -> None:
    rate = 44100
    t = np.arange(rate) / rate
    mono = np.round(10000 * np.sin(2 * np.pi * 1000 * t)).astype("<i2").tobytes()
    whole = b"".join(Reframer(1, rate).feed(mono))
    r, chunked, i = Reframer(1, rate), b"", 0
    for n in np.random.default_rng(3).integers(1, 3000, size=1000):
        chunked += b"".join(r.feed(mono[i : i + int(n)]))
        i += int(n)
        if i >= len(mono):
            break
    a, b = (np.frombuffer(x, dtype="<i2").astype(np.int32) for x in (chunked, whole))
    assert len(a) == len(b) and np.abs(a - b).max() <= 1  # the chunking changes nothing (but float rounding)
    y = np.frombuffer(whole, dtype="<i2").reshape(-1, 2)
    assert (y[:, 0] == y[:, 1]).all() and abs(len(y) - 48000) <= 480
    ref = 10000 * np.sin(2 * np.pi * 1000 * np.arange(len(y)) / 48000)
    assert np.abs(y[:, 0] - ref).max() < 40  # linear interpolation of a 1 kHz sine at 44.1 kHz


def test_the_microphone_converts_to_what_the_vm_asked() -> None:
    stereo = np.stack([np.arange(0, 9600, 2), np.arange(1, 9601, 2)], axis=1).astype("<i2").tobytes()
    out = np.frombuffer(Converter(2, 48000, 1, 24000).convert(stereo), dtype="<i2")
    assert len(out) == 2400 and abs(int(out[100]) - 400) <= 2  # mono (the mean), every other sample


def _through(skipper_chunks: list[bytes]) -> bytes:
    from spice_twisted.sources.audio_monitor import WavHeaderSkipper

    s, out = WavHeaderSkipper(), b""
    for c in skipper_chunks:
        out += c if s.done else s.feed(c)
    return out


def test_a_wav_header_before_the_samples_is_dropped_wherever_the_reads_cut_it() -> None:
    import io
    import wave

    pcm = np.random.default_rng(4).integers(-30000, 30000, size=4000).astype("<i2").tobytes()
    f = io.BytesIO()
    with wave.open(f, "wb") as w:  # what libsndfile writes has the same layout: RIFF, fmt, data
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm)
    stream = f.getvalue()
    for cut in (1, 3, 4, 5, 40, 43, 44, 45, 1000):
        assert _through([stream[i : i + cut] for i in range(0, len(stream), cut)]) == pcm
    # raw samples (a recorder with --raw) pass untouched, even ones that begin like "RIF"
    assert _through([pcm[:2], pcm[2:]]) == pcm
    assert _through([b"RI", b"Fx" + pcm]) == b"RIFx" + pcm


def test_the_stream_header_for_pw_play_is_a_wav_header() -> None:
    import io
    import wave

    from spice_twisted.sources.audio_monitor import wav_stream_header

    with wave.open(io.BytesIO(wav_stream_header() + bytes(16))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 48000)

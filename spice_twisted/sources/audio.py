"""Audio sources: what the playback service plays, through one small interface.

An `AudioSource` is started with the playback service and the reactor and calls
`playback.frame(pcm)` itself. Most sources make sound at a steady rate and
share `PacedAudioSource`: every TICK it asks `next_frame()` for as many 10 ms frames as
the wall clock says are due (so a late reactor turn never slows the sound down), at most
MAX_CATCH_UP at once (a reactor that stalled longer skips the rest, as a sound card
would). `next_frame()` returning None means silence: the stream stops (STOP) and starts
again (START) with the next sound.
"""

from __future__ import annotations

import math
import time
import wave
from typing import Any

import numpy as np
from twisted.internet import task

from ..audio.playback import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, FRAME_SECONDS, FREQUENCY, PlaybackService
from ..audio.record import RecordSink

TICK = 0.02  # seconds between two turns of a paced source (two frames a turn)
MAX_CATCH_UP = 20  # frames produced in one tick at most (200 ms)


class AudioSource:
    """What every audio source offers the server."""

    name = "audio"

    def start(self, playback: PlaybackService, reactor: Any) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def record_sink(self) -> RecordSink | None:
        """Where the primary client's microphone goes when no --record-to is given (a VM
        upstream), or None: nobody is asked to record."""
        return None


class PacedAudioSource(AudioSource):
    def __init__(self) -> None:
        self.playback: PlaybackService | None = None
        self._loop: task.LoopingCall | None = None
        self._t0 = 0.0
        self._due = 0  # frames the clock has asked for since _t0
        self.frames = 0
        self.skipped = 0

    def next_frame(self) -> bytes | None:
        raise NotImplementedError

    def start(self, playback: PlaybackService, reactor: Any) -> None:
        self.playback = playback
        self._t0 = time.monotonic()
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = reactor
        self._loop.start(TICK, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self.playback is not None:
            self.playback.stop()

    def tick(self) -> None:
        assert self.playback is not None
        due = int((time.monotonic() - self._t0) / FRAME_SECONDS)
        n, self._due = due - self._due, due
        if n > MAX_CATCH_UP:
            self.skipped += n - MAX_CATCH_UP
            n = MAX_CATCH_UP
        for _ in range(n):
            pcm = self.next_frame()
            if pcm is None:
                self.playback.stop()
                return
            self.frames += 1
            self.playback.frame(pcm)


def _to_stereo_48k(samples: np.ndarray, channels: int, rate: int) -> np.ndarray:
    """(n, channels) int16 -> (m, 2) int16 at FREQUENCY (linear resampling: good enough
    for a looped sound file, and no extra dependency)."""
    if channels == 1:
        samples = np.repeat(samples, 2, axis=1)
    elif channels > 2:
        samples = samples[:, :2]
    if rate != FREQUENCY and len(samples):
        n_out = max(1, round(len(samples) * FREQUENCY / rate))
        x_in = np.arange(len(samples)) / rate
        x_out = np.arange(n_out) / FREQUENCY
        samples = np.stack([np.interp(x_out, x_in, samples[:, c]) for c in range(2)], axis=1)
        samples = np.clip(np.round(samples), -32768, 32767).astype(np.int16)
    return np.ascontiguousarray(samples, dtype="<i2")


class WavLoop(PacedAudioSource):
    """`--audio-source FILE.wav`: a 16-bit PCM WAV file, played in a loop. The file is
    read once at start-up (as 48 kHz stereo): a file larger than MAX_WAV_BYTES is refused."""

    name = "wav"
    MAX_WAV_BYTES = 64 << 20

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        try:
            with wave.open(path, "rb") as w:
                if w.getcomptype() != "NONE" or w.getsampwidth() != 2:
                    raise ValueError(f"{path}: only 16-bit PCM WAV files can be played")
                channels, rate, n = w.getnchannels(), w.getframerate(), w.getnframes()
                if n * channels * 2 > self.MAX_WAV_BYTES:
                    raise ValueError(f"{path}: larger than {self.MAX_WAV_BYTES >> 20} MiB of samples")
                raw = w.readframes(n)
        except (OSError, EOFError, wave.Error) as exc:
            raise ValueError(f"{path}: not a readable WAV file ({exc})") from None
        if not raw:
            raise ValueError(f"{path}: no samples")
        samples = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
        self.pcm = _to_stereo_48k(samples, channels, rate).tobytes()
        self._pos = 0

    def next_frame(self) -> bytes:
        pcm, pos, out = self.pcm, self._pos, bytearray()
        while len(out) < FRAME_BYTES:
            take = min(FRAME_BYTES - len(out), len(pcm) - pos)
            out += pcm[pos : pos + take]
            pos = (pos + take) % len(pcm)
        self._pos = pos
        return bytes(out)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "seconds": len(self.pcm) / (FREQUENCY * CHANNELS * 2)}


class DemoSounds(PacedAudioSource):
    """The demo's sounds: a steady tone while `tone` is on, a short chime on each click."""

    name = "demo-sounds"
    TONE_HZ = 440.0
    CHIME_HZ = 880.0
    CHIME_SECONDS = 0.12
    LEVEL = 0.2

    def __init__(self) -> None:
        super().__init__()
        self.tone = False
        self._phase = 0  # samples of tone played (so the sine never jumps)
        self._chimes: list[int] = []  # samples played of each chime still sounding

    def toggle_tone(self) -> bool:
        self.tone = not self.tone
        return self.tone

    def click(self) -> None:
        if len(self._chimes) < 8:
            self._chimes.append(0)

    def next_frame(self) -> bytes | None:
        if not self.tone and not self._chimes:
            return None
        t = np.arange(FRAME_SAMPLES)
        mix = np.zeros(FRAME_SAMPLES)
        if self.tone:
            mix += np.sin(2 * math.pi * self.TONE_HZ * (self._phase + t) / FREQUENCY)
            self._phase = (self._phase + FRAME_SAMPLES) % FREQUENCY
        length = int(self.CHIME_SECONDS * FREQUENCY)
        for i, done in enumerate(self._chimes):
            s = done + t
            env = np.clip(1 - s / length, 0, 1)
            mix += env * np.sin(2 * math.pi * self.CHIME_HZ * s / FREQUENCY)
            self._chimes[i] = done + FRAME_SAMPLES
        self._chimes = [d for d in self._chimes if d < length]
        mono = np.clip(mix * self.LEVEL * 32767, -32768, 32767).astype("<i2")
        return np.repeat(mono, CHANNELS).tobytes()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tone": self.tone}


class NoSound(AudioSource):
    """`--audio-source none`: silence, whatever the display source would play."""

    name = "none"

    def start(self, playback: PlaybackService, reactor: Any) -> None:
        pass

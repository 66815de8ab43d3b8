"""Audio benchmark: what one 10 ms frame costs the reactor, per mode and per client.

- Opus encode (PyAV's libopus at 64 kbit/s) of a tone and of white noise (its worst
  case): microseconds per frame and bytes per frame, against raw PCM's 1920 bytes;
- the fan-out of one frame (stamp, encode once per mode, enqueue to every sink) for
  1, 8 and 64 sinks, raw only and half of them Opus: the cost grows with clients only
  by the enqueue.

One run on a shared machine: read ratios, not digits; nothing asserts them.

    .venv/bin/python benchmarks/audio.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _report import command_line, cpu_model, md_table  # noqa: E402

from spice_twisted.audio.opus import OpusEncoder, opus_encoder_factory  # noqa: E402
from spice_twisted.audio.playback import FRAME_BYTES, FRAME_SAMPLES, AudioFrame, PlaybackService  # noqa: E402
from spice_twisted.wire.enums import AudioDataMode  # noqa: E402

FRAMES = 500


def signals() -> dict[str, list[bytes]]:
    n = FRAME_SAMPLES * FRAMES
    t = np.arange(n) / 48000
    tone = np.repeat((0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2"), 2)
    noise = np.random.default_rng(1).integers(-20000, 20000, 2 * n).astype("<i2")
    return {
        name: [sig[i : i + FRAME_BYTES // 2].tobytes() for i in range(0, len(sig), FRAME_BYTES // 2)]
        for name, sig in (("tone", tone), ("noise", noise))
    }


class Sink:
    """A playback pipe's share of the work: keep the frame's body for this client's mode."""

    def __init__(self, mode: AudioDataMode) -> None:
        self.mode, self.queue = mode, []

    def audio_frame(self, frame: AudioFrame) -> None:
        self.queue.append(frame.bodies[self.mode])
        if len(self.queue) > 20:
            self.queue.clear()

    def audio_start(self) -> None: ...
    def audio_stop(self) -> None: ...
    def audio_volume(self, levels: list[int]) -> None: ...
    def audio_mute(self, mute: bool) -> None: ...


def main() -> None:
    rows = []
    for name, frames in signals().items():
        enc = OpusEncoder()
        t0 = time.perf_counter()
        sizes = [len(enc.encode(f)) for f in frames]
        dt = (time.perf_counter() - t0) / len(frames)
        rows.append([name, f"{dt * 1e6:.0f}", f"{np.mean(sizes):.0f}", f"{FRAME_BYTES / np.mean(sizes):.1f}x"])
    print(f"{cpu_model()}; {command_line()}\n")
    print(md_table(["signal", "Opus encode µs/frame", "Opus bytes/frame", "smaller than raw"], rows))
    tone = signals()["tone"]
    rows = []
    for n in (1, 8, 64):
        for opus in (False, True):
            pb = PlaybackService(lambda: 0, opus_encoder_factory() if opus else None)
            for i in range(n):
                pb.subscribe(Sink(AudioDataMode.OPUS if opus and i % 2 else AudioDataMode.RAW))
            t0 = time.perf_counter()
            for f in tone:
                pb.frame(f)
            dt = (time.perf_counter() - t0) / len(tone)
            rows.append([str(n), "half Opus" if opus else "raw", f"{dt * 1e6:.0f}", str(dict(pb.encodes))])
    print()
    print(md_table(["sinks", "modes", "fan-out µs/frame", "encodes"], rows))


if __name__ == "__main__":
    main()

"""Opus for playback clients with PLAYBACK_CAP_OPUS, through PyAV (its wheels carry libopus).

Optional: without PyAV every client gets raw PCM, as a client without the cap does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .playback import CHANNELS, FRAME_SAMPLES, FREQUENCY, Encoder

BITRATE = 64000  # bits/s for 48 kHz stereo: clear speech and music at 8 KB/s instead of 192 KB/s


class OpusEncoder:
    """One encoder for the stream: 10 ms of 16-bit stereo in, one Opus packet out."""

    def __init__(self) -> None:
        import av

        self._av = av
        ctx: Any = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = FREQUENCY
        ctx.layout = "stereo"
        ctx.format = "s16"
        ctx.bit_rate = BITRATE
        # FFmpeg's default is 20 ms: it would answer every other 10 ms frame with nothing.
        ctx.options = {"frame_duration": str(FRAME_SAMPLES * 1000 // FREQUENCY), "application": "audio"}
        ctx.open()
        self.ctx = ctx
        self._pts = 0

    def encode(self, pcm: bytes) -> bytes:
        import numpy as np

        frame = self._av.AudioFrame.from_ndarray(
            np.frombuffer(pcm, dtype="<i2").reshape(1, FRAME_SAMPLES * CHANNELS), format="s16", layout="stereo"
        )
        frame.sample_rate = FREQUENCY
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        packet = b"".join(bytes(p) for p in self.ctx.encode(frame))
        if not packet:
            raise RuntimeError("the Opus encoder gave no packet for a frame")
        return packet


def opus_encoder_factory() -> Callable[[], Encoder] | None:
    """A maker of Opus encoders, or None when no binding is installed."""
    try:
        OpusEncoder()
    except Exception:  # no PyAV, or an FFmpeg without libopus
        return None
    return OpusEncoder

"""Opus through PyAV (its wheels carry libopus): playback to clients with PLAYBACK_CAP_OPUS,
the primary's microphone from clients that record in Opus (RECORD_CAP_OPUS).

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


class OpusDecoder:
    """The primary's microphone in Opus (RECORD_CAP_OPUS): one packet in, 16-bit stereo
    48 kHz PCM out, interleaved as raw record DATA is."""

    def __init__(self) -> None:
        import av

        self._av = av
        ctx: Any = av.CodecContext.create("opus", "r")
        ctx.sample_rate = FREQUENCY
        ctx.layout = "stereo"
        self.ctx = ctx

    def decode(self, packet: bytes) -> bytes:
        """PCM for `packet`; a packet the decoder refuses raises ValueError."""
        import numpy as np

        if not packet:
            return b""  # an empty packet would flush (end) the decoder's stream
        try:
            frames = self.ctx.decode(self._av.Packet(packet))
        except self._av.error.FFmpegError as exc:
            raise ValueError(f"not an Opus packet: {exc}") from exc
        out = []
        for f in frames:
            a = f.to_ndarray()
            if f.format.is_planar:
                a = a.T  # (channels, samples) -> interleaved
            a = a.reshape(-1, len(f.layout.channels))
            if a.shape[1] == 1:
                a = np.repeat(a, CHANNELS, axis=1)
            if a.dtype.kind == "f":
                a = np.clip(np.rint(a * 32768.0), -32768, 32767)
            out.append(a.astype("<i2").tobytes())
        return b"".join(out)


def opus_decoder_factory() -> Callable[[], OpusDecoder] | None:
    """A maker of Opus decoders, or None when no binding is installed."""
    try:
        OpusDecoder()
    except Exception:  # no PyAV, or an FFmpeg without an Opus decoder
        return None
    return OpusDecoder

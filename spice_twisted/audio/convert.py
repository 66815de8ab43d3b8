"""PCM from elsewhere (a VM's stream, in its own format and chunk sizes) into our frames.

`Reframer` turns a stream of 16-bit PCM of any channel count (1, 2) and rate into the
playback service's 10 ms 48 kHz stereo frames, and `Converter` the other way, for a
microphone sent to an upstream that asked for another format. Resampling is linear
and keeps its phase across chunks (a chunk boundary adds no click); at 48 kHz stereo,
the upstreams' usual format, samples pass through untouched. Only a partial frame is
ever held.
"""

from __future__ import annotations

import numpy as np

from .playback import CHANNELS, FRAME_BYTES, FREQUENCY


class Converter:
    """16-bit PCM, `channels` at `rate` in -> `out_channels` at `out_rate` out, chunk by chunk."""

    def __init__(self, channels: int, rate: int, out_channels: int = CHANNELS, out_rate: int = FREQUENCY) -> None:
        self.channels, self.rate = channels, rate
        self.out_channels, self.out_rate = out_channels, out_rate
        self._carry = b""  # a torn sample from the last chunk
        self._last: np.ndarray | None = None  # the last input sample (resampling across chunks)
        self._pos = 0.0  # the next output sample's position, in input samples after _last

    def convert(self, pcm: bytes) -> bytes:
        pcm = self._carry + pcm
        whole = len(pcm) - len(pcm) % (2 * self.channels)
        pcm, self._carry = pcm[:whole], pcm[whole:]
        if not pcm:
            return b""
        x = np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
        if self.channels != self.out_channels:
            x = np.repeat(x[:, :1], self.out_channels, axis=1) if self.out_channels > 1 else x.mean(axis=1, keepdims=True)
        if self.rate != self.out_rate:
            x = self._resample(x.astype(np.float64))
        return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()

    def _resample(self, x: np.ndarray) -> np.ndarray:
        # Positions 0..n on the input with the previous chunk's last sample as position 0.
        if self._last is None:  # the stream's first sample: position 1, after itself as _last
            self._last, self._pos = x[0], 1.0
        xs = np.vstack([self._last[None, :], x])
        step = self.rate / self.out_rate
        pos = np.arange(self._pos, len(xs) - 1, step)
        i = pos.astype(np.int64)
        frac = (pos - i)[:, None]
        out = xs[i] * (1 - frac) + xs[i + 1] * frac
        self._pos = (pos[-1] + step - (len(xs) - 1)) if len(pos) else self._pos - (len(xs) - 1)
        self._last = xs[-1]
        return out


class Reframer:
    """A stream in any format -> whole FRAME_BYTES frames of 48 kHz stereo."""

    def __init__(self, channels: int, rate: int) -> None:
        self.converter = Converter(channels, rate)
        self._buf = bytearray()

    def feed(self, pcm: bytes) -> list[bytes]:
        self._buf += self.converter.convert(pcm)
        n = len(self._buf) // FRAME_BYTES
        frames = [bytes(self._buf[i * FRAME_BYTES : (i + 1) * FRAME_BYTES]) for i in range(n)]
        del self._buf[: n * FRAME_BYTES]
        return frames

    def flush(self) -> bytes | None:
        """The partial frame left, padded with silence (the stream's last sound), or None."""
        if not self._buf:
            return None
        out = bytes(self._buf) + bytes(FRAME_BYTES - len(self._buf))
        self._buf.clear()
        return out

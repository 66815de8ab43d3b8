"""Video stream frames: MJPEG (one JFIF per frame) and VP8, in STREAM_DATA's data field.

Every client that plays streams decodes MJPEG (spice-gtk has it built in, spice-html5
draws each frame as a JPEG picture), so it is the codec every stream has. A frame is
encoded once per tier and the one `Payload` goes to every client on that tier
(render/streams.py). The encoder is the JPEG image codec's (simplejpeg, libjpeg-turbo,
which releases the GIL), at the tier's quality: the frames are top-down B,G,R,X rows,
exactly our surface's layout, so nothing is converted.

VP8 (libvpx through PyAV) is for clients that advertise MULTI_CODEC and CODEC_VP8 when
`--video-codecs` lists it. Its frames refer to earlier ones, so each stream has one
`Vp8Encoder` whose encodes run in the ordered lane (render/codec_pool.py), and every
client on it gets every frame from a key frame on (render/streams.py asks for a key
frame when a client joins or fell behind).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import simplejpeg

from ..wire.enums import ImageType, VideoCodecType
from ..wire.schema import External
from .payload import Payload

MJPEG = "mjpeg"  # the full tier: every frame, at FULL_QUALITY
MJPEG_LOW = "mjpeg_low"  # the low tier: every other frame, at LOW_QUALITY (slow links)
VP8 = "vp8"  # one stateful encoder per stream (Vp8Encoder), for clients that decode VP8
STATEFUL = frozenset({VP8})
# What --video-codecs may name, in the server's order of preference.
VIDEO_CODECS = (MJPEG, VP8)

# spice-gtk decodes MJPEG with libjpeg's fast DCT and without fancy upsampling, so 4:2:0
# chroma costs about 6 dB on saturated colour (the demo's plasma: 27 dB at quality 80,
# where Pillow's decode of the same bytes gives 33). Full chroma keeps the full tier at
# 35-37 dB for about 30% more bytes than 4:2:0 at 80 (benchmarks and numbers: docs/codecs.md).
FULL_QUALITY, FULL_SUBSAMPLING = 70, "444"
LOW_QUALITY, LOW_SUBSAMPLING = 60, "422"  # about 31 dB, two thirds of the bytes, half the frames

# Which tier codec is which wire codec, and at which frame divisor it runs.
WIRE_CODEC: dict[str, VideoCodecType] = {MJPEG: VideoCodecType.MJPEG, MJPEG_LOW: VideoCodecType.MJPEG, VP8: VideoCodecType.VP8}
RATE_DIVISOR: dict[str, int] = {MJPEG: 1, MJPEG_LOW: 2, VP8: 1}
# VP8's target bitrate: bits per pixel of a frame and frame a second, within bounds. The
# demo's plasma (every pixel changes every frame) needs about 1 Mbit/s at 320x180 to reach
# 26 dB; VP8's 4:2:0 chroma keeps it under 28 dB on such saturated colour at any rate.
VP8_BITS_PER_PIXEL = 0.6
VP8_MIN_BPS, VP8_MAX_BPS = 1_000_000, 8_000_000

# As a JPEG image: a thread hand-off costs more than encoding a small frame inline.
INLINE_PIXELS = 64 * 64


def _mjpeg(pixels: np.ndarray, quality: int, subsampling: str, codec: str) -> Payload:
    data = simplejpeg.encode_jpeg(pixels, quality=quality, colorspace="BGRX", colorsubsampling=subsampling)
    # The image type is unused on the wire (STREAM_DATA has no image descriptor).
    return Payload(codec, ImageType.JPEG, {"data": External(data)}, 4 + len(data))


def encode_full(pixels: np.ndarray) -> Payload:
    return _mjpeg(pixels, FULL_QUALITY, FULL_SUBSAMPLING, MJPEG)


def encode_low(pixels: np.ndarray) -> Payload:
    return _mjpeg(pixels, LOW_QUALITY, LOW_SUBSAMPLING, MJPEG_LOW)


class Vp8Encoder:
    """One VP8 stream (libvpx through PyAV), realtime: one packet per frame, no look-ahead.
    Not thread-safe: its encodes run one after the other in the ordered lane."""

    def __init__(self, width: int, height: int, fps: float = 25.0) -> None:
        import av  # only a server that sends VP8 loads it

        self._av = av
        ctx = av.CodecContext.create("libvpx", "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 1000)
        ctx.bit_rate = min(VP8_MAX_BPS, max(VP8_MIN_BPS, int(width * height * fps * VP8_BITS_PER_PIXEL)))
        ctx.gop_size = 1 << 20  # key frames only when asked for (a client joined or fell behind)
        ctx.options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0", "auto-alt-ref": "0"}
        self.ctx: Any = ctx
        self.frames = 0

    def encode(self, pixels: np.ndarray, key: bool) -> Payload:
        av = self._av
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgra").reformat(format="yuv420p")
        frame.pts = self.frames * 40
        if key or self.frames == 0:
            frame.pict_type = av.video.frame.PictureType.I
        self.frames += 1
        data = b"".join(bytes(p) for p in self.ctx.encode(frame))
        return Payload(VP8, ImageType.JPEG, {"data": External(data)}, 4 + len(data))


def is_key_frame(data: bytes) -> bool:
    """A VP8 frame's tag: bit 0 of the first byte is 0 on a key frame (RFC 6386, 9.1)."""
    return bool(data) and not data[0] & 1

"""Video stream frames: MJPEG (one JFIF per frame), VP8, VP9 and H.264, in STREAM_DATA's data field.

Every client that plays streams decodes MJPEG (spice-gtk has it built in, spice-html5
draws each frame as a JPEG picture), so it is the codec every stream has. A frame is
encoded once per tier and the one `Payload` goes to every client on that tier
(render/streams.py). The encoder is the JPEG image codec's (simplejpeg, libjpeg-turbo,
which releases the GIL), at the tier's quality: the frames are top-down B,G,R,X rows,
exactly our surface's layout, so nothing is converted.

VP8, VP9 (libvpx) and H.264 (libx264), all through PyAV, are for clients that advertise
MULTI_CODEC and the codec's cap when `--video-codecs` lists it. Their frames refer to
earlier ones, so each stream has one `StatefulEncoder` per such tier, whose encodes run
in that tier's ordered video lane (render/payloads.py), and every client on it gets every frame
from a key frame on (render/streams.py asks for a key frame when a client joins or fell
behind). Why these settings, and what each codec costs and gives: docs/codecs.md.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import simplejpeg

from ..wire.enums import ImageType, VideoCodecType
from ..wire.schema import External
from .payload import Payload

MJPEG = "mjpeg"  # the full tier: every frame, at FULL_QUALITY
MJPEG_LOW = "mjpeg_low"  # the low tier: every other frame, at LOW_QUALITY (slow links)
MJPEG_MIN = "mjpeg_min"  # the least tier: every fourth frame, at MIN_QUALITY (a WAN too slow for the low one)
MJPEG_TIERS = (MJPEG, MJPEG_LOW, MJPEG_MIN)
VP8 = "vp8"  # the stateful codecs: one encoder per stream (StatefulEncoder), for clients that decode them
VP9 = "vp9"
H264 = "h264"
# Their low tiers: a second encoder of the stream's, at half the frames and STATEFUL_LOW_SHARE
# of the bitrate, for the clients the MJPEG low tier would take (a WAN, a backed-up pipe,
# late frames); a client moves between the two at a key frame of the tier it moves to.
VP8_LOW, VP9_LOW, H264_LOW = "vp8_low", "vp9_low", "h264_low"
STATEFUL_LOW = {VP8: VP8_LOW, VP9: VP9_LOW, H264: H264_LOW}
STATEFUL_LOW_SHARE = 0.3  # of the full tier's bitrate (0.6 of its bits a frame, half the frames), 0.5 Mbit/s at least
STATEFUL = frozenset({VP8, VP9, H264, *STATEFUL_LOW.values()})
# Each tier's codec on the wire (the MJPEG tiers are MJPEG, a stateful low tier its codec's).
FAMILY: dict[str, str] = {MJPEG: MJPEG, MJPEG_LOW: MJPEG, MJPEG_MIN: MJPEG, VP8: VP8, VP9: VP9, H264: H264}
FAMILY.update({low: codec for codec, low in STATEFUL_LOW.items()})
# What --video-codecs may name (QEMU's names), the default first.
VIDEO_CODECS = (MJPEG, VP8, VP9, H264)

# spice-gtk decodes MJPEG with libjpeg's fast DCT and without fancy upsampling, so 4:2:0
# chroma costs about 6 dB on saturated colour (the demo's plasma: 27 dB at quality 80,
# where Pillow's decode of the same bytes gives 33). Full chroma keeps the full tier at
# 35-37 dB for about 30% more bytes than 4:2:0 at 80 (benchmarks and numbers: docs/codecs.md).
FULL_QUALITY, FULL_SUBSAMPLING = 70, "444"
LOW_QUALITY, LOW_SUBSAMPLING = 60, "422"  # about 31 dB, two thirds of the bytes, half the frames
# Below 60 quality saves little (50: 0.9x the low tier's bytes a frame, 1 dB less); the
# least tier's saving is its rate: a quarter of the frames, so about 0.45x the low tier's bits.
MIN_QUALITY, MIN_SUBSAMPLING = 50, "422"

# Which tier codec is which wire codec, and at which frame divisor it runs.
_WIRE_FAMILY = {MJPEG: VideoCodecType.MJPEG, VP8: VideoCodecType.VP8, VP9: VideoCodecType.VP9, H264: VideoCodecType.H264}
WIRE_CODEC: dict[str, VideoCodecType] = {tier: _WIRE_FAMILY[family] for tier, family in FAMILY.items()}
RATE_DIVISOR: dict[str, int] = {MJPEG: 1, MJPEG_LOW: 2, MJPEG_MIN: 4, **dict.fromkeys(STATEFUL_LOW.values(), 2)}  # others: 1

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


def encode_min(pixels: np.ndarray) -> Payload:
    return _mjpeg(pixels, MIN_QUALITY, MIN_SUBSAMPLING, MJPEG_MIN)


class StatefulEncoder:
    """One stream in one inter-frame codec, through PyAV, tuned for realtime: one packet a
    frame, no look-ahead, no frames reordered; key frames only when asked for (a client
    joined or fell behind). Not thread-safe: its encodes run one after the other in its
    tier's ordered video lane. A subclass names the codec and its options."""

    codec: ClassVar[str]
    av_codec: ClassVar[str]  # FFmpeg's encoder
    options: ClassVar[dict[str, str]]
    # The target bitrate: bits per pixel of a frame and frame a second, within bounds.
    bits_per_pixel: ClassVar[float]
    min_bps: ClassVar[int] = 1_000_000
    max_bps: ClassVar[int] = 8_000_000
    even_size: ClassVar[bool] = False  # the encoder takes only even widths and heights

    def __init__(self, width: int, height: int, fps: float = 25.0, low: bool = False) -> None:
        """`low`: the codec's low tier (STATEFUL_LOW), fed every other frame: `fps` is the
        stream's, the encoder runs at half of it and STATEFUL_LOW_SHARE of the bitrate."""
        import av  # only a server that sends such a codec loads it

        self._av = av
        ctx = av.CodecContext.create(self.av_codec, "w")
        ctx.width, ctx.height = width, height
        ctx.pix_fmt = "yuv420p"
        self.tier = STATEFUL_LOW[self.codec] if low else self.codec
        fps /= RATE_DIVISOR.get(self.tier, 1)
        self.frame_ms = round(1000 / fps)
        ctx.time_base = Fraction(1, 1000)
        ctx.framerate = Fraction(fps).limit_denominator(1000)  # x264 budgets a frame by it, not by pts
        ctx.gop_size = 1 << 20  # key frames only when asked for
        ctx.max_b_frames = 0  # a frame is sent as it is encoded: none waits for a later one
        # A tier's lane is one thread, and the other lanes and cores encode too: one thread each.
        # (libvpx's VP8 with threads of its own took 2 to 20 times the CPU a frame, and no
        # less wall time, on a 2-core machine: docs/codecs.md.)
        ctx.thread_count = 1
        full_fps = fps * RATE_DIVISOR.get(self.tier, 1)
        self.bps = min(self.max_bps, max(self.min_bps, int(width * height * full_fps * self.bits_per_pixel)))
        if low:  # at least half the floor: under it a small video's frames fall apart (VP8: 21 dB)
            self.bps = max(int(self.bps * STATEFUL_LOW_SHARE), self.min_bps // 2)
        ctx.options = self._rate_control(ctx, self.bps)
        self.ctx: Any = ctx
        self.frames = 0

    def _rate_control(self, ctx: Any, bps: int) -> dict[str, str]:
        """Set the target bitrate; returns the encoder's options."""
        ctx.bit_rate = bps
        return dict(self.options)

    @classmethod
    def fits(cls, width: int, height: int) -> bool:
        """Whether this codec can encode a stream of this size."""
        return not cls.even_size or not (width % 2 or height % 2)

    def encode(self, pixels: np.ndarray, key: bool) -> Payload:
        av = self._av
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgra").reformat(format="yuv420p")
        frame.pts = self.frames * self.frame_ms
        if key or self.frames == 0:
            frame.pict_type = av.video.frame.PictureType.I
        self.frames += 1
        data = b"".join(bytes(p) for p in self.ctx.encode(frame))
        return Payload(self.tier, ImageType.JPEG, {"data": External(data)}, 4 + len(data))

    @staticmethod
    def is_key_frame(data: bytes) -> bool:
        raise NotImplementedError


class Vp8Encoder(StatefulEncoder):
    """VP8 (libvpx). The demo's plasma (every pixel changes every frame) needs about
    1 Mbit/s at 320x180 to reach 26 dB; 4:2:0 chroma keeps it under 28 dB on such
    saturated colour at any rate."""

    codec, av_codec = VP8, "libvpx"
    options = {"deadline": "realtime", "cpu-used": "16", "lag-in-frames": "0", "auto-alt-ref": "0"}
    bits_per_pixel = 0.6

    @staticmethod
    def is_key_frame(data: bytes) -> bool:
        """A frame's tag: bit 0 of the first byte is 0 on a key frame (RFC 6386, 9.1)."""
        return bool(data) and not data[0] & 1


class Vp9Encoder(StatefulEncoder):
    """VP9 (libvpx-vp9), profile 0 (8-bit 4:2:0: what every VP9 decoder takes). No
    alternate reference frames: each packet is one shown frame, never a superframe."""

    codec, av_codec = VP9, "libvpx-vp9"
    options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "auto-alt-ref": "0", "row-mt": "0"}
    bits_per_pixel = 0.5

    @staticmethod
    def is_key_frame(data: bytes) -> bool:
        """The uncompressed header of profile 0: frame_marker 2, profile 0, then
        show_existing_frame 0 and frame_type 0 (a key frame) in the first byte's bits 3, 2."""
        return bool(data) and data[0] & 0xFC == 0x80


class H264Encoder(StatefulEncoder):
    """H.264 (libx264), constrained baseline (no B-frames, CAVLC: any decoder, spice-gtk's
    GStreamer pipeline included), tuned for zero latency, each access unit in Annex-B
    byte-stream form with its SPS and PPS before every IDR: a client may join at any key
    frame. 4:2:0 needs even sizes: a stream of another size goes in the client's next codec."""

    codec, av_codec = H264, "libx264"
    options = {
        "preset": "ultrafast",
        "tune": "zerolatency",
        "profile": "baseline",
        "forced-idr": "1",
        "x264-params": "keyint=infinite:scenecut=0:repeat-headers=1:annexb=1",
    }
    bits_per_pixel = 0.5
    even_size = True
    crf = 23  # x264's default quality; the bitrate target is a cap
    LOW_CRF_STEP = 5  # the low tier's: about 0.55x the bits a frame

    def _rate_control(self, ctx: Any, bps: int) -> dict[str, str]:
        """Constant quality under a cap (the VBV: at most the target over a quarter of a
        second): x264's average-bitrate mode spends the whole target on a panned photo
        where a fifth of it gives 36 dB, and lets single frames burst to 3 times the mean."""
        options = dict(self.options)
        options["crf"] = str(self.crf + (self.LOW_CRF_STEP if self.tier != self.codec else 0))
        options["x264-params"] += f":vbv-maxrate={bps // 1000}:vbv-bufsize={bps // 4000}"
        return options

    @staticmethod
    def is_key_frame(data: bytes) -> bool:
        """An access unit with an IDR slice (NAL unit type 5)."""
        return any(part and part[0] & 0x1F == 5 for part in data.split(b"\x00\x00\x01")[1:])


STATEFUL_ENCODERS: dict[str, type[StatefulEncoder]] = {VP8: Vp8Encoder, VP9: Vp9Encoder, H264: H264Encoder}


def stateful_encoder(tier: str, width: int, height: int, fps: float = 25.0) -> StatefulEncoder:
    """A stream's encoder for a stateful tier (a codec, or its low tier)."""
    codec = FAMILY[tier]
    return STATEFUL_ENCODERS[codec](width, height, fps, low=tier != codec)


def is_key_frame(data: bytes, codec: str = VP8) -> bool:
    """Whether a stateful codec's frame is a key frame (one a decoder can start at)."""
    return STATEFUL_ENCODERS[FAMILY[codec]].is_key_frame(data)

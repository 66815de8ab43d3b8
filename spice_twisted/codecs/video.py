"""Video stream frames: MJPEG, one JFIF per frame, in STREAM_DATA's data field.

Every client that plays streams decodes MJPEG (spice-gtk has it built in, spice-html5
draws each frame as a JPEG picture), so it is the codec every stream has. A frame is
encoded once per tier and the one `Payload` goes to every client on that tier
(render/streams.py). The encoder is the JPEG image codec's (simplejpeg, libjpeg-turbo,
which releases the GIL), at the tier's quality: the frames are top-down B,G,R,X rows,
exactly our surface's layout, so nothing is converted.
"""

from __future__ import annotations

import numpy as np
import simplejpeg

from ..wire.enums import ImageType, VideoCodecType
from ..wire.schema import External
from .payload import Payload

MJPEG = "mjpeg"  # the full tier: every frame, at FULL_QUALITY
MJPEG_LOW = "mjpeg_low"  # the low tier: every other frame, at LOW_QUALITY (slow links)

# spice-gtk decodes MJPEG with libjpeg's fast DCT and without fancy upsampling, so 4:2:0
# chroma costs about 6 dB on saturated colour (the demo's plasma: 27 dB at quality 80,
# where Pillow's decode of the same bytes gives 33). Full chroma keeps the full tier at
# 35-37 dB for about 30% more bytes than 4:2:0 at 80 (benchmarks and numbers: docs/codecs.md).
FULL_QUALITY, FULL_SUBSAMPLING = 70, "444"
LOW_QUALITY, LOW_SUBSAMPLING = 60, "422"  # about 31 dB, two thirds of the bytes, half the frames

# Which tier codec is which wire codec, and at which frame divisor it runs.
WIRE_CODEC: dict[str, VideoCodecType] = {MJPEG: VideoCodecType.MJPEG, MJPEG_LOW: VideoCodecType.MJPEG}
RATE_DIVISOR: dict[str, int] = {MJPEG: 1, MJPEG_LOW: 2}

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

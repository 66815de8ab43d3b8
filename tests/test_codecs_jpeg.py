"""The JPEG codec: what it sends decodes with another decoder (Pillow's libjpeg) close to the source.

The payload goes through the real DRAW_COPY marshalling (channels/display.py
`draw_copy_parts`) and back through the schema's decoder and the shared test reader
(support/display_decode.py), as a client's bytes would.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import images
from support.display_decode import Screen
from support.images import pillow_decode, psnr
from twisted.internet.task import Clock

from spice_twisted import codecs
from spice_twisted.channels.display import draw_copy_parts
from spice_twisted.codecs import jpeg
from spice_twisted.render.drawable import Drawable
from spice_twisted.render.payloads import PayloadService
from spice_twisted.render.rect import Rect
from spice_twisted.render.service import RenderCounters
from spice_twisted.wire.enums import ChannelType, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, encode_body, message
from spice_twisted.wire.schema import External

PHOTO_LIKE = ("photo", "smooth_noise")
SIZES = ((768, 1024), (256, 256), (75, 130))  # h, w; the last not a multiple of the 16-pixel blocks


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
@pytest.mark.parametrize("kind", PHOTO_LIKE)
def test_photo_like_images_decode_at_35_db_or_better_at_the_default_quality(kind, size):
    px = images.KINDS[kind](*size)
    payload = codecs.encode(codecs.JPEG, px)
    assert payload.codec == "jpeg" and payload.image_type == ImageType.JPEG
    data = payload.fields["data"]
    assert isinstance(data, External) and set(payload.fields) == {"data"}
    assert payload.nbytes == 4 + len(data.buf)  # u32 data_size + the JFIF
    assert data.buf[:2] == b"\xff\xd8" and data.buf[-2:] == b"\xff\xd9"  # SOI ... EOI
    decoded = pillow_decode(data.buf)
    assert decoded.shape == px.shape  # spice-gtk refuses a JPEG whose size is not the descriptor's
    assert psnr(decoded, px) >= 35
    assert payload.nbytes < px.nbytes / 8  # and it is worth it: at least 8x smaller than raw


def test_colours_keep_their_channels():
    """B,G,R,X in is read as such: a pure red, green and blue image decodes to the same colours."""
    px = np.zeros((48, 96, 4), np.uint8)
    px[:, :32, 2] = 255  # red (B,G,R order: R is byte 2)
    px[:, 32:64, 1] = 255  # green
    px[:, 64:, 0] = 255  # blue
    px[..., 3] = 0x5A  # whatever the X byte holds is ignored
    decoded = pillow_decode(jpeg.encode(px).fields["data"].buf)
    for x, channel in ((16, 2), (48, 1), (80, 0)):
        pixel = decoded[24, x, :3].astype(int)
        assert pixel[channel] > 230 and np.delete(pixel, channel).max() < 25, (x, pixel)


def test_quality_setting_and_override():
    px = images.photo(256, 256)
    assert jpeg.quality() == jpeg.DEFAULT_QUALITY == 85
    sizes, quality = {}, {}
    for q in (40, 85, 95):
        data = jpeg.encode(px, quality=q).fields["data"].buf
        sizes[q], quality[q] = len(data), psnr(pillow_decode(data), px)
    assert sizes[40] < sizes[85] < sizes[95]
    assert quality[40] < quality[85] < quality[95]
    try:
        jpeg.set_quality(40)
        assert jpeg.quality() == 40
        assert jpeg.encode(px).fields["data"].buf == jpeg.encode(px, quality=40).fields["data"].buf
    finally:
        jpeg.set_quality(jpeg.DEFAULT_QUALITY)
    for bad in (0, 101, 8.5, "85"):
        with pytest.raises(ValueError):
            jpeg.set_quality(bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            jpeg.encode(px, quality=bad)  # type: ignore[arg-type]
    assert jpeg.quality() == 85


def test_a_strided_view_encodes_like_its_copy():
    """A crop of a larger frame (rows farther apart than its width) needs no copy first."""
    frame = images.photo(300, 400)
    view = frame[37:237, 51:331]
    assert not view.flags.c_contiguous
    assert jpeg.encode(view).fields["data"].buf == jpeg.encode(np.ascontiguousarray(view)).fields["data"].buf


def test_read_only_pixels_encode():
    """Surface.crop hands out arrays over immutable `bytes`."""
    px = images.photo(64, 80)
    assert not px.flags.writeable
    assert pillow_decode(jpeg.encode(px).fields["data"].buf).shape == px.shape


def test_draw_copy_with_a_jpeg_image_through_the_schema():
    h, w = 180, 240
    px = images.photo(h, w)
    rect = Rect(30, 20, 30 + w, 20 + h)
    service = PayloadService(Clock(), RenderCounters())  # not started: the encode runs inline
    drawable = Drawable(0, 0, rect, px, service)
    drawable.hold()
    drawable.request(codecs.JPEG)
    head, tail = draw_copy_parts(drawable, codecs.JPEG, image_id=0x1234, image_flags=0)
    assert tail == drawable.payload(codecs.JPEG).fields["data"].buf  # the shared JFIF, after the per-client part
    body = head + tail
    fields = decode_body(message(ChannelType.DISPLAY, "DRAW_COPY"), body)
    image = fields["src_bitmap"]
    assert image["type"] == ImageType.JPEG and (image["width"], image["height"]) == (w, h) and image["id"] == 0x1234
    assert image["data"] == tail
    # the u32 data_size sits right before the JFIF, as spice-common's demarshaller reads it
    assert int.from_bytes(head[-4:], "little") == len(tail)

    screen = Screen()
    create = encode_body(
        message(ChannelType.DISPLAY, "SURFACE_CREATE"), {"surface_id": 0, "width": 320, "height": 240, "format": 32, "flags": 1}
    )
    screen.feed([(MsgDisplay.SURFACE_CREATE, create), (MsgDisplay.DRAW_COPY, body)])
    assert screen.image_types == {ImageType.JPEG: 1}
    assert screen.fb is not None
    assert psnr(screen.fb[20 : 20 + h, 30 : 30 + w], px) >= 35
    assert not screen.fb[:20].any() and not screen.fb[:, :30].any()  # nothing drawn outside the box

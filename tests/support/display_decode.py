"""Decode what a display channel sent (DRAW_COPY with raw, LZ4 or JPEG images) into a framebuffer.

An independent reader of our output for in-process tests and the wire tap: it parses
with the schema's decoder and decodes LZ4 like spice-gtk's canvas does, JPEG with Pillow
(its own libjpeg, not the encoder's binding).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from spice_twisted.codecs.lz4 import decode as lz4_decode
from spice_twisted.wire.enums import ChannelType, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, message

DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")
SURFACE_CREATE = message(ChannelType.DISPLAY, "SURFACE_CREATE")


def image_pixels(image: dict) -> np.ndarray:
    w, h = image["width"], image["height"]
    if image["type"] == ImageType.BITMAP:
        rows = np.frombuffer(image["data"], np.uint8).reshape(image["y"], image["stride"])
        return rows[:, : w * 4].reshape(h, w, 4)
    if image["type"] == ImageType.LZ4:
        return lz4_decode(image["data"], w, h)
    if image["type"] == ImageType.JPEG:
        decoded = Image.open(io.BytesIO(image["data"]))
        assert decoded.format == "JPEG" and decoded.size == (w, h), (decoded.format, decoded.size, (w, h))
        out = np.zeros((h, w, 4), np.uint8)
        out[..., :3] = np.asarray(decoded.convert("RGB"))[..., ::-1]  # B,G,R,X as the surface holds them
        return out
    raise AssertionError(f"unexpected image type {image['type']}")


class Screen:
    """Follows SURFACE_CREATE and DRAW_COPY messages; counts image types seen."""

    def __init__(self) -> None:
        self.fb: np.ndarray | None = None
        self.image_types: dict[int, int] = {}
        self.draws = 0
        self.surfaces: list[tuple[int, int]] = []

    def feed(self, messages: list[tuple[int, bytes]]) -> None:
        for msg_type, body in messages:
            if msg_type == MsgDisplay.SURFACE_CREATE:
                f = decode_body(SURFACE_CREATE, body)
                self.fb = np.zeros((f["height"], f["width"], 4), np.uint8)
                self.surfaces.append((f["width"], f["height"]))
            elif msg_type == MsgDisplay.DRAW_COPY:
                f = decode_body(DRAW_COPY, body)
                image = f["src_bitmap"]
                self.image_types[image["type"]] = self.image_types.get(image["type"], 0) + 1
                self.draws += 1
                box = f["box"]
                assert self.fb is not None
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = image_pixels(image)

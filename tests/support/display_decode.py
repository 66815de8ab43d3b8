"""Decode what a display channel sent (DRAW_COPY with raw, LZ, LZ4, QUIC or JPEG images, solid DRAW_FILL, COPY_BITS) into a framebuffer.

An independent reader of our output for in-process tests and the wire tap: it parses
with the schema's decoder and decodes LZ4 like spice-gtk's canvas does, LZ with our own
Python decoder (support/lz_decode.py), QUIC with our own C decoder (codecs/_native/quic.c:
real spice-gtk clients check it), JPEG with Pillow (its own libjpeg, not the encoder's
binding), stream frames in VP8, H.264 and VP9 with FFmpeg's decoders.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image

from spice_twisted.codecs.lz4 import decode as lz4_decode
from spice_twisted.codecs.quic import decode as quic_decode
from spice_twisted.wire.enums import ChannelType, ImageType, MsgDisplay
from spice_twisted.wire.messages import decode_body, message

from .lz_decode import SpiceGtkGlzWindow, decode_lz, decode_lz_plt

DRAW_COPY = message(ChannelType.DISPLAY, "DRAW_COPY")
SURFACE_CREATE = message(ChannelType.DISPLAY, "SURFACE_CREATE")
COPY_BITS = message(ChannelType.DISPLAY, "COPY_BITS")
DRAW_FILL = message(ChannelType.DISPLAY, "DRAW_FILL")
INVAL_LIST = message(ChannelType.DISPLAY, "INVAL_LIST")
INVAL_ALL_PIXMAPS = message(ChannelType.DISPLAY, "INVAL_ALL_PIXMAPS")
STREAM_CREATE = message(ChannelType.DISPLAY, "STREAM_CREATE")
STREAM_DATA = message(ChannelType.DISPLAY, "STREAM_DATA")
STREAM_DESTROY = message(ChannelType.DISPLAY, "STREAM_DESTROY")
STREAM_CLIP = message(ChannelType.DISPLAY, "STREAM_CLIP")
CACHE_ME, CACHE_REPLACE_ME = 1, 4
LOSSY_TYPES = {ImageType.JPEG, ImageType.JPEG_ALPHA}
# Stream codecs decoded by FFmpeg's own decoders (through PyAV), not the encoders' libvpx
# and libx264: VP8 2, H.264 3, VP9 4 (STREAM_CREATE's codec_type).
FFMPEG_DECODERS = {2: "vp8", 3: "h264", 4: "vp9"}


def image_pixels(image: dict) -> np.ndarray:
    w, h = image["width"], image["height"]
    if image["type"] == ImageType.BITMAP:
        rows = np.frombuffer(image["data"], np.uint8).reshape(image["y"], image["stride"])
        return rows[:, : w * 4].reshape(h, w, 4)
    if image["type"] == ImageType.LZ4:
        return lz4_decode(image["data"], w, h)
    if image["type"] == ImageType.LZ_RGB:
        out = decode_lz(image["data"])
        assert out.shape[:2] == (h, w), (out.shape, (w, h))  # spice-gtk refuses any other size
        return out
    if image["type"] == ImageType.LZ_PLT:
        plt = image["lz_plt"]
        out = decode_lz_plt(plt["data"], np.array(plt["palette"]["ents"], "<u4").tobytes())
        assert out.shape[:2] == (h, w), (out.shape, (w, h))
        return out
    if image["type"] == ImageType.QUIC:
        px = quic_decode(image["data"])
        assert px.shape[:2] == (h, w), (px.shape, (h, w))  # spice-gtk refuses a QUIC image of another size
        return px
    if image["type"] == ImageType.JPEG:
        decoded = Image.open(io.BytesIO(image["data"]))
        assert decoded.format == "JPEG" and decoded.size == (w, h), (decoded.format, decoded.size, (w, h))
        out = np.zeros((h, w, 4), np.uint8)
        out[..., :3] = np.asarray(decoded.convert("RGB"))[..., ::-1]  # B,G,R,X as the surface holds them
        return out
    raise AssertionError(f"unexpected image type {image['type']}")


class Screen:
    """Follows SURFACE_CREATE, DRAW_COPY, COPY_BITS and stream messages (MJPEG, VP8, H.264, VP9); counts image types seen."""

    def __init__(self) -> None:
        self.fb: np.ndarray | None = None
        # The pixmap cache as a client keeps it: id -> (pixels, lossy). A FROM_CACHE of an id
        # it does not hold would block spice-gtk for good: here it fails the test.
        self.cache: dict[int, tuple[np.ndarray, bool]] = {}
        self.cache_hits = 0
        self.image_types: dict[int, int] = {}
        self.draws = 0
        self.copies = 0
        self.fills = 0
        self.glz_ids: list[int] = []  # the GLZ image ids received, in order
        self.surfaces: list[tuple[int, int]] = []
        self.glz = SpiceGtkGlzWindow()  # the session's GLZ window, kept as spice-gtk keeps it
        self.streams: dict[int, dict] = {}  # the live streams' STREAM_CREATE fields, by id
        self.stream_frames = 0
        # play_ahead: stream frames are held until play() (their multimedia time, stamped ahead
        # of the clock), while images draw as they come: as spice-gtk shows them.
        self.play_ahead = False
        self.held: list[tuple[int, np.ndarray]] = []

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
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = self._image(image)
            elif msg_type == MsgDisplay.DRAW_FILL:
                f = decode_body(DRAW_FILL, body)
                assert f["brush_type"] == 1 and f["rop_descriptor"] == 8 and f["clip_type"] == 0, f  # solid, OP_PUT
                box = f["box"]
                assert self.fb is not None
                self.fills += 1
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = np.frombuffer(f["color"].to_bytes(4, "little"), np.uint8)
            elif msg_type == MsgDisplay.INVAL_LIST:
                for res in decode_body(INVAL_LIST, body)["resources"]:
                    assert res["type"] == 1 and res["id"] in self.cache, res
                    del self.cache[res["id"]]
            elif msg_type == MsgDisplay.INVAL_ALL_PIXMAPS:
                self.cache.clear()
            elif msg_type == MsgDisplay.STREAM_CREATE:
                f = decode_body(STREAM_CREATE, body)
                assert f["id"] not in self.streams, f"STREAM_CREATE of live stream {f['id']}"
                assert f["codec_type"] in (1, *FFMPEG_DECODERS) and f["flags"] == 1, f  # MJPEG, VP8, H.264, VP9; top-down
                self.streams[f["id"]] = f
                if f["codec_type"] in FFMPEG_DECODERS:
                    import av

                    f["decoder"] = av.CodecContext.create(FFMPEG_DECODERS[f["codec_type"]], "r")
            elif msg_type == MsgDisplay.STREAM_DATA:
                f = decode_body(STREAM_DATA, body)
                assert f["id"] in self.streams, f"STREAM_DATA of unknown stream {f['id']}"
                assert f["multi_media_time"] != 0
                stream = self.streams[f["id"]]
                dest = stream["dest"]
                w, h = dest["right"] - dest["left"], dest["bottom"] - dest["top"]
                if stream["codec_type"] in FFMPEG_DECODERS:
                    import av

                    (frame,) = stream["decoder"].decode(av.Packet(f["data"]))  # one frame a packet: none held back
                    px = frame.to_ndarray(format="bgra")
                    px[..., 3] = 0
                    assert px.shape[:2] == (h, w)
                else:
                    px = image_pixels({"type": ImageType.JPEG, "data": f["data"], "width": w, "height": h})
                if self.play_ahead:
                    self.held.append((f["id"], px))
                else:
                    self._show_frame(stream, px)
            elif msg_type == MsgDisplay.STREAM_CLIP:
                f = decode_body(STREAM_CLIP, body)
                assert f["id"] in self.streams, f"STREAM_CLIP of unknown stream {f['id']}"
                self.streams[f["id"]]["clip_type"] = f["clip_type"]
                self.streams[f["id"]]["clip_rects"] = f.get("clip_rects", [])
            elif msg_type == MsgDisplay.STREAM_DESTROY:
                sid = decode_body(STREAM_DESTROY, body)["id"]
                assert sid in self.streams, f"STREAM_DESTROY of unknown stream {sid}"
                del self.streams[sid]
                self.held = [(i, px) for i, px in self.held if i != sid]  # spice-gtk drops its queue
            elif msg_type == MsgDisplay.COPY_BITS:
                f = decode_body(COPY_BITS, body)
                box, src = f["box"], f["src_pos"]
                h, w = box["bottom"] - box["top"], box["right"] - box["left"]
                assert self.fb is not None
                self.copies += 1
                moved = self.fb[src["y"] : src["y"] + h, src["x"] : src["x"] + w].copy()
                self.fb[box["top"] : box["bottom"], box["left"] : box["right"]] = moved

    def play(self) -> None:
        """Show the frames held (play_ahead): their multimedia time came. Each is drawn inside
        its stream's clip as it is now, as spice-gtk draws a frame when its time comes."""
        held, self.held = self.held, []
        for sid, px in held:
            self._show_frame(self.streams[sid], px)

    def _show_frame(self, stream: dict, px: np.ndarray) -> None:
        dest = stream["dest"]
        assert self.fb is not None
        if stream["clip_type"] == 0:
            self.fb[dest["top"] : dest["bottom"], dest["left"] : dest["right"]] = px
        else:  # only inside the clip, as spice-gtk draws it
            for c in stream["clip_rects"]:
                sy, sx = (
                    slice(c["top"] - dest["top"], c["bottom"] - dest["top"]),
                    slice(c["left"] - dest["left"], c["right"] - dest["left"]),
                )
                self.fb[c["top"] : c["bottom"], c["left"] : c["right"]] = px[sy, sx]
        self.stream_frames += 1

    def _image(self, image: dict) -> np.ndarray:
        key, flags, kind = image["id"], image["flags"], image["type"]
        if kind in (ImageType.FROM_CACHE, ImageType.FROM_CACHE_LOSSLESS):
            assert key in self.cache, f"FROM_CACHE of {key:#x}, which the client does not hold"
            px, lossy = self.cache[key]
            assert not (lossy and kind == ImageType.FROM_CACHE_LOSSLESS)
            assert px.shape[:2] == (image["height"], image["width"])
            self.cache_hits += 1
            return px
        if kind in (ImageType.GLZ_RGB, ImageType.ZLIB_GLZ_RGB):
            data = image["data"]
            if kind == ImageType.ZLIB_GLZ_RGB:
                data = zlib.decompress(data)
                assert len(data) == image["glz_data_size"]
            image_id, px = self.glz.decode(data)  # raises on a reference to an image not in the window
            assert px.shape[:2] == (image["height"], image["width"])
            self.glz_ids.append(image_id)
        else:
            px = image_pixels(image)
        if flags & CACHE_REPLACE_ME:
            raise AssertionError(f"CACHE_REPLACE_ME of {key:#x}: spice-html5 ignores it, we never send it")
        elif flags & CACHE_ME:
            assert key not in self.cache, f"CACHE_ME of {key:#x}, already held"
            self.cache[key] = (px, kind in LOSSY_TYPES)
        return px

    def cache_used(self) -> int:
        """Pixels the cache holds (the server tells what to drop right after an image)."""
        return sum(p.shape[0] * p.shape[1] for p, _ in self.cache.values())

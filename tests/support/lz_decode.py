"""Decoders of ours for SPICE LZ_RGB32, LZ_PLT and GLZ_RGB32, to check our encoders' round trips.

Written from the format as spice-gtk reads it (docs/codecs.md), independently of the C
encoder. They raise ValueError on anything a real client would reject or trip over: a bad
header, a reference before the image start or past its end, a GLZ reference to an image
the window does not hold (spice-gtk would block waiting for it), trailing bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

LZ_MAGIC = 0x20205A4C
LZ_VERSION = 0x00010001
RGB32 = 8


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("truncated")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def literals(self, count: int) -> np.ndarray:
        end = self.pos + 3 * count
        if end > len(self.data):
            raise ValueError("truncated literals")
        raw = np.frombuffer(self.data, np.uint8, 3 * count, self.pos).reshape(count, 3).astype(np.uint32)
        self.pos = end
        return raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)

    def length(self, code: int) -> int:
        if code < 7:
            return code
        n = 7
        while True:
            b = self.byte()
            n += b
            if b != 255:
                return n


def _copy(out: np.ndarray, op: int, src: np.ndarray, start: int, n: int) -> None:
    """Forward copy of n words from src[start:] to out[op:], overlapping as a byte loop would."""
    if src is out and op - start < n:
        d = op - start
        out[op : op + n] = np.resize(out[start:op], n) if d > 1 else out[start]
    else:
        out[op : op + n] = src[start : start + n]


def _check_header(kind: str, magic: int, version: int, typ: int, width: int, height: int, stride: int) -> None:
    if (magic, version, typ) != (LZ_MAGIC, LZ_VERSION, RGB32) or stride != width * 4 or width < 1 or height < 1:
        raise ValueError(f"bad {kind} header {magic:#x} {version:#x} type {typ} {width}x{height} stride {stride}")


# match(reader, ctrl, out, op, length): reads the rest of a match's code and copies its
# `length` words to out[op:]; the one part in which LZ and GLZ differ.
Match = Callable[[_Reader, int, np.ndarray, int, int], None]


def _decode_words(data: bytes, pos: int, n: int, match: Match) -> np.ndarray:
    """The stream both formats share: runs of literal pixels and matches, to n pixel words."""
    out = np.zeros(n, np.uint32)
    r, op = _Reader(data, pos), 0
    while op < n:
        ctrl = r.byte()
        if ctrl < 32:
            count = ctrl + 1
            if op + count > n:
                raise ValueError("literals past the image end")
            out[op : op + count] = r.literals(count)
            op += count
            continue
        length = r.length(ctrl >> 5)
        if op + length > n:
            raise ValueError(f"match at {op} of {length} past the image end")
        match(r, ctrl, out, op, length)
        op += length
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} trailing bytes")
    return out


def _image(words: np.ndarray, height: int, width: int, top_down: int) -> np.ndarray:
    """Pixel words -> (height, width, 4) BGRX, top-down."""
    img = words.astype("<u4").view(np.uint8).reshape(height, width, 4)
    return img if top_down else img[::-1]


def _lz_match(r: _Reader, ctrl: int, out: np.ndarray, op: int, length: int) -> None:
    code = r.byte()
    ofs = ((ctrl & 31) << 8) + code
    if code == 255 and (ctrl & 31) == 31:
        ofs = 8191 + (r.byte() << 8) + r.byte()
    _copy_back(out, op, op - (ofs + 1), length)


def _copy_back(out: np.ndarray, op: int, start: int, length: int) -> None:
    """A match inside the image being decoded (its end already checked): from `start`, before op."""
    if start < 0:
        raise ValueError(f"match at {op} from {start}, before the image start")
    _copy(out, op, out, start, length)


def decode_lz(data: bytes) -> np.ndarray:
    """LZ_RGB32 data -> (height, width, 4) uint8 BGRX with X = 0, top-down."""
    if len(data) < 28:
        raise ValueError("short LZ header")
    magic, version, typ, width, height, stride, top_down = struct.unpack_from(">7I", data, 0)
    _check_header("LZ", magic, version, typ, width, height, stride)
    return _image(_decode_words(data, 28, width * height, _lz_match), height, width, top_down)


class GlzWindow:
    """A client's GLZ window, kept by id: decodes images in order and drops those the
    stream says it may. Lenient about ids (any growing ids work); `SpiceGtkGlzWindow`
    keeps them the way spice-gtk does."""

    def __init__(self) -> None:
        self.images: dict[int, np.ndarray] = {}  # id -> pixel words

    def _ref(self, image_id: int) -> np.ndarray | None:
        return self.images.get(image_id)

    def _add(self, image_id: int, out: np.ndarray, win_head_dist: int) -> None:
        self.images[image_id] = out
        for old in [k for k in self.images if k < image_id - win_head_dist]:
            del self.images[old]

    def decode(self, data: bytes) -> tuple[int, np.ndarray]:
        """GLZ_RGB32 data -> (image id, (height, width, 4) BGRX with X = 0)."""
        if len(data) < 33:
            raise ValueError("short GLZ header")
        magic, version, tb, width, height, stride, image_id, win_head_dist = struct.unpack_from(">IIBIIIQI", data, 0)
        typ, top_down = tb & 15, tb >> 4
        _check_header("GLZ", magic, version, typ, width, height, stride)
        if self._ref(image_id) is not None:
            raise ValueError(f"image id {image_id} again")

        def match(r: _Reader, ctrl: int, out: np.ndarray, op: int, length: int) -> None:
            pixel_flag, pix = (ctrl >> 4) & 1, ctrl & 15
            pix += r.byte() << 4
            code = r.byte()
            image_flag = code >> 6
            if not pixel_flag:
                dist = code & 0x3F
                for k in range(image_flag):
                    dist += r.byte() << (6 + 8 * k)
            else:
                pix += (code & 0x1F) << 12
                dist = 0
                for k in range(image_flag):
                    dist += r.byte() << (8 * k)
                if (code >> 5) & 1:
                    pix += r.byte() << 17
            if dist == 0:
                _copy_back(out, op, op - (pix + 1), length)
                return
            ref = self._ref(image_id - dist)
            if ref is None:
                raise ValueError(f"image {image_id} references image {image_id - dist}, not in the window")
            if pix + length > len(ref):
                raise ValueError("match past the referenced image's end")
            out[op : op + length] = ref[pix : pix + length]

        out = _decode_words(data, 33, width * height, match)
        self._add(image_id, out, win_head_dist)
        return image_id, _image(out, height, width, top_down)


class SpiceGtkGlzWindow(GlzWindow):
    """The window as spice-gtk keeps it (src/decode-glz.c, read for its behaviour): images
    in an array of slots (id modulo its size, 16 at first, doubled when a slot is taken);
    a counter `tail_gap` that advances over filled slots from 0; after each image, the
    image in the slot before tail_gap says which ids may go (its id - win_head_dist), and
    the slots from a counter `oldest` (0 at connect) up to that are emptied, whatever
    image they hold. A reference to an image not in its slot would block spice-gtk's
    display channel: here it raises."""

    def __init__(self) -> None:
        super().__init__()
        self.slots: list[tuple[int, np.ndarray, int] | None] = [None] * 16
        self.tail_gap = 0
        self.oldest = 0

    @property  # type: ignore[override]
    def images(self) -> dict[int, np.ndarray]:
        return {s[0]: s[1] for s in self.slots if s is not None}

    @images.setter
    def images(self, value: dict[int, np.ndarray]) -> None:
        pass  # (the base class's __init__)

    def _ref(self, image_id: int) -> np.ndarray | None:
        s = self.slots[image_id % len(self.slots)]
        return s[1] if s is not None and s[0] == image_id else None

    def _add(self, image_id: int, out: np.ndarray, win_head_dist: int) -> None:
        n = len(self.slots)
        if self.slots[image_id % n] is not None:  # taken: twice the slots, images re-placed by id
            grown: list[tuple[int, np.ndarray, int] | None] = [None] * (2 * n)
            for s in self.slots:
                if s is not None:
                    grown[s[0] % (2 * n)] = s
            self.slots, n = grown, 2 * n
        self.slots[image_id % n] = (image_id, out, win_head_dist)
        while self.tail_gap <= image_id and self.slots[self.tail_gap % n] is not None:
            self.tail_gap += 1
        last = self.slots[(self.tail_gap - 1) % (1 << 64) % n]
        if last is None:
            return
        oldest = last[0] - last[2]
        if oldest < 0:  # spice-gtk computes it in 64 bits: it would wrap and free slots for ever
            raise AssertionError(f"GLZ image {last[0]} has win_head_dist {last[2]}: beyond id 0")
        if oldest - self.oldest >= n:  # every slot gets emptied
            self.slots = [None] * n
        else:
            for k in range(self.oldest, oldest):
                self.slots[k % n] = None
        self.oldest = max(self.oldest, oldest)


PLT1_BE, PLT4_BE, PLT8 = 2, 4, 5
_PLT_BITS = {PLT1_BE: 1, PLT4_BE: 4, PLT8: 8}


def _decode_bytes(data: bytes, pos: int, n: int) -> np.ndarray:
    """LZ_PLT's byte stream: literal runs of 1-byte units and matches of at least 3 bytes
    (length code + 2), distances as in LZ_RGB32, to n bytes."""
    out = bytearray(n)
    r, op = _Reader(data, pos), 0
    while op < n:
        ctrl = r.byte()
        if ctrl < 32:
            count = ctrl + 1
            if op + count > n or r.pos + count > len(data):
                raise ValueError("literals past the image end or the data")
            out[op : op + count] = data[r.pos : r.pos + count]
            r.pos += count
            op += count
            continue
        length = r.length(ctrl >> 5) + 2
        code = r.byte()
        ofs = ((ctrl & 31) << 8) + code
        if code == 255 and (ctrl & 31) == 31:
            ofs = 8191 + (r.byte() << 8) + r.byte()
        start = op - (ofs + 1)
        if start < 0 or op + length > n:
            raise ValueError(f"match at {op} from {start} of {length} outside the image")
        for k in range(length):  # byte by byte: a run overlaps itself
            out[op + k] = out[start + k]
        op += length
    if r.pos != len(data):
        raise ValueError(f"{len(data) - r.pos} trailing bytes")
    return np.frombuffer(bytes(out), np.uint8)


def decode_lz_plt(data: bytes, palette: bytes) -> np.ndarray:
    """LZ_PLT1_BE / PLT4_BE / PLT8 data and its palette (u32 LE entries) -> (height, width,
    4) BGRX with X = 0, top-down. Like spice-gtk, a PLT1 image takes entries 0 and 1 and a
    PLT4 index is taken modulo the palette's size; the padding pixels of a row are dropped."""
    if len(data) < 28:
        raise ValueError("short LZ header")
    magic, version, typ, width, height, stride, top_down = struct.unpack_from(">7I", data, 0)
    if (magic, version) != (LZ_MAGIC, LZ_VERSION) or typ not in _PLT_BITS or width < 1 or height < 1:
        raise ValueError(f"bad LZ_PLT header {magic:#x} {version:#x} type {typ} {width}x{height}")
    bits = _PLT_BITS[typ]
    if stride != (width * bits + 7) // 8:
        raise ValueError(f"stride {stride} for {width} pixels of {bits} bits")
    ents = np.frombuffer(palette, "<u4")
    if len(ents) < (2 if bits == 1 else 1):
        raise ValueError(f"palette of {len(ents)} entries for type {typ}")
    raw = _decode_bytes(data, 28, stride * height).reshape(height, stride)
    if bits == 8:
        idx = raw
        if int(idx.max()) >= len(ents):
            raise ValueError("index beyond the palette")
    else:
        idx = np.unpackbits(raw, axis=1).reshape(height, stride * 8 // bits, bits)
        idx = (idx * (1 << np.arange(bits - 1, -1, -1, dtype=np.uint8))).sum(axis=2)
        idx = idx % len(ents) if bits == 4 else idx
    words = (ents[idx[:, :width]] & 0x00FFFFFF).astype("<u4")
    img = words.view(np.uint8).reshape(height, width, 4)
    return img if top_down else img[::-1]

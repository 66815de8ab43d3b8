"""The declarative layout language: scalars, structs, arrays, pointers and unions.

A message layout is written once as a tree of these types (see messages.py); the
same tree encodes a dict to bytes and decodes bytes back to a dict, so the two
directions can never disagree. Decoding never trusts a length or an offset: every
read is bounds-checked and a bad one raises WireError, which is what makes the
parsers safe to fuzz.
"""

from __future__ import annotations

import struct
from typing import Any


class WireError(ValueError):
    """Bytes that do not match the layout (truncated, out of range, unknown tag)."""


class External:
    """Bytes placed at the very end of a message without being copied into it.

    A shared encoded image payload is written after the per-client part of each
    message as a separate buffer (see `encode_split`), so N clients never cost N
    copies of it. It must be the last thing the layout writes.
    """

    __slots__ = ("buf",)

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def __len__(self) -> int:
        return len(self.buf)


class _Writer:
    """Encoding state: the body so far and the pointers whose targets come later."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.pending: list[tuple[int, Any, Any]] = []
        self.tail: bytes | None = None  # an External, once written

    def append(self, data: Any) -> None:
        """Raw bytes, or an External (which must come last)."""
        if self.tail is not None:
            raise WireError("an External payload must be the last thing in a message")
        if isinstance(data, External):
            self.tail = data.buf
        else:
            self.buf += data

    def flush_pointers(self) -> None:
        # Targets go after the fixed part, in field order, each patched into its slot.
        while self.pending:
            slot, target, value = self.pending.pop(0)
            if value is None:
                continue
            offset = len(self.buf)
            struct.pack_into("<I", self.buf, slot, offset)
            if isinstance(value, (bytes, bytearray, memoryview)):
                self.append(value)  # pre-encoded target
            else:
                target.encode(self, value)


class Type:
    """One layout element. `encode` appends, `decode` reads at pos within buf."""

    def encode(self, w: _Writer, value: Any) -> None:
        raise NotImplementedError

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[Any, int]:
        raise NotImplementedError


def _need(buf: bytes, pos: int, n: int) -> None:
    if n < 0 or pos < 0 or pos + n > len(buf):
        raise WireError(f"truncated: need {n} bytes at {pos}, have {len(buf) - pos}")


class Scalar(Type):
    def __init__(self, fmt: str) -> None:
        self.st = struct.Struct("<" + fmt)
        self.size = self.st.size

    def encode(self, w: _Writer, value: Any) -> None:
        try:
            w.append(self.st.pack(int(value)))
        except struct.error as exc:
            raise WireError(str(exc)) from None

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[int, int]:
        _need(buf, pos, self.size)
        return self.st.unpack_from(buf, pos)[0], pos + self.size


U8, U16, U32, U64 = Scalar("B"), Scalar("H"), Scalar("I"), Scalar("Q")
I16, I32, I64 = Scalar("h"), Scalar("i"), Scalar("q")


class FixedBytes(Type):
    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, w: _Writer, value: Any) -> None:
        if len(value) != self.size:
            raise WireError(f"expected {self.size} bytes, got {len(value)}")
        w.append(value)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[bytes, int]:
        _need(buf, pos, self.size)
        return bytes(buf[pos : pos + self.size]), pos + self.size


class Rest(Type):
    """All remaining bytes of the message (PING padding, bitmap pixels, cursor data)."""

    def encode(self, w: _Writer, value: Any) -> None:
        w.append(value)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[bytes, int]:
        return bytes(buf[pos:]), len(buf)


class SizedBytes(Type):
    """A length prefix then that many bytes (image payloads, NAME)."""

    def __init__(self, length: Scalar = U32) -> None:
        self.length = length

    def encode(self, w: _Writer, value: Any) -> None:
        self.length.encode(w, len(value))
        w.append(value)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[bytes, int]:
        n, pos = self.length.decode(buf, pos, ctx)
        _need(buf, pos, n)
        return bytes(buf[pos : pos + n]), pos + n


class Array(Type):
    """A count prefix then that many items; the count is checked against what is left."""

    def __init__(self, count: Scalar, item: Type, min_item_size: int = 1) -> None:
        self.count, self.item, self.min_item_size = count, item, min_item_size

    def encode(self, w: _Writer, value: Any) -> None:
        self.count.encode(w, len(value))
        for v in value:
            self.item.encode(w, v)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[list[Any], int]:
        n, pos = self.count.decode(buf, pos, ctx)
        _need(buf, pos, n * self.min_item_size)  # refuse absurd counts before looping
        out = []
        for _ in range(n):
            v, pos = self.item.decode(buf, pos, ctx)
            out.append(v)
        return out, pos


class Struct(Type):
    """Named fields in order; encodes from a dict, decodes to a dict."""

    def __init__(self, name: str, fields: list[tuple[str, Type]]) -> None:
        self.name, self.fields = name, fields
        self.size = sum(getattr(t, "size", 0) for _, t in fields)

    def encode(self, w: _Writer, value: Any) -> None:
        for fname, ftype in self.fields:
            if isinstance(ftype, (Switch, CountedBy)):
                ftype.encode_in(w, value)
                continue
            try:
                v = value[fname]
            except KeyError:
                raise WireError(f"{self.name}: missing field {fname!r}") from None
            ftype.encode(w, v)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        for fname, ftype in self.fields:
            if isinstance(ftype, (Switch, CountedBy)):
                pos = ftype.decode_in(buf, pos, ctx, out)
                continue
            out[fname], pos = ftype.decode(buf, pos, ctx)
        return out, pos


class Ptr(Type):
    """A u32 offset from the start of the message body (0 = NULL) to a target."""

    size = 4

    def __init__(self, target: Type) -> None:
        self.target = target

    def encode(self, w: _Writer, value: Any) -> None:
        w.pending.append((len(w.buf), self.target, value))
        w.append(b"\0\0\0\0")

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[Any, int]:
        offset, pos = U32.decode(buf, pos, ctx)
        if offset == 0:
            return None, pos
        if offset >= len(buf):
            raise WireError(f"pointer {offset} beyond body of {len(buf)} bytes")
        depth = ctx.get("_depth", 0)
        if depth > 8:
            raise WireError("pointers nested too deep")
        ctx["_depth"] = depth + 1
        value, _ = self.target.decode(buf, offset, ctx)
        ctx["_depth"] = depth
        return value, pos


class Switch(Type):
    """Fields chosen by an earlier field's value, merged into the enclosing struct."""

    def __init__(self, tag: str, cases: dict[int, list[tuple[str, Type]]], default: list[tuple[str, Type]] | None = None) -> None:
        self.tag, self.cases, self.default = tag, cases, default

    def _fields(self, tag_value: int) -> list[tuple[str, Type]]:
        fields = self.cases.get(int(tag_value), self.default)
        if fields is None:
            raise WireError(f"unknown {self.tag} {tag_value}")
        return fields

    def encode_in(self, w: _Writer, value: dict[str, Any]) -> None:
        Struct("case", self._fields(value[self.tag])).encode(w, value)

    def decode_in(self, buf: bytes, pos: int, ctx: dict[str, Any], out: dict[str, Any]) -> int:
        part, pos = Struct("case", self._fields(out[self.tag])).decode(buf, pos, ctx)
        out.update(part)
        return pos


class CountedBy(Type):
    """An array whose count is an earlier field of the same struct (MONITORS_CONFIG's heads
    follow `max_allowed`, not their count). Encoding checks the two agree."""

    def __init__(self, name: str, count_field: str, item: Type, min_item_size: int = 1) -> None:
        self.name, self.count_field, self.item, self.min_item_size = name, count_field, item, min_item_size

    def encode_in(self, w: _Writer, value: dict[str, Any]) -> None:
        items = value[self.name]
        if len(items) != value[self.count_field]:
            raise WireError(f"{self.count_field} is {value[self.count_field]} but {len(items)} {self.name} given")
        for v in items:
            self.item.encode(w, v)

    def decode_in(self, buf: bytes, pos: int, ctx: dict[str, Any], out: dict[str, Any]) -> int:
        n = out[self.count_field]
        _need(buf, pos, n * self.min_item_size)
        items = []
        for _ in range(n):
            v, pos = self.item.decode(buf, pos, ctx)
            items.append(v)
        out[self.name] = items
        return pos


def encode(layout: Type, value: Any) -> bytes:
    head, tail = encode_split(layout, value)
    return head if tail is None else head + tail


def encode_split(layout: Type, value: Any) -> tuple[bytes, bytes | None]:
    """(everything before an External, the External's buffer or None): the message is
    head + tail, and the caller writes the two without joining them."""
    w = _Writer()
    layout.encode(w, value)
    w.flush_pointers()
    return bytes(w.buf), w.tail


def decode(layout: Type, buf: bytes, exact: bool = False) -> Any:
    value, pos = layout.decode(buf, 0, {})
    if exact and pos != len(buf):
        raise WireError(f"{len(buf) - pos} trailing bytes")
    return value

"""The SPICE agent protocol (VDAgent messages inside MAIN AGENT_DATA), sans-IO.

Facts from spice-protocol's vd_agent.h and spice-gtk's channel-main.c, in our words:
- Each agent message is a 20-byte header {protocol u32 = 1, type u32, opaque u64, size u32}
  then `size` bytes. A message travels as consecutive AGENT_DATA bodies of at most 2048
  bytes; the first holds the header and as much data as fits. A receiver treats the
  AGENT_DATA bodies as one byte stream (a header may even straddle two bodies).
- Flow control is in AGENT_DATA messages: each one costs the sender a token. The server
  grants the client `agent_tokens` in MAIN_INIT and returns them with AGENT_TOKEN; the
  client grants the server tokens in AGENT_START and returns them with its AGENT_TOKEN.
- The clipboard messages carry a 4-byte selection prefix (u8 selection, 3 reserved) when
  the agent announced CLIPBOARD_SELECTION (spice-gtk keys it on the agent's caps alone).

`AgentLink` is one client's side of that: reassembly under per-type size bounds, both
token counts, and an outgoing queue cut into chunks only when a token allows one, so a
client that never returns tokens holds at most its bounded queue. Layouts are declared
once, in `LAYOUTS`, with the schema types; `decode_message`/`encode_message` use them.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from .caps import caps_to_words, words_to_caps
from .enums import VD_AGENT_MAX_DATA_SIZE, VD_AGENT_PROTOCOL, AgentMsg
from .schema import I32, U8, U32, U64, CountedBy, FixedBytes, Rest, Struct, Type, WireError, _need, _Writer, decode, encode

HEADER = Struct("VDAgentMessage", [("protocol", U32), ("type", U32), ("opaque", U64), ("size", U32)])
HEADER_SIZE = HEADER.size  # 20


class U32Words(Type):
    """The rest of the message as u32 words (GRAB's types, ANNOUNCE_CAPABILITIES' caps); a
    trailing partial word is an error."""

    def encode(self, w: _Writer, value: Any) -> None:
        w.append(struct.pack(f"<{len(value)}I", *value))

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[list[int], int]:
        n, rem = divmod(len(buf) - pos, 4)
        if rem:
            raise WireError(f"{rem} bytes after the last whole u32 word")
        _need(buf, pos, 4 * n)
        return list(struct.unpack_from(f"<{n}I", buf, pos)), len(buf)


MON_CONFIG = Struct("VDAgentMonConfig", [("height", U32), ("width", U32), ("depth", U32), ("x", I32), ("y", I32)])
SELECTION = [("selection", U8), ("reserved", FixedBytes(3))]  # with CLIPBOARD_SELECTION

# (type, with the selection prefix) -> layout. Types whose layout has no selection prefix
# are keyed (type, False) only.
_BASE: dict[AgentMsg, list[tuple[str, Type]]] = {
    AgentMsg.MONITORS_CONFIG: [
        ("num_of_monitors", U32),
        ("flags", U32),
        ("monitors", CountedBy("monitors", "num_of_monitors", MON_CONFIG, MON_CONFIG.size)),
        ("physical_sizes", Rest()),  # with FLAG_PHYSICAL_SIZE: u16 height, u16 width each
    ],
    AgentMsg.REPLY: [("type", U32), ("error", U32)],
    AgentMsg.DISPLAY_CONFIG: [("flags", U32), ("depth", U32)],
    AgentMsg.ANNOUNCE_CAPABILITIES: [("request", U32), ("caps", U32Words())],
    AgentMsg.FILE_XFER_START: [("id", U32), ("data", Rest())],
    AgentMsg.FILE_XFER_STATUS: [("id", U32), ("result", U32), ("data", Rest())],
    AgentMsg.FILE_XFER_DATA: [("id", U32), ("size", U64), ("data", Rest())],
    AgentMsg.CLIENT_DISCONNECTED: [],
    AgentMsg.MAX_CLIPBOARD: [("max", I32)],
}
_CLIPBOARD: dict[AgentMsg, list[tuple[str, Type]]] = {
    AgentMsg.CLIPBOARD: [("clip_type", U32), ("data", Rest())],
    AgentMsg.CLIPBOARD_GRAB: [("types", U32Words())],
    AgentMsg.CLIPBOARD_REQUEST: [("clip_type", U32)],
    AgentMsg.CLIPBOARD_RELEASE: [],
}
LAYOUTS: dict[tuple[AgentMsg, bool], Struct] = {(t, False): Struct(t.name, f) for t, f in _BASE.items()}
for _t, _f in _CLIPBOARD.items():
    LAYOUTS[(_t, False)] = Struct(_t.name, _f)
    LAYOUTS[(_t, True)] = Struct(_t.name, SELECTION + _f)

# Bounds on one incoming message's data, by type (a header claiming more is refused before
# anything is buffered). CLIPBOARD's bound is the AgentLink's `max_clipboard`.
SMALL_MESSAGE = 4096
FILE_XFER_DATA_MAX = 1 << 20  # spice-gtk sends 64 KiB pieces
DATA_LIMITS: dict[int, int] = {int(AgentMsg.FILE_XFER_DATA): FILE_XFER_DATA_MAX + 12}


class AgentError(ValueError):
    """The client broke the agent protocol (sizes, tokens, framing): its connection ends."""


@dataclass(frozen=True)
class AgentMessage:
    type: int
    opaque: int
    data: bytes


def has_selection(msg_type: int) -> bool:
    return msg_type in _CLIPBOARD


def decode_message(msg_type: int, data: bytes, selection: bool) -> dict[str, Any]:
    """The fields of one whole message; raises WireError (KeyError for a type we do not take)."""
    layout = LAYOUTS[(AgentMsg(msg_type), selection and has_selection(msg_type))]
    out = decode(layout, data, exact=True)
    if msg_type == AgentMsg.FILE_XFER_DATA and out["size"] != len(out["data"]):
        raise WireError(f"FILE_XFER_DATA says {out['size']} bytes but carries {len(out['data'])}")
    return out


def encode_message(msg_type: AgentMsg, fields: dict[str, Any], selection: bool = False) -> bytes:
    if selection and has_selection(msg_type):
        fields = {"selection": 0, "reserved": b"\0\0\0", **fields}
    return encode(LAYOUTS[(msg_type, selection and has_selection(msg_type))], fields)


def caps_message(caps: frozenset[int], request: bool) -> bytes:
    return encode_message(AgentMsg.ANNOUNCE_CAPABILITIES, {"request": int(request), "caps": caps_to_words(caps) or [0]})


def caps_of(fields: dict[str, Any]) -> frozenset[int]:
    return words_to_caps(fields["caps"][:8])  # more words than any cap defined: ignored


def header(msg_type: int, size: int, opaque: int = 0) -> bytes:
    return encode(HEADER, {"protocol": VD_AGENT_PROTOCOL, "type": int(msg_type), "opaque": opaque, "size": size})


def chunks(msg_type: int, data: bytes, opaque: int = 0) -> list[bytes]:
    """One message as AGENT_DATA bodies of at most VD_AGENT_MAX_DATA_SIZE bytes each."""
    whole = header(msg_type, len(data), opaque) + data
    return [whole[i : i + VD_AGENT_MAX_DATA_SIZE] for i in range(0, len(whole), VD_AGENT_MAX_DATA_SIZE)]


class AgentStream:
    """Incoming AGENT_DATA bodies -> whole messages; the buffer holds at most one message,
    and a header that claims more than its type's bound is refused before buffering."""

    def __init__(self, max_clipboard: int) -> None:
        self.max_clipboard = max_clipboard
        self._buf = bytearray()
        self._head: dict[str, int] | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def limit(self, msg_type: int) -> int:
        if msg_type == AgentMsg.CLIPBOARD:
            return self.max_clipboard + 8
        return DATA_LIMITS.get(msg_type, SMALL_MESSAGE)

    def feed(self, chunk: bytes) -> list[AgentMessage]:
        if len(chunk) > VD_AGENT_MAX_DATA_SIZE:
            raise AgentError(f"AGENT_DATA of {len(chunk)} bytes (at most {VD_AGENT_MAX_DATA_SIZE})")
        out: list[AgentMessage] = []
        view = memoryview(chunk)
        while view:
            if self._head is None:
                take = min(HEADER_SIZE - len(self._buf), len(view))
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) < HEADER_SIZE:
                    break
                head = decode(HEADER, bytes(self._buf))
                self._buf.clear()
                if head["protocol"] != VD_AGENT_PROTOCOL:
                    raise AgentError(f"agent protocol {head['protocol']} (we speak {VD_AGENT_PROTOCOL})")
                if head["size"] > self.limit(head["type"]):
                    raise AgentError(f"agent message type {head['type']} of {head['size']} bytes (at most {self.limit(head['type'])})")
                self._head = head
            head = self._head
            take = min(head["size"] - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == head["size"]:
                out.append(AgentMessage(head["type"], head["opaque"], bytes(self._buf)))
                self._buf = bytearray()
                self._head = None
        return out


@dataclass
class _Outgoing:
    msg_type: int
    head: bytes  # the message's own fields
    tail: bytes  # a large payload after them, shared with whoever gave it (a clipboard held
    # for every client): sliced into chunks, never joined to the head or copied whole
    offset: int = 0  # bytes of header + head + tail already cut into chunks
    key: Any = None  # a later message with the same key replaces this one while it waits

    @property
    def size(self) -> int:
        return len(self.head) + len(self.tail)

    def piece(self, start: int, end: int) -> bytes:
        """Bytes [start, end) of head + tail."""
        h = len(self.head)
        return self.head[start:end] + self.tail[max(start - h, 0) : max(end - h, 0)]


class AgentLink:
    """One client's agent protocol state: tokens both ways, reassembly, the outgoing queue.

    `receive(body)` for each AGENT_DATA (one of the client's tokens), `returned()` for the
    tokens to give back now (an AGENT_TOKEN, batched at half the grant), `start(tokens)` for
    AGENT_START, `credit(n)` for the client's AGENT_TOKEN, `send(type, data)` to queue a
    message and `next_chunk()` for the next body the client's tokens allow (None: none).
    """

    def __init__(self, grant: int, max_clipboard: int, max_queued: int) -> None:
        self.grant = grant  # tokens we gave in MAIN_INIT
        self.max_queued = max_queued  # bytes of messages waiting for the client's tokens
        self.stream = AgentStream(max_clipboard)
        self.started = False
        self._client_tokens = grant  # AGENT_DATA the client may still send us
        self._owed = 0  # received and handled, not yet returned
        self._our_tokens = 0  # AGENT_DATA we may still send (AGENT_START, AGENT_TOKEN)
        self._queue: deque[_Outgoing] = deque()
        self.queued_bytes = 0
        self.received_messages = 0
        self.sent_messages = 0

    def start(self, tokens: int) -> None:
        if self.started:
            raise AgentError("AGENT_START twice")
        self.started = True
        self._our_tokens = tokens

    def receive(self, body: bytes) -> list[AgentMessage]:
        """The whole messages completed by one AGENT_DATA body. Before AGENT_START there is
        no agent for the client yet: the body is dropped (as upstream drops data for an
        agent that is not there), nothing is buffered."""
        if not self.started:
            return []
        if self._client_tokens <= 0:
            raise AgentError(f"AGENT_DATA without a token (granted {self.grant}, none returned yet)")
        self._client_tokens -= 1
        self._owed += 1
        msgs = self.stream.feed(body)
        self.received_messages += len(msgs)
        return msgs

    def returned(self) -> int:
        """Tokens to return now (0: keep them a while): at half the grant, so the client
        always has some left and one AGENT_TOKEN answers many AGENT_DATA."""
        if self._owed < max(1, self.grant // 2):
            return 0
        n, self._owed = self._owed, 0
        self._client_tokens += n
        return n

    def credit(self, tokens: int) -> None:
        if not self.started:
            return  # (dropped, like data before AGENT_START)
        self._our_tokens = min(self._our_tokens + tokens, 0xFFFFFFFF)

    def send(self, msg_type: int, data: bytes, tail: bytes = b"", key: Any = None) -> None:
        """Queue a message whose data is `data` + `tail` (the tail is not copied). With a
        `key`, it replaces a message of the same key that has not started going out (a
        newer clipboard grab makes the older one moot): a flood of them waits as one."""
        out = _Outgoing(msg_type, data, tail, key=key)
        if key is not None:
            for i, old in enumerate(self._queue):
                if old.key == key and old.offset == 0:
                    self.queued_bytes -= HEADER_SIZE + old.size
                    del self._queue[i]
                    break
        size = HEADER_SIZE + out.size
        if self.queued_bytes + size > self.max_queued:
            raise AgentError(f"{self.queued_bytes} bytes of agent messages wait for the client's tokens (it returns none)")
        self._queue.append(out)
        self.queued_bytes += size

    @property
    def pending(self) -> bool:
        return bool(self._queue)

    def next_chunk(self) -> bytes | None:
        if not self._queue or self._our_tokens <= 0:
            return None
        out = self._queue[0]
        total = HEADER_SIZE + out.size
        if out.offset == 0:
            piece = header(out.msg_type, out.size) + out.piece(0, VD_AGENT_MAX_DATA_SIZE - HEADER_SIZE)
        else:
            start = out.offset - HEADER_SIZE
            piece = out.piece(start, start + VD_AGENT_MAX_DATA_SIZE)
        out.offset += len(piece)
        self.queued_bytes -= len(piece)
        if out.offset >= total:
            self._queue.popleft()
            self.sent_messages += 1
        self._our_tokens -= 1
        return piece

"""The frames between the VM source and its helper process (sans-IO, standard library only).

The helper (vm_helper.py) runs spice-gtk under the system Python; this module is
imported by both sides, so it must not import numpy, Twisted or anything outside the
standard library. Pixels never travel here: they are in shared memory, and frames
only say which area of it changed.

A frame is a 5-byte header, type (u8) and payload length (u32, little-endian),
then the payload. `Decoder.receive_data(bytes)` returns the typed messages every
complete frame held; a malformed frame raises `ProtocolError` (and every later
call raises it again): a peer speaking nonsense is cut off, never half-understood.
The decoder keeps at most one partial frame (<= MAX_PAYLOAD + 5 bytes; a clipboard
frame, at most MAX_CLIPBOARD + 69).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import ClassVar

HEADER = struct.Struct("<BI")
MAX_PAYLOAD = 1 << 21  # a 512x512 RGBA cursor is 1 MiB; nothing else comes near
MAX_CURSOR_SIDE = 512
MAX_SURFACE_SIDE = 16384
MAX_TEXT = 4096
MAX_RECTS = 4096


class ProtocolError(ValueError):
    """The peer sent a frame this protocol does not allow."""


# --- helper -> source -------------------------------------------------------------------
class State:
    CONNECTING = 0  # the helper is trying to reach the upstream server
    CONNECTED = 1  # the main channel is up (the display follows with a Surface)
    LOST = 2  # the upstream went away, or was never reached; the helper exits after this
    REFUSED = 3  # the upstream refused our password; the helper exits after this
    FAILED = 4  # anything else that ends this helper (unsupported surface format, ...)

    NAMES: ClassVar[dict[int, str]] = {0: "connecting", 1: "connected", 2: "lost", 3: "refused", 4: "failed"}


@dataclass(frozen=True)
class StateChanged:
    TYPE: ClassVar[int] = 1
    state: int
    text: str = ""


@dataclass(frozen=True)
class Surface:
    """A new primary surface: its pixels (B G R X, stride width*4) start at offset 0 of the
    shared memory, which the helper has grown to hold them."""

    TYPE: ClassVar[int] = 2
    width: int
    height: int


@dataclass(frozen=True)
class Damage:
    """These (x, y, w, h) areas of the shared memory hold new pixels."""

    TYPE: ClassVar[int] = 3
    rects: tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True)
class CursorSet:
    """A cursor shape, straight-alpha RGBA bytes (width*height*4); 0x0 is the default cursor."""

    TYPE: ClassVar[int] = 4
    width: int
    height: int
    hot_x: int
    hot_y: int
    rgba: bytes = field(repr=False)


@dataclass(frozen=True)
class CursorMove:
    TYPE: ClassVar[int] = 5
    x: int
    y: int


@dataclass(frozen=True)
class CursorHide:
    TYPE: ClassVar[int] = 6


@dataclass(frozen=True)
class Locks:
    """The upstream's keyboard lock LEDs: bit 0 scroll, 1 num, 2 caps."""

    TYPE: ClassVar[int] = 7
    modifiers: int


@dataclass(frozen=True)
class MouseMode:
    """The upstream's mouse mode: 1 server (relative motion), 2 client (absolute)."""

    TYPE: ClassVar[int] = 8
    mode: int


@dataclass(frozen=True)
class Oversized:
    """The upstream announced a primary surface past the source's bound (Connect's
    max_pixels/max_side): nothing of it is copied, the shared memory is not grown, and no
    Damage follows until a Surface that fits."""

    TYPE: ClassVar[int] = 9
    width: int
    height: int


# --- source -> helper -------------------------------------------------------------------
@dataclass(frozen=True)
class Connect:
    """What to connect to; the first frame the helper reads (the password never goes on argv).
    `max_pixels` and `max_side` bound the primary surfaces it copies (--max-surface)."""

    TYPE: ClassVar[int] = 64
    host: str
    port: int = 0
    tls_port: int = 0
    password: str = field(default="", repr=False)
    ca_file: str = ""
    max_pixels: int = MAX_SURFACE_SIDE * MAX_SURFACE_SIDE
    max_side: int = MAX_SURFACE_SIDE


@dataclass(frozen=True)
class Key:
    """A set-1 scancode, +0x100 for E0-extended keys (spice-gtk's own convention)."""

    TYPE: ClassVar[int] = 65
    scancode: int
    pressed: bool


@dataclass(frozen=True)
class Position:
    TYPE: ClassVar[int] = 66
    x: int
    y: int
    buttons: int


@dataclass(frozen=True)
class Motion:
    TYPE: ClassVar[int] = 67
    dx: int
    dy: int
    buttons: int


@dataclass(frozen=True)
class Button:
    """Button 1 left, 2 middle, 3 right, 4/5 wheel; `buttons` the mask held after it."""

    TYPE: ClassVar[int] = 68
    button: int
    pressed: bool
    buttons: int


@dataclass(frozen=True)
class SetLocks:
    TYPE: ClassVar[int] = 69
    modifiers: int


Message = (
    StateChanged
    | Surface
    | Damage
    | CursorSet
    | CursorMove
    | CursorHide
    | Locks
    | MouseMode
    | Oversized
    | Connect
    | Key
    | Position
    | Motion
    | Button
    | SetLocks
)

_U32X2 = struct.Struct("<II")
_RECT = struct.Struct("<IIII")
_CURSOR = struct.Struct("<HHHH")
_I32X2 = struct.Struct("<ii")
_KEY = struct.Struct("<HB")
_POINTER = struct.Struct("<iiB")
_BUTTON = struct.Struct("<BBB")
_COUNT = struct.Struct("<H")


def _text(value: str) -> bytes:
    data = value.encode("utf-8")
    if len(data) > MAX_TEXT:
        data = data[:MAX_TEXT].decode("utf-8", "ignore").encode("utf-8")
    return data


def encode(msg: Message | AudioMessage) -> bytes:
    """One frame for `msg`. Raises ValueError for a message no decoder would accept."""
    payload = _audio_payload(msg) if isinstance(msg, AudioMessage) else _payload(msg)
    if len(payload) > _MAX_LENGTH.get(msg.TYPE, MAX_PAYLOAD):
        raise ValueError(f"{type(msg).__name__}: payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    return HEADER.pack(msg.TYPE, len(payload)) + payload


def _payload(msg: Message) -> bytes:
    if isinstance(msg, StateChanged):
        return bytes([msg.state]) + _text(msg.text)
    if isinstance(msg, Surface | Oversized):
        return _U32X2.pack(msg.width, msg.height)
    if isinstance(msg, Damage):
        if len(msg.rects) > MAX_RECTS:
            raise ValueError(f"Damage: {len(msg.rects)} rects, at most {MAX_RECTS} a frame")
        return _COUNT.pack(len(msg.rects)) + b"".join(_RECT.pack(*r) for r in msg.rects)
    if isinstance(msg, CursorSet):
        return _CURSOR.pack(msg.width, msg.height, msg.hot_x, msg.hot_y) + msg.rgba
    if isinstance(msg, CursorMove):
        return _I32X2.pack(msg.x, msg.y)
    if isinstance(msg, CursorHide):
        return b""
    if isinstance(msg, (Locks, SetLocks)):
        return bytes([msg.modifiers & 7])
    if isinstance(msg, MouseMode):
        return bytes([msg.mode])
    if isinstance(msg, Connect):
        d = {
            "host": msg.host,
            "port": msg.port,
            "tls_port": msg.tls_port,
            "password": msg.password,
            "ca_file": msg.ca_file,
            "max_pixels": msg.max_pixels,
            "max_side": msg.max_side,
        }
        return json.dumps(d).encode()
    if isinstance(msg, Key):
        return _KEY.pack(msg.scancode, int(msg.pressed))
    if isinstance(msg, Position):
        return _POINTER.pack(msg.x, msg.y, msg.buttons)
    if isinstance(msg, Motion):
        return _POINTER.pack(msg.dx, msg.dy, msg.buttons)
    if isinstance(msg, Button):
        return _BUTTON.pack(msg.button, int(msg.pressed), msg.buttons)
    if hasattr(msg, "payload"):  # the agent's frames encode themselves (their block below)
        return msg.payload()
    raise TypeError(f"not a message: {msg!r}")


def _exact(payload: bytes, st: struct.Struct, name: str) -> tuple:
    if len(payload) != st.size:
        raise ProtocolError(f"{name}: payload is {len(payload)} bytes, expected {st.size}")
    return st.unpack(payload)


def _flag(v: int, name: str) -> bool:
    if v > 1:
        raise ProtocolError(f"{name}: flag {v} is neither 0 nor 1")
    return bool(v)


def _one_byte(payload: bytes, name: str, allowed: range) -> int:
    if len(payload) != 1:
        raise ProtocolError(f"{name}: payload is {len(payload)} bytes, expected 1")
    if payload[0] not in allowed:
        raise ProtocolError(f"{name}: value {payload[0]} out of range")
    return payload[0]


def _decode_text(data: bytes, name: str) -> str:
    if len(data) > MAX_TEXT:
        raise ProtocolError(f"{name}: text of {len(data)} bytes is over {MAX_TEXT}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"{name}: text is not UTF-8 ({exc.reason})") from None


def _decode_state(p: bytes) -> StateChanged:
    if not p:
        raise ProtocolError("StateChanged: empty payload")
    if p[0] not in State.NAMES:
        raise ProtocolError(f"StateChanged: unknown state {p[0]}")
    return StateChanged(p[0], _decode_text(p[1:], "StateChanged"))


def _decode_surface(p: bytes) -> Surface:
    w, h = _exact(p, _U32X2, "Surface")
    if not (0 < w <= MAX_SURFACE_SIDE and 0 < h <= MAX_SURFACE_SIDE):
        raise ProtocolError(f"Surface: size {w}x{h} out of range")
    return Surface(w, h)


def _decode_oversized(p: bytes) -> Oversized:
    w, h = _exact(p, _U32X2, "Oversized")
    if not (w and h):
        raise ProtocolError(f"Oversized: size {w}x{h} out of range")
    return Oversized(w, h)


def _decode_damage(p: bytes) -> Damage:
    if len(p) < 2:
        raise ProtocolError("Damage: no rect count")
    (n,) = _COUNT.unpack_from(p)
    if n > MAX_RECTS or len(p) != 2 + n * _RECT.size:
        raise ProtocolError(f"Damage: {len(p) - 2} bytes do not hold {n} rects")
    rects = []
    for i in range(n):
        x, y, w, h = _RECT.unpack_from(p, 2 + i * _RECT.size)
        if w == 0 or h == 0 or x + w > MAX_SURFACE_SIDE or y + h > MAX_SURFACE_SIDE:
            raise ProtocolError(f"Damage: rect {(x, y, w, h)} out of range")
        rects.append((x, y, w, h))
    return Damage(tuple(rects))


def _decode_cursor(p: bytes) -> CursorSet:
    if len(p) < _CURSOR.size:
        raise ProtocolError("CursorSet: short header")
    w, h, hx, hy = _CURSOR.unpack_from(p)
    if w > MAX_CURSOR_SIDE or h > MAX_CURSOR_SIDE or (w == 0) != (h == 0):
        raise ProtocolError(f"CursorSet: size {w}x{h} out of range")
    if len(p) != _CURSOR.size + w * h * 4:
        raise ProtocolError(f"CursorSet: {len(p) - _CURSOR.size} bytes of pixels for {w}x{h}")
    if w and (hx >= w or hy >= h):
        raise ProtocolError(f"CursorSet: hot spot {(hx, hy)} outside {w}x{h}")
    return CursorSet(w, h, hx, hy, bytes(p[_CURSOR.size :]))


def _decode_connect(p: bytes) -> Connect:
    try:
        d = json.loads(_decode_text(p, "Connect"))
    except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested past the stack
        raise ProtocolError(f"Connect: not JSON ({exc})") from None
    if not isinstance(d, dict) or set(d) != {"host", "port", "tls_port", "password", "ca_file", "max_pixels", "max_side"}:
        raise ProtocolError("Connect: wrong fields")
    if type(d["max_pixels"]) is not int or not 0 < d["max_pixels"] <= MAX_SURFACE_SIDE * MAX_SURFACE_SIDE:
        raise ProtocolError("Connect: max_pixels out of range")
    if type(d["max_side"]) is not int or not 0 < d["max_side"] <= MAX_SURFACE_SIDE:
        raise ProtocolError("Connect: max_side out of range")
    for k in ("host", "password", "ca_file"):
        if not isinstance(d[k], str):
            raise ProtocolError(f"Connect: {k} is not a string")
    for k in ("port", "tls_port"):
        if type(d[k]) is not int or not 0 <= d[k] <= 65535:
            raise ProtocolError(f"Connect: {k} is not a port")
    if not d["host"] or not (d["port"] or d["tls_port"]):
        raise ProtocolError("Connect: needs a host and a port")
    return Connect(**d)


def _decode_key(p: bytes) -> Key:
    sc, pressed = _exact(p, _KEY, "Key")
    if sc == 0 or sc > 0x1FF:
        raise ProtocolError(f"Key: scancode {sc:#x} out of range")
    return Key(sc, _flag(pressed, "Key"))


def _decode_button(p: bytes) -> Button:
    b, pressed, mask = _exact(p, _BUTTON, "Button")
    if not 1 <= b <= 5 or mask > 7:
        raise ProtocolError(f"Button: button {b} / mask {mask} out of range")
    return Button(b, _flag(pressed, "Button"), mask)


def _decode_pointer(p: bytes, cls: type, name: str) -> Position | Motion:
    a, b, mask = _exact(p, _POINTER, name)
    if mask > 7:
        raise ProtocolError(f"{name}: button mask {mask} out of range")
    return cls(a, b, mask)


def _decode_empty(p: bytes) -> CursorHide:
    if p:
        raise ProtocolError(f"CursorHide: payload of {len(p)} bytes, expected none")
    return CursorHide()


_DECODERS = {
    StateChanged.TYPE: _decode_state,
    Surface.TYPE: _decode_surface,
    Damage.TYPE: _decode_damage,
    CursorSet.TYPE: _decode_cursor,
    CursorMove.TYPE: lambda p: CursorMove(*_exact(p, _I32X2, "CursorMove")),
    CursorHide.TYPE: _decode_empty,
    Locks.TYPE: lambda p: Locks(_one_byte(p, "Locks", range(8))),
    MouseMode.TYPE: lambda p: MouseMode(_one_byte(p, "MouseMode", range(1, 3))),
    Oversized.TYPE: _decode_oversized,
    Connect.TYPE: _decode_connect,
    Key.TYPE: _decode_key,
    Position.TYPE: lambda p: _decode_pointer(p, Position, "Position"),
    Motion.TYPE: lambda p: _decode_pointer(p, Motion, "Motion"),
    Button.TYPE: _decode_button,
    SetLocks.TYPE: lambda p: SetLocks(_one_byte(p, "SetLocks", range(8))),
}
_MAX_LENGTH: dict[int, int] = {}  # frame types allowed past MAX_PAYLOAD
HELPER_TYPES = frozenset(range(1, 10))  # what the helper may send
SOURCE_TYPES = frozenset(range(64, 70))  # what the source may send


class Decoder:
    """Bytes in, messages out. `accept` limits the types this side may receive."""

    def __init__(self, accept: frozenset[int] | None = None) -> None:
        self._buf = bytearray()
        self._accept = accept
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def receive_data(self, data: bytes) -> list[Message]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[Message] = []
        try:
            while len(self._buf) >= HEADER.size:
                kind, length = HEADER.unpack_from(self._buf)
                if kind not in _DECODERS or (self._accept is not None and kind not in self._accept):
                    raise ProtocolError(f"unknown or unexpected frame type {kind}")
                if length > _MAX_LENGTH.get(kind, MAX_PAYLOAD):
                    raise ProtocolError(f"frame type {kind}: length {length} is over {_MAX_LENGTH.get(kind, MAX_PAYLOAD)}")
                end = HEADER.size + length
                if len(self._buf) < end:
                    break
                payload = bytes(self._buf[HEADER.size : end])
                del self._buf[:end]
                out.append(_DECODERS[kind](payload))
        except ProtocolError as exc:
            self._error = exc
            self._buf = bytearray()
            raise
        return out


# --- the agent: clipboard and display size, passed through to the VM's own agent --------
# (frames 32+ from the helper, 96+ from the source; a selection's contents may be as large
# as MAX_CLIPBOARD, so these frames have their own bound)
MAX_CLIPBOARD = 16 * 1024 * 1024  # as sources/desktop_agent.py (not imported: stdlib only here)
CLIP_SELECTIONS = ("CLIPBOARD", "PRIMARY")  # index = the byte on the wire (as VDAgent numbers them)
CLIP_KINDS = {1: "text/plain;charset=utf-8", 2: "image/png"}  # byte -> MIME type
_CLIP_KIND_BYTES = {v: k for k, v in CLIP_KINDS.items()}
_CLIP_HEAD = struct.Struct("<BB")  # selection, count
_CLIP_ITEM = struct.Struct("<BI")  # kind, length


class AgentFlags:
    CONNECTED = 1  # the upstream has an agent
    CLIPBOARD = 2  # it takes and gives clipboard contents (by demand)
    PRIMARY = 4  # it knows selections other than CLIPBOARD
    MONITORS = 8  # it follows a monitor config (resize)


@dataclass(frozen=True)
class AgentState:
    """The upstream's agent came or went, with what it can do (AgentFlags)."""

    TYPE: ClassVar[int] = 32
    flags: int

    def payload(self) -> bytes:
        return bytes([self.flags & 15])


@dataclass(frozen=True)
class VmClipboard:
    """The VM's `selection` now holds `contents` (MIME type -> bytes; empty: released)."""

    TYPE: ClassVar[int] = 33
    selection: str
    contents: dict[str, bytes] = field(default_factory=dict)

    def payload(self) -> bytes:
        return _clip_payload(self.selection, self.contents)


@dataclass(frozen=True)
class SetClipboard:
    """A client's copy for the VM: it should own `selection` with `contents` (empty: release)."""

    TYPE: ClassVar[int] = 96
    selection: str
    contents: dict[str, bytes] = field(default_factory=dict)

    def payload(self) -> bytes:
        return _clip_payload(self.selection, self.contents)


@dataclass(frozen=True)
class SetDisplaySize:
    """The controlling client asks for this size of the VM's first monitor."""

    TYPE: ClassVar[int] = 97
    width: int
    height: int

    def payload(self) -> bytes:
        return _U32X2.pack(self.width, self.height)


def _clip_payload(selection: str, contents: dict[str, bytes]) -> bytes:
    if selection not in CLIP_SELECTIONS:
        raise ValueError(f"clipboard: unknown selection {selection!r}")
    if sum(len(v) for v in contents.values()) > MAX_CLIPBOARD:
        raise ValueError("clipboard: contents over MAX_CLIPBOARD")
    out = [_CLIP_HEAD.pack(CLIP_SELECTIONS.index(selection), len(contents))]
    for mime, data in contents.items():
        out += [_CLIP_ITEM.pack(_CLIP_KIND_BYTES[mime], len(data)), data]
    return b"".join(out)


def _decode_clip(p: bytes, name: str) -> tuple[str, dict[str, bytes]]:
    if len(p) < _CLIP_HEAD.size:
        raise ProtocolError(f"{name}: short header")
    sel, count = _CLIP_HEAD.unpack_from(p)
    if sel >= len(CLIP_SELECTIONS) or count > len(CLIP_KINDS):
        raise ProtocolError(f"{name}: selection {sel} / count {count} out of range")
    contents: dict[str, bytes] = {}
    at = _CLIP_HEAD.size
    for _ in range(count):
        if len(p) < at + _CLIP_ITEM.size:
            raise ProtocolError(f"{name}: short item header")
        kind, length = _CLIP_ITEM.unpack_from(p, at)
        at += _CLIP_ITEM.size
        mime = CLIP_KINDS.get(kind)
        if mime is None or mime in contents or len(p) < at + length:
            raise ProtocolError(f"{name}: item of kind {kind}, {length} bytes does not fit")
        contents[mime] = bytes(p[at : at + length])
        at += length
    if at != len(p):
        raise ProtocolError(f"{name}: {len(p) - at} bytes after the last item")
    return CLIP_SELECTIONS[sel], contents


def _decode_agent_state(p: bytes) -> AgentState:
    return AgentState(_one_byte(p, "AgentState", range(16)))


def _decode_display_size(p: bytes) -> SetDisplaySize:
    w, h = _exact(p, _U32X2, "SetDisplaySize")
    if not (0 < w <= MAX_SURFACE_SIDE and 0 < h <= MAX_SURFACE_SIDE):
        raise ProtocolError(f"SetDisplaySize: size {w}x{h} out of range")
    return SetDisplaySize(w, h)


_DECODERS.update(
    {
        AgentState.TYPE: _decode_agent_state,
        VmClipboard.TYPE: lambda p: VmClipboard(*_decode_clip(p, "VmClipboard")),
        SetClipboard.TYPE: lambda p: SetClipboard(*_decode_clip(p, "SetClipboard")),
        SetDisplaySize.TYPE: _decode_display_size,
    }
)
_MAX_LENGTH[VmClipboard.TYPE] = _MAX_LENGTH[SetClipboard.TYPE] = MAX_CLIPBOARD + 64
HELPER_TYPES |= frozenset({AgentState.TYPE, VmClipboard.TYPE})
SOURCE_TYPES |= frozenset({SetClipboard.TYPE, SetDisplaySize.TYPE})


# --- sound: the upstream's playback to the source, the primary's microphone upstream -----
# Kept in one block (types 48-55 from the helper, 112-119 from the source): PCM is 16-bit
# signed little-endian, interleaved, as spice-gtk's playback-data gives and send_data takes.
MAX_PCM = 64 * 1024  # a frame of PCM at most (spice-gtk hands over ~10-20 ms at a time)
_FORMAT = struct.Struct("<BI")  # channels, rate


@dataclass(frozen=True)
class PlaybackStart:
    """The upstream started a stream: `channels` (1, 2) at `rate` Hz follow in PlaybackData."""

    TYPE: ClassVar[int] = 48
    channels: int
    rate: int


@dataclass(frozen=True)
class PlaybackData:
    TYPE: ClassVar[int] = 49
    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class PlaybackStop:
    TYPE: ClassVar[int] = 50


@dataclass(frozen=True)
class RecordStart:
    """The upstream wants the microphone: RecordData in this format until RecordStop."""

    TYPE: ClassVar[int] = 51
    channels: int
    rate: int


@dataclass(frozen=True)
class RecordStop:
    TYPE: ClassVar[int] = 52


@dataclass(frozen=True)
class RecordData:
    TYPE: ClassVar[int] = 112
    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class PlaybackVolume:
    """The upstream's playback volume, a level (0-0xFFFF) per channel."""

    TYPE: ClassVar[int] = 53
    levels: tuple[int, ...]


@dataclass(frozen=True)
class PlaybackMute:
    TYPE: ClassVar[int] = 54
    mute: bool


MAX_LEVELS = 16
AudioMessage = PlaybackStart | PlaybackData | PlaybackStop | RecordStart | RecordStop | RecordData | PlaybackVolume | PlaybackMute


def _audio_payload(msg: AudioMessage) -> bytes:
    if isinstance(msg, PlaybackStart | RecordStart):
        return _FORMAT.pack(msg.channels, msg.rate)
    if isinstance(msg, PlaybackData | RecordData):
        if len(msg.pcm) > MAX_PCM or len(msg.pcm) % 2:
            raise ValueError(f"{type(msg).__name__}: {len(msg.pcm)} bytes is not 16-bit PCM of at most {MAX_PCM} bytes")
        return msg.pcm
    if isinstance(msg, PlaybackVolume):
        if len(msg.levels) > MAX_LEVELS:
            raise ValueError(f"PlaybackVolume: {len(msg.levels)} levels, at most {MAX_LEVELS}")
        return struct.pack(f"<B{len(msg.levels)}H", len(msg.levels), *msg.levels)
    if isinstance(msg, PlaybackMute):
        return bytes([int(msg.mute)])
    return b""


def _decode_volume(p: bytes, cls: type) -> PlaybackVolume:
    if not p or p[0] > MAX_LEVELS or len(p) != 1 + 2 * p[0]:
        raise ProtocolError(f"PlaybackVolume: {len(p)} bytes do not hold a count and its levels")
    return PlaybackVolume(struct.unpack_from(f"<{p[0]}H", p, 1))


def _decode_mute(p: bytes, cls: type) -> PlaybackMute:
    return PlaybackMute(_flag(_one_byte(p, "PlaybackMute", range(2)), "PlaybackMute"))


def _decode_format(p: bytes, cls: type) -> PlaybackStart | RecordStart:
    channels, rate = _exact(p, _FORMAT, cls.__name__)
    if channels not in (1, 2) or not 8000 <= rate <= 192000:
        raise ProtocolError(f"{cls.__name__}: {channels} channels at {rate} Hz is not a format we play")
    return cls(channels, rate)


def _decode_pcm(p: bytes, cls: type) -> PlaybackData | RecordData:
    if len(p) > MAX_PCM or len(p) % 2:
        raise ProtocolError(f"{cls.__name__}: {len(p)} bytes is not 16-bit PCM of at most {MAX_PCM} bytes")
    return cls(p)


def _decode_nothing(p: bytes, cls: type) -> PlaybackStop | RecordStop:
    if p:
        raise ProtocolError(f"{cls.__name__}: payload of {len(p)} bytes, expected none")
    return cls()


_AUDIO_TYPES: dict[int, tuple[type, object]] = {
    PlaybackStart.TYPE: (PlaybackStart, _decode_format),
    PlaybackData.TYPE: (PlaybackData, _decode_pcm),
    PlaybackStop.TYPE: (PlaybackStop, _decode_nothing),
    RecordStart.TYPE: (RecordStart, _decode_format),
    RecordStop.TYPE: (RecordStop, _decode_nothing),
    RecordData.TYPE: (RecordData, _decode_pcm),
    PlaybackVolume.TYPE: (PlaybackVolume, _decode_volume),
    PlaybackMute.TYPE: (PlaybackMute, _decode_mute),
}
for _kind, (_cls, _dec) in _AUDIO_TYPES.items():
    _DECODERS[_kind] = lambda p, _cls=_cls, _dec=_dec: _dec(p, _cls)  # type: ignore[operator]
HELPER_TYPES |= frozenset({PlaybackStart.TYPE, PlaybackData.TYPE, PlaybackStop.TYPE, RecordStart.TYPE, RecordStop.TYPE})
HELPER_TYPES |= frozenset({PlaybackVolume.TYPE, PlaybackMute.TYPE})
SOURCE_TYPES |= frozenset({RecordData.TYPE})

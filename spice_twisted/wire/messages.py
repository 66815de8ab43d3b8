"""Every message layout we speak, declared once (facts from spice-common spice.proto).

`SERVER[(channel, id)]` / `CLIENT[(channel, id)]` find a message; `None` as the
channel means a message common to every channel. Use `message()` to look one up
by name and `encode_body` / `decode_body` to convert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .enums import (
    TICKET_PUBKEY_BYTES,
    BitmapFlags,
    BrushType,
    ChannelType,
    ClipType,
    ImageType,
    MsgcCommon,
    MsgcDisplay,
    MsgcInputs,
    MsgcMain,
    MsgCommon,
    MsgcRecord,
    MsgCursor,
    MsgDisplay,
    MsgInputs,
    MsgMain,
    MsgPlayback,
    MsgRecord,
)
from .schema import (
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    Array,
    CountedBy,
    FixedBytes,
    Ptr,
    Rest,
    SizedBytes,
    Struct,
    Switch,
    Type,
    WireError,
    decode,
    encode,
)

# --- link stage (not framed by a data header) ---------------------------------------------
LINK_HEADER = Struct("LinkHeader", [("magic", FixedBytes(4)), ("major", U32), ("minor", U32), ("size", U32)])
LINK_MESS = Struct(
    "LinkMess",
    [
        ("connection_id", U32),
        ("channel_type", U8),
        ("channel_id", U8),
        ("num_common_caps", U32),
        ("num_channel_caps", U32),
        ("caps_offset", U32),
    ],
)
LINK_REPLY = Struct(
    "LinkReply",
    [
        ("error", U32),
        ("pub_key", FixedBytes(TICKET_PUBKEY_BYTES)),
        ("num_common_caps", U32),
        ("num_channel_caps", U32),
        ("caps_offset", U32),
    ],
)

# --- data headers -------------------------------------------------------------------------
FULL_HEADER = Struct("DataHeader", [("serial", U64), ("type", U16), ("size", U32), ("sub_list", U32)])
MINI_HEADER = Struct("MiniDataHeader", [("type", U16), ("size", U32)])

# --- shared structs -----------------------------------------------------------------------
RECT = Struct("Rect", [("top", I32), ("left", I32), ("bottom", I32), ("right", I32)])
POINT = Struct("Point", [("x", I32), ("y", I32)])
POINT16 = Struct("Point16", [("x", I16), ("y", I16)])
CLIP = Switch("clip_type", {ClipType.NONE: [], ClipType.RECTS: [("clip_rects", Array(U32, RECT, RECT.size))]})

# SpicePalette: the colours an LZ_PLT image's indices stand for (u32 words B, G, R, 0).
PALETTE = Struct("Palette", [("unique", U64), ("num_ents", U16), ("ents", CountedBy("ents", "num_ents", U32, 4))])


class LzPltData(Type):
    """SpiceLZPLTData: flags, data_size, a palette (a pointer, or a palette id with
    PAL_FROM_CACHE) and the LZ_PLT stream inline.

    The stream must follow the pointer, and a shared stream goes last as an External, so
    the palette is written after the stream. Two forms encode: {"lz_plt_flags", "palette"
    (a PALETTE dict), "data" (bytes)}, what decode gives back; and the shared one,
    {"lz_plt_flags", "data_size", "data": External(stream + encoded PALETTE)}, built once
    per image (codecs/lz.py). We never send PAL_FROM_CACHE (it only decodes)."""

    def encode(self, w: Any, value: Any) -> None:
        flags, data = int(value["lz_plt_flags"]), value["data"]
        palette = value.get("palette")
        size = len(data) if palette is not None else int(value["data_size"])
        if flags & BitmapFlags.PAL_FROM_CACHE or (palette is None and not 0 <= size < len(data)):
            raise WireError("LZ_PLT data needs its palette")
        U8.encode(w, flags)
        U32.encode(w, size)
        U32.encode(w, len(w.buf) + 4 + size)  # the palette: right after the stream
        w.append(data)
        if palette is not None:
            PALETTE.encode(w, palette)

    def decode(self, buf: bytes, pos: int, ctx: dict[str, Any]) -> tuple[dict[str, Any], int]:
        flags, pos = U8.decode(buf, pos, ctx)
        size, pos = U32.decode(buf, pos, ctx)
        out: dict[str, Any] = {"lz_plt_flags": flags}
        if flags & BitmapFlags.PAL_FROM_CACHE:
            out["palette_id"], pos = U64.decode(buf, pos, ctx)
        else:
            out["palette"], pos = Ptr(PALETTE).decode(buf, pos, ctx)
            if out["palette"] is None:
                raise WireError("LZ_PLT image without a palette")
        if size > len(buf) - pos:
            raise WireError(f"truncated: LZ_PLT data of {size} bytes at {pos}")
        out["data"] = bytes(buf[pos : pos + size])
        return out, pos + size


BITMAP_PAYLOAD = [
    ("format", U8),
    ("bitmap_flags", U8),
    ("x", U32),
    ("y", U32),
    ("stride", U32),
    ("palette", U32),  # offset to a palette, 0 = none (we never send PAL_FROM_CACHE)
    ("data", Rest()),
]
IMAGE = Struct(
    "Image",
    [
        ("id", U64),
        ("type", U8),
        ("flags", U8),
        ("width", U32),
        ("height", U32),
        (
            "payload",
            Switch(
                "type",
                {
                    ImageType.BITMAP: BITMAP_PAYLOAD,
                    ImageType.QUIC: [("data", SizedBytes(U32))],
                    ImageType.LZ_RGB: [("data", SizedBytes(U32))],
                    ImageType.LZ_PLT: [("lz_plt", LzPltData())],
                    ImageType.GLZ_RGB: [("data", SizedBytes(U32))],
                    ImageType.ZLIB_GLZ_RGB: [("glz_data_size", U32), ("data", SizedBytes(U32))],
                    ImageType.JPEG: [("data", SizedBytes(U32))],
                    ImageType.LZ4: [("data", SizedBytes(U32))],
                    ImageType.FROM_CACHE: [],
                    ImageType.FROM_CACHE_LOSSLESS: [],
                    ImageType.SURFACE: [("surface_id", U32)],
                },
            ),
        ),
    ],
)
HEAD = Struct(
    "Head",
    [("monitor_id", U32), ("surface_id", U32), ("width", U32), ("height", U32), ("x", U32), ("y", U32), ("flags", U32)],
)
QMASK = [("mask_flags", U8), ("mask_pos", POINT), ("mask_bitmap", Ptr(IMAGE))]
DISPLAY_BASE = [("surface_id", U32), ("box", RECT), ("clip_type", U8), ("clip", CLIP)]
CURSOR = Struct(
    "Cursor",
    [
        ("cursor_flags", U16),
        (
            "header",
            Switch(
                "cursor_flags",
                {1: []},  # SPICE_CURSOR_FLAGS_NONE: no header, no data
                default=[
                    ("unique", U64),
                    ("cursor_type", U8),
                    ("width", U16),
                    ("height", U16),
                    ("hot_x", U16),
                    ("hot_y", U16),
                    ("data", Rest()),
                ],
            ),
        ),
    ],
)


@dataclass(frozen=True)
class Message:
    """One message kind: which channel (None = common), which direction, its id and layout."""

    channel: ChannelType | None
    from_server: bool
    id: int
    name: str
    layout: Struct


SERVER: dict[tuple[ChannelType | None, int], Message] = {}
CLIENT: dict[tuple[ChannelType | None, int], Message] = {}
_BY_NAME: dict[tuple[ChannelType | None, bool, str], Message] = {}


def _define(channel: ChannelType | None, msg_id: Any, fields: list[tuple[str, Type]]) -> None:
    from_server = type(msg_id).__name__.startswith("Msg") and not type(msg_id).__name__.startswith("Msgc")
    m = Message(channel, from_server, int(msg_id), msg_id.name, Struct(msg_id.name, fields))
    (SERVER if from_server else CLIENT)[(channel, m.id)] = m
    _BY_NAME[(channel, from_server, m.name)] = m


C = None
# common, server -> client
_define(C, MsgCommon.SET_ACK, [("generation", U32), ("window", U32)])
_define(C, MsgCommon.PING, [("id", U32), ("timestamp", U64), ("data", Rest())])
_define(
    C,
    MsgCommon.WAIT_FOR_CHANNELS,
    [("wait_list", Array(U8, Struct("WaitFor", [("channel_type", U8), ("channel_id", U8), ("message_serial", U64)]), 10))],
)
_define(C, MsgCommon.DISCONNECTING, [("time_stamp", U64), ("reason", U32)])
_define(
    C,
    MsgCommon.NOTIFY,
    [("time_stamp", U64), ("severity", U32), ("visibility", U32), ("what", U32), ("message", SizedBytes(U32))],
)
# common, client -> server
_define(C, MsgcCommon.ACK_SYNC, [("generation", U32)])
_define(C, MsgcCommon.ACK, [])
_define(C, MsgcCommon.PONG, [("id", U32), ("timestamp", U64)])
_define(C, MsgcCommon.DISCONNECTING, [("time_stamp", U64), ("reason", U32)])

M = ChannelType.MAIN
_define(
    M,
    MsgMain.INIT,
    [
        ("session_id", U32),
        ("display_channels_hint", U32),
        ("supported_mouse_modes", U32),
        ("current_mouse_mode", U32),
        ("agent_connected", U32),
        ("agent_tokens", U32),
        ("multi_media_time", U32),
        ("ram_hint", U32),
    ],
)
_define(M, MsgMain.CHANNELS_LIST, [("channels", Array(U32, Struct("ChannelId", [("type", U8), ("id", U8)]), 2))])
_define(M, MsgMain.MOUSE_MODE, [("supported_modes", U16), ("current_mode", U16)])
_define(M, MsgMain.MULTI_MEDIA_TIME, [("time", U32)])
_define(M, MsgMain.AGENT_DISCONNECTED, [("error_code", U32)])
_define(M, MsgMain.AGENT_CONNECTED, [])
_define(M, MsgMain.AGENT_CONNECTED_TOKENS, [("num_tokens", U32)])
_define(M, MsgMain.AGENT_DATA, [("data", Rest())])  # a piece of the VDAgent stream (wire/agent.py)
_define(M, MsgMain.AGENT_TOKEN, [("num_tokens", U32)])
_define(M, MsgMain.NAME, [("name", SizedBytes(U32))])
_define(M, MsgMain.UUID, [("uuid", FixedBytes(16))])
_define(M, MsgcMain.CLIENT_INFO, [("cache_size", U64)])
_define(M, MsgcMain.ATTACH_CHANNELS, [])
_define(M, MsgcMain.MOUSE_MODE_REQUEST, [("mode", U16)])
_define(M, MsgcMain.AGENT_START, [("num_tokens", U32)])
_define(M, MsgcMain.AGENT_DATA, [("data", Rest())])
_define(M, MsgcMain.AGENT_TOKEN, [("num_tokens", U32)])

D = ChannelType.DISPLAY
_define(D, MsgDisplay.MARK, [])
_define(D, MsgDisplay.RESET, [])
_define(D, MsgDisplay.INVAL_ALL_PALETTES, [])
_define(
    D,
    MsgDisplay.SURFACE_CREATE,
    [("surface_id", U32), ("width", U32), ("height", U32), ("format", U32), ("flags", U32)],
)
_define(D, MsgDisplay.SURFACE_DESTROY, [("surface_id", U32)])
_define(
    D,
    MsgDisplay.DRAW_COPY,
    DISPLAY_BASE
    + [
        ("src_bitmap", Ptr(IMAGE)),
        ("src_area", RECT),
        ("rop_descriptor", U16),
        ("scale_mode", U8),
    ]
    + QMASK,
)
_define(D, MsgDisplay.COPY_BITS, DISPLAY_BASE + [("src_pos", POINT)])
# A fill with one brush. Only SOLID brushes (the colour as a surface pixel, xRGB) are
# declared: every client draws those, spice-html5 included; it draws no pattern brushes.
BRUSH = [("brush_type", U8), ("brush", Switch("brush_type", {BrushType.NONE: [], BrushType.SOLID: [("color", U32)]}))]
_define(D, MsgDisplay.DRAW_FILL, DISPLAY_BASE + BRUSH + [("rop_descriptor", U16)] + QMASK)
# What the client must drop from its caches (type 1 = pixmap), and "drop every pixmap".
RESOURCE = Struct("ResourceId", [("type", U8), ("id", U64)])
_define(D, MsgDisplay.INVAL_LIST, [("resources", Array(U16, RESOURCE, RESOURCE.size))])
WAIT_FOR_CHANNEL = Struct("WaitForChannel", [("channel_type", U8), ("channel_id", U8), ("message_serial", U64)])
_define(D, MsgDisplay.INVAL_ALL_PIXMAPS, [("waits", Array(U8, WAIT_FOR_CHANNEL, WAIT_FOR_CHANNEL.size))])
_define(
    D,
    MsgDisplay.MONITORS_CONFIG,
    [("count", U16), ("max_allowed", U16), ("heads", CountedBy("heads", "count", HEAD, HEAD.size))],
)
# Video streams. A stream is a rect of the surface shown by frames of one codec; each
# frame's data is a whole compressed frame (MJPEG: one JFIF), played at multi_media_time
# on the main channel's clock. STREAM_DATA_SIZED (SIZED_STREAM cap) also gives the frame's
# size and where it goes, for a stream whose size changes.
_define(
    D,
    MsgDisplay.STREAM_CREATE,
    [
        ("surface_id", U32),
        ("id", U32),
        ("flags", U8),
        ("codec_type", U8),
        ("stamp", U64),
        ("stream_width", U32),
        ("stream_height", U32),
        ("src_width", U32),
        ("src_height", U32),
        ("dest", RECT),
        ("clip_type", U8),
        ("clip", CLIP),
    ],
)
_define(D, MsgDisplay.STREAM_DATA, [("id", U32), ("multi_media_time", U32), ("data", SizedBytes(U32))])
_define(
    D,
    MsgDisplay.STREAM_DATA_SIZED,
    [("id", U32), ("multi_media_time", U32), ("width", U32), ("height", U32), ("dest", RECT), ("data", SizedBytes(U32))],
)
_define(D, MsgDisplay.STREAM_CLIP, [("id", U32), ("clip_type", U8), ("clip", CLIP)])
_define(D, MsgDisplay.STREAM_DESTROY, [("id", U32)])
_define(D, MsgDisplay.STREAM_DESTROY_ALL, [])
# Asks the client for STREAM_REPORTs (STREAM_REPORT cap): one per max_window_size frames
# or timeout_ms, whichever comes first; unique_id ties the reports to this request.
_define(
    D,
    MsgDisplay.STREAM_ACTIVATE_REPORT,
    [("stream_id", U32), ("unique_id", U32), ("max_window_size", U32), ("timeout_ms", U32)],
)
_define(
    D,
    MsgcDisplay.INIT,
    [
        ("pixmap_cache_id", U8),
        ("pixmap_cache_size", I64),
        ("glz_dictionary_id", U8),
        ("glz_dictionary_window_size", I32),
    ],
)
_define(D, MsgcDisplay.PREFERRED_COMPRESSION, [("image_compression", U8)])
_define(
    D,
    MsgcDisplay.STREAM_REPORT,
    [
        ("stream_id", U32),
        ("unique_id", U32),
        ("start_frame_mm_time", U32),
        ("end_frame_mm_time", U32),
        ("num_frames", U32),
        ("num_drops", U32),
        ("last_frame_delay", I32),
        ("audio_delay", U32),
    ],
)
_define(D, MsgcDisplay.PREFERRED_VIDEO_CODEC_TYPE, [("codecs", Array(U8, U8, 1))])

I = ChannelType.INPUTS  # noqa: E741
_define(I, MsgInputs.INIT, [("keyboard_modifiers", U16)])
_define(I, MsgInputs.KEY_MODIFIERS, [("modifiers", U16)])
_define(I, MsgInputs.MOUSE_MOTION_ACK, [])
_define(I, MsgcInputs.KEY_DOWN, [("code", U32)])
_define(I, MsgcInputs.KEY_UP, [("code", U32)])
_define(I, MsgcInputs.KEY_MODIFIERS, [("modifiers", U16)])
_define(I, MsgcInputs.KEY_SCANCODE, [("code", Rest())])
_define(I, MsgcInputs.MOUSE_MOTION, [("dx", I32), ("dy", I32), ("buttons_state", U16)])
_define(I, MsgcInputs.MOUSE_POSITION, [("x", U32), ("y", U32), ("buttons_state", U16), ("display_id", U8)])
_define(I, MsgcInputs.MOUSE_PRESS, [("button", U8), ("buttons_state", U16)])
_define(I, MsgcInputs.MOUSE_RELEASE, [("button", U8), ("buttons_state", U16)])

K = ChannelType.CURSOR
_define(
    K,
    MsgCursor.INIT,
    [("position", POINT16), ("trail_length", U16), ("trail_frequency", U16), ("visible", U8), ("cursor", CURSOR)],
)
_define(K, MsgCursor.RESET, [])
_define(K, MsgCursor.SET, [("position", POINT16), ("visible", U8), ("cursor", CURSOR)])
_define(K, MsgCursor.MOVE, [("position", POINT16)])
_define(K, MsgCursor.HIDE, [])
_define(K, MsgCursor.INVAL_ONE, [("id", U64)])
_define(K, MsgCursor.INVAL_ALL, [])

# Audio. DATA's samples run to the end of the message (no length of their own).
AUDIO_VOLUME = [("volume", Array(U8, U16, 2))]  # a count of channels, then one u16 level each
P = ChannelType.PLAYBACK
_define(P, MsgPlayback.DATA, [("time", U32), ("data", Rest())])
_define(P, MsgPlayback.MODE, [("time", U32), ("mode", U16), ("data", Rest())])
_define(P, MsgPlayback.START, [("channels", U32), ("format", U16), ("frequency", U32), ("time", U32)])
_define(P, MsgPlayback.STOP, [])
_define(P, MsgPlayback.VOLUME, AUDIO_VOLUME)
_define(P, MsgPlayback.MUTE, [("mute", U8)])
_define(P, MsgPlayback.LATENCY, [("latency_ms", U32)])

R = ChannelType.RECORD
_define(R, MsgRecord.START, [("channels", U32), ("format", U16), ("frequency", U32)])
_define(R, MsgRecord.STOP, [])
_define(R, MsgRecord.VOLUME, AUDIO_VOLUME)
_define(R, MsgRecord.MUTE, [("mute", U8)])
_define(R, MsgcRecord.DATA, [("time", U32), ("data", Rest())])
_define(R, MsgcRecord.MODE, [("time", U32), ("mode", U16), ("data", Rest())])
_define(R, MsgcRecord.START_MARK, [("time", U32)])


def message(channel: ChannelType | None, name: str, from_server: bool = True) -> Message:
    """Find a message by name, falling back to the common messages."""
    for ch in (channel, None):
        m = _BY_NAME.get((ch, from_server, name))
        if m is not None:
            return m
    raise KeyError(f"no {'server' if from_server else 'client'} message {name} on {channel}")


def lookup(channel: ChannelType, msg_type: int, from_server: bool) -> Message | None:
    table = SERVER if from_server else CLIENT
    return table.get((channel, msg_type)) or (table.get((None, msg_type)) if msg_type < 100 else None)


def encode_body(msg: Message, fields: dict[str, Any]) -> bytes:
    return encode(msg.layout, fields)


def decode_body(msg: Message, body: bytes) -> dict[str, Any]:
    try:
        return decode(msg.layout, body)
    except WireError as exc:
        raise WireError(f"{msg.name}: {exc}") from None

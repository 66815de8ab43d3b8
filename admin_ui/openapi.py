"""The OpenAPI 3 description of the admin REST API (tests check it matches the routes)."""

from __future__ import annotations

from typing import Any

import spice_twisted

ERROR = {"$ref": "#/components/responses/Error"}


def _op(
    summary: str, schema: dict[str, Any], body: dict[str, Any] | None = None, client_id: bool = False, errors: tuple[int, ...] = ()
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}, "401": ERROR},
    }
    for code in errors:
        op["responses"][str(code)] = ERROR
    if client_id:
        op["parameters"] = [
            {"name": "client_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 0, "maximum": 4294967295}}
        ]
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def openapi_document() -> dict[str, Any]:
    obj = {"type": "object"}
    client = {"$ref": "#/components/schemas/Client"}
    mutating = (400, 403, 413)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "spice-twisted admin API",
            "version": spice_twisted.__version__,
            "description": "Send 'Authorization: Bearer TOKEN' with the admin token on every call.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/server": {
                "get": _op(
                    "The server: endpoints, source, policy, ticket state and render counters (video streams in render.streams).",
                    {"$ref": "#/components/schemas/Server"},
                )
            },
            "/api/clients": {"get": _op("Every connected client, oldest (the primary) first.", {"type": "array", "items": client})},
            "/api/clients/{client_id}": {
                "get": _op("One client.", client, client_id=True, errors=(404,)),
                "patch": _op(
                    "Make a client view-only (its input is dropped) or not (409 for a client that gave the view-only password).",
                    client,
                    body={
                        "type": "object",
                        "properties": {"view_only": {"type": "boolean"}},
                        "required": ["view_only"],
                        "additionalProperties": False,
                    },
                    client_id=True,
                    errors=(404, 409, *mutating),
                ),
            },
            "/api/clients/{client_id}/disconnect": {
                "post": _op(
                    "Disconnect a client (all its channels).",
                    {"type": "object", "properties": {"disconnected": {"type": "integer"}}},
                    client_id=True,
                    errors=(404, 403),
                ),
            },
            "/api/clients/{client_id}/primary": {
                "post": _op(
                    "Hand control to a client: it becomes the primary (its window size sets the desktop's; the recording).",
                    client,
                    client_id=True,
                    errors=(404, 403),
                ),
            },
            "/api/settings": {
                "get": _op("Run-time settings.", obj),
                "patch": _op(
                    "Change run-time settings.",
                    obj,
                    body={
                        "type": "object",
                        "properties": {"allow_multiple_clients": {"type": "boolean"}},
                        "required": ["allow_multiple_clients"],
                        "additionalProperties": False,
                    },
                    errors=mutating,
                ),
            },
            "/api/ticket": {
                "post": _op(
                    "Set the ticket (password), clear it (null disables ticketing), or only change its expiry (no password; expires: 0 = now).",
                    obj,
                    body={
                        "type": "object",
                        "properties": {
                            "password": {
                                "type": "string",
                                "nullable": True,
                                "minLength": 1,
                                "maxLength": 60,
                                "description": "1 to 60 bytes of UTF-8, no control characters (newline, tab, NUL, ...)",
                            },
                            "expires": {"type": "number", "nullable": True, "minimum": 0, "description": "seconds from now"},
                        },
                        "minProperties": 1,
                        "additionalProperties": False,
                    },
                    errors=mutating,
                ),
            },
            "/api/dashboard": {
                "get": {
                    **_op(
                        "What the live dashboard draws in one poll: the server, the clients (with their kind), each client's "
                        "samples of the last minutes newer than `since`, the audit events newer than `events_since`, and the "
                        "thumbnail's current address.",
                        obj,
                        errors=(400,),
                    ),
                    "parameters": [
                        {"name": n, "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}}
                        for n in ("since", "events_since")
                    ],
                }
            },
            "/api/thumbnail.jpg": {
                "get": {
                    "summary": "The shared display as a small JPEG (made at most once a second, for every viewer at once).",
                    "responses": {
                        "200": {
                            "description": "the picture",
                            "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "304": {"description": "unchanged (If-None-Match)"},
                        "401": ERROR,
                    },
                }
            },
            "/api/connection.vv": {
                "get": {
                    "summary": "A remote-viewer connection file for this server (password included with ?password=1).",
                    "parameters": [
                        {"name": "password", "in": "query", "required": False, "schema": {"type": "string", "enum": ["0", "1"]}}
                    ],
                    "responses": {
                        "200": {"description": "the .vv file", "content": {"application/x-virt-viewer": {"schema": {"type": "string"}}}},
                        "400": ERROR,
                        "401": ERROR,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {
                "Error": {
                    "description": "An error",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                                "required": ["error", "status"],
                            }
                        }
                    },
                }
            },
            "schemas": {
                "Client": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "integer"},
                        "address": {"type": "string"},
                        "kind": {
                            "type": "string",
                            "enum": ["spice-gtk", "spice-html5", "other"],
                            "description": "which client program, judged from its link's caps (and WebSocket)",
                        },
                        "websocket": {"type": "boolean", "description": "its main channel runs over WebSocket"},
                        "primary": {"type": "boolean"},
                        "view_only": {"type": "boolean"},
                        "view_only_ticket": {
                            "type": "boolean",
                            "description": "authenticated with the view-only password: stays view-only",
                        },
                        "channels": {"type": "array", "items": {"type": "object"}},
                        "pipe_items": {"type": "integer"},
                        "pipe_bytes": {"type": "integer"},
                        "bytes_sent": {"type": "integer"},
                        "bytes_per_second": {"type": "integer"},
                        "image_mode": {
                            "type": "string",
                            "enum": ["lossless", "lossy"],
                            "description": "lossy: JPEG where it pays, made exact once the area is quiet",
                        },
                        "link": {
                            "type": "object",
                            "description": "the server's estimate of this client's link (network test, pings, send rate)",
                            "properties": {
                                "wan": {
                                    "type": "boolean",
                                    "description": "judged low bandwidth or far (JPEG under --jpeg-wan-compression auto)",
                                },
                                "bandwidth_bps": {"type": "integer", "nullable": True, "description": "bits per second"},
                                "rtt_ms": {"type": "number", "nullable": True},
                                "source": {"type": "string", "nullable": True, "enum": ["probe", "send-rate", None]},
                                "probe_latency_ms": {"type": "number", "nullable": True},
                                "probe_bitrate_bps": {"type": "integer", "nullable": True},
                                "probes": {"type": "integer"},
                                "probes_inconclusive": {"type": "integer"},
                                "samples": {"type": "integer"},
                                "changes": {"type": "integer"},
                            },
                        },
                        "playback": {
                            "type": "object",
                            "nullable": True,
                            "description": "its playback channel (null without one): the mode it hears, frames sent and dropped",
                            "properties": {
                                "mode": {"type": "string", "enum": ["raw", "opus"]},
                                "frames_sent": {"type": "integer"},
                                "frames_dropped": {"type": "integer", "description": "10 ms frames dropped: it read too slowly"},
                                "frames_queued": {"type": "integer"},
                                "queued_ms": {"type": "integer", "description": "sound waiting in its pipe"},
                                "latency_ms": {"type": "integer", "nullable": True, "description": "what it was told to buffer"},
                            },
                        },
                        "record": {
                            "type": "object",
                            "nullable": True,
                            "description": "its record channel (null without one); recording: it is the one heard",
                            "properties": {
                                "mode": {"type": "string"},
                                "recording": {"type": "boolean"},
                                "bytes_received": {"type": "integer"},
                            },
                        },
                        "agent": {
                            "type": "object",
                            "nullable": True,
                            "description": "its side of the built-in agent: caps, messages, its clipboard mode (none, copy-out, both)",
                        },
                        "video": {"$ref": "#/components/schemas/ClientVideo"},
                    },
                    "required": ["id", "address", "primary", "view_only", "channels"],
                },
                "ClientVideo": {
                    "type": "object",
                    "nullable": True,
                    "description": "the video streams it plays (null without a display channel)",
                    "properties": {
                        "playing": {"type": "integer", "minimum": 0, "description": "streams it plays now"},
                        "codecs": {
                            "type": "array",
                            "items": {"type": "string", "enum": ["mjpeg", "vp8", "vp9", "h264"]},
                            "description": "the codecs of the streams it plays now (each stream keeps its codec on it)",
                        },
                        "tiers": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "the tier codecs it gets their frames in: mjpeg, mjpeg_low, mjpeg_min, vp8, vp8_low, ...",
                        },
                        "tier": {
                            "type": "string",
                            "nullable": True,
                            "enum": ["full", "low", "least", None],
                            "description": "full; low (WAN, a backed-up pipe or late frames: fewer frames, lower quality); "
                            "least (MJPEG on a WAN too slow for the low tier); null while it plays none",
                        },
                        "frames_sent": {"type": "integer", "minimum": 0, "description": "STREAM_DATA messages written to it"},
                        "reports": {"type": "integer", "minimum": 0, "description": "STREAM_REPORTs it sent"},
                        "play_ahead_ms": {"type": "integer", "description": "how far ahead of the clock its frames are stamped"},
                    },
                    "required": ["playing", "codecs", "tiers", "tier", "frames_sent", "reports", "play_ahead_ms"],
                },
                "Server": {
                    "type": "object",
                    "properties": {
                        "render": {
                            "type": "object",
                            "properties": {"streams": {"$ref": "#/components/schemas/Streams"}},
                        }
                    },
                },
                "Streams": {
                    "type": "object",
                    "description": "the video streams (--streaming-video): those playing now and the counters",
                    "properties": {
                        "mode": {"type": "string", "enum": ["filter", "all", "off"]},
                        "active": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "integer"},
                                    "rect": {"type": "array", "items": {"type": "integer"}, "description": "left, top, right, bottom"},
                                    "width": {"type": "integer"},
                                    "height": {"type": "integer"},
                                    "frames": {"type": "integer", "description": "frames made"},
                                    "fps": {"type": "number", "description": "frames made a second, smoothed"},
                                    "tiers": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                        "description": "clients on each tier codec (mjpeg, mjpeg_low, h264_low, ...)",
                                    },
                                    "frame_bytes": {
                                        "type": "object",
                                        "additionalProperties": {"type": "integer"},
                                        "description": "each tier's newest frame as sent",
                                    },
                                },
                                "required": ["id", "rect", "width", "height", "frames", "fps", "tiers"],
                            },
                        },
                        "started": {"type": "integer"},
                        "ended": {"type": "integer"},
                        "frames": {"type": "integer", "description": "frames made, all streams"},
                        "tier_frames": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                            "description": "frames handed to clients, by tier codec (one per client a frame goes to)",
                        },
                    },
                    "required": ["mode", "active", "started", "ended", "frames", "tier_frames"],
                },
            },
        },
    }

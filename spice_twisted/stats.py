"""The one place numbers are read from: per channel client, per client and per server.

Counters live where they change (channel clients, the render service); these
functions turn them into plain dicts that the admin site, the JSON API and the
`--stats-interval` log line all share.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from .channels.pipe import DisplayPipe
from .channels.pixmap_cache import ClientPixmapCache
from .client_signatures import GTK_MAIN_CAPS, links_as_spice_html5
from .wire.enums import ChannelType, DisplayCap

if TYPE_CHECKING:
    from .channels.base import ChannelClient
    from .server import SpiceServer
    from .session import Client


def channel_stats(cc: ChannelClient) -> dict[str, Any]:
    out = {
        "channel": cc.channel_type.name.lower(),
        "id": cc.channel_id,
        "tls": cc.secure,
        "mini_header": cc.mini_header,
        "pipe_items": len(cc.pipe),
        "pipe_bytes": cc.pipe_bytes,
        "messages_sent": cc.messages_sent,
        "bytes_sent": cc.bytes_sent,
        "bytes_per_second": cc.bytes_per_second,
        "messages_received": cc.messages_received,
        "draws_sent": cc.draws_sent,
        "coalesced": getattr(cc, "coalesced", 0),
        "unacked": cc.unacked,
        "paused": cc.paused,
        "rtt_ms": round(cc.rtt * 1000, 3) if cc.rtt is not None else None,
    }
    audio = getattr(cc, "audio_stats", None)
    if audio is not None:  # playback and record channels (channels/playback.py, record.py)
        out["audio"] = audio()
    pipe = cc.pipe
    if isinstance(pipe, DisplayPipe):
        out.update(
            codec=getattr(cc, "codec", None),
            pipe_id=pipe.id,
            pipe_max_items=pipe.max_items,
            pipe_max_bytes=pipe.max_bytes,
            pipe_peak_items=pipe.peak_items,
            pipe_peak_bytes=pipe.peak_bytes,
            collapses=pipe.collapses,
            glz_generation=cc.glz.number if getattr(cc, "glz", None) is not None else None,
            glz_base=cc.glz.base.get(cc) if getattr(cc, "glz", None) is not None else None,  # its image 0's id there
            lossy_allowed=cc.lossy_allowed,
            lossy_area=cc.lossy.area,  # pixels this client holds lossy now
            pixmap_cache=cache_stats(cc.pixmap_cache),
        )
        streams = getattr(cc, "streams", None)
        if streams is not None:  # channels/display_streams.py
            out["streams"] = {
                "playing": sorted(streams.shown),
                "codecs": [streams.codecs.get(i) for i in sorted(streams.shown)],  # each playing stream's
                "codec_order": streams.codec_order(),  # what its next stream would get, best first
                "frames_sent": streams.frames_sent,
                "low_tier": streams.low,
                "least_tier": streams.least,
                "reports": streams.reports,  # STREAM_REPORTs it sent us
            }
    return out


def cache_stats(cache: ClientPixmapCache) -> dict[str, Any]:
    return {
        "id": cache.cache_id,
        "capacity_px": cache.capacity,
        "used_px": cache.used,
        "entries": len(cache),
        "hits": cache.hits,
        "adds": cache.adds,
        "evictions": cache.evictions,
        "saved_bytes": cache.saved_bytes,
        "max_entries": cache.max_entries,
        "all_clients_entries": cache.budget.entries,  # every client's model together
        "all_clients_max": cache.budget.total,
    }


KINDS = ("spice-gtk", "spice-html5", "other")


def over_websocket(cc: ChannelClient) -> bool:
    """The channel runs inside WebSocket (its transport is a PortRouter that upgraded)."""
    return getattr(getattr(cc, "transport", None), "websocket", None) is not None


def client_kind(client: Client) -> str:
    """Which program the client is, from what its links say (caps, WebSocket): "spice-gtk",
    "spice-html5" or "other" (client_signatures.py). A guess from behaviour, for the
    dashboard and /metrics: what a client is sent comes from codecs.choice.decoders(),
    save that spice-html5 gets no clipped streams (channels/display_streams.py)."""
    main = client.main
    if main is None:
        return "other"
    if links_as_spice_html5(main.request.channel_caps, main.request.common_caps):
        return "spice-html5"  # over WebSocket here, or through websockify
    if frozenset(main.request.channel_caps) >= GTK_MAIN_CAPS and not over_websocket(main):
        display = [cc for cc in client.channels if cc.channel_type == ChannelType.DISPLAY]
        if not any(DisplayCap.PREF_COMPRESSION in cc.request.channel_caps for cc in display):
            return "spice-gtk"
    return "other"


def client_stats(server: SpiceServer, client: Client) -> dict[str, Any]:
    channels = [channel_stats(cc) for cc in client.channels]
    rtts = [c["rtt_ms"] for c in channels if c["rtt_ms"] is not None]
    return {
        "id": client.session_id,
        "address": client.address,
        "kind": client_kind(client),
        "websocket": client.main is not None and over_websocket(client.main),
        "connected_since": client.connected_since,
        "connected_for": round(time.time() - client.connected_since, 3),
        "primary": server.primary is client,
        "view_only": client.view_only,
        "view_only_ticket": client.view_only_locked,
        "colour": "#{:02x}{:02x}{:02x}".format(*client.colour),
        "input_events": client.input_events,
        "input_dropped": client.input_dropped,
        "channels": channels,
        "pipe_items": sum(c["pipe_items"] for c in channels),
        "pipe_bytes": sum(c["pipe_bytes"] for c in channels),
        "messages_sent": sum(c["messages_sent"] for c in channels),
        "bytes_sent": sum(c["bytes_sent"] for c in channels),
        "bytes_per_second": sum(c["bytes_per_second"] for c in channels),
        "image_mode": "lossy" if any(c.get("lossy_allowed") for c in channels) else "lossless",
        "codec": next((c["codec"] for c in channels if c.get("codec")), None),
        "coalesced": sum(c["coalesced"] for c in channels),
        "rtt_ms": min(rtts) if rtts else None,
        "link": client.link.stats(),  # bandwidth, round trip and WAN verdict (link_estimate.py)
        "playback": next((c["audio"] for c in channels if c["channel"] == "playback"), None),
        "record": next((c["audio"] for c in channels if c["channel"] == "record"), None),
        "agent": client.main.agent.describe() if client.main is not None and client.main.agent is not None else None,
        "video": video_stats(client),
    }


def _players(client: Client) -> list[Any]:
    """The stream players (channels/display_streams.py) of a client's display channels."""
    return [p for cc in client.channels if cc.channel_type == ChannelType.DISPLAY and (p := getattr(cc, "streams", None)) is not None]


def video_stats(client: Client) -> dict[str, Any] | None:
    """The video streams a client plays, for the dashboard's column: None when it has no
    display channel (nothing to play on); with one, `playing` 0 and `tier` None while no
    stream plays (the counters still say what it was sent)."""
    players = _players(client)
    if not players:
        return None
    shown = [(p, sid) for p in players for sid in sorted(p.shown)]
    return {
        "playing": len(shown),
        "codecs": sorted({p.codecs[sid] for p, sid in shown if sid in p.codecs}),  # MJPEG, VP8, VP9, H.264
        "tiers": sorted({t for p, sid in shown if (t := p.tier_codec(sid)) is not None}),  # mjpeg_low, h264_low, ...
        "tier": players[0].tier_label() if shown else None,  # full, low or least
        "frames_sent": sum(p.frames_sent for p in players),  # STREAM_DATA written to it
        "reports": sum(p.reports for p in players),
        "play_ahead_ms": players[0].play_ahead_ms(),
    }


HISTORY_EVERY = 1.0  # seconds between samples
HISTORY_KEEP = 300  # samples per client: the last five minutes
HISTORY_FIELDS = ("seq", "time", "bytes_per_second", "rtt_ms", "pipe_bytes", "coalesced")


class History:
    """The last minutes of each connected client's send rate, round trip, pipe depth and
    dropped updates, for the dashboard's charts. Sampled every HISTORY_EVERY seconds by
    the admin site whether or not anyone watches, so a dashboard opened now shows the
    minutes before; bounded by HISTORY_KEEP samples a client, and a client's samples go
    with it. `seq` numbers the samples so a poller asks only for what is new."""

    def __init__(self, keep: int = HISTORY_KEEP) -> None:
        self.keep = keep
        self.seq = 0
        self.samples: dict[int, deque[tuple[Any, ...]]] = {}

    def sample(self, server: SpiceServer) -> None:
        self.seq += 1
        now = round(time.time(), 3)
        for sid, client in server.clients.items():
            rtts = [cc.rtt for cc in client.channels if cc.rtt is not None]
            row = (
                self.seq,
                now,
                sum(cc.bytes_per_second for cc in client.channels),
                round(min(rtts) * 1000, 3) if rtts else None,
                sum(cc.pipe_bytes for cc in client.channels),
                sum(getattr(cc, "coalesced", 0) for cc in client.channels),
            )
            self.samples.setdefault(sid, deque(maxlen=self.keep)).append(row)
        for sid in [sid for sid in self.samples if sid not in server.clients]:
            del self.samples[sid]

    def since(self, seq: int) -> dict[str, list[tuple[Any, ...]]]:
        """Each client's samples newer than `seq` (all it has for 0), by client id."""
        return {str(sid): [row for row in rows if row[0] > seq] for sid, rows in self.samples.items()}


def server_stats(server: SpiceServer) -> dict[str, Any]:
    r = server.render.counters
    clients = [client_stats(server, c) for c in server.clients.values()]
    return {
        "source": server.source.name,
        "width": server.render.width,
        "height": server.render.height,
        "uptime": round(time.monotonic() - server.started, 3),
        "allow_multiple_clients": server.allow_multiple_clients,
        "endpoints": dict(server.endpoints),
        "ticket": {"enabled": server.ticket.enabled, "expires": server.ticket.expires, "expired": server.ticket.expired()},
        "primary": server.primary.session_id if server.primary else None,
        "clients": clients,
        "render": {
            "frames": r.frames,
            "drawables": r.drawables,
            "fills": r.fills,
            "snapshots": r.snapshots,
            "encodes": dict(r.encodes),
            "encodes_threaded": server.render.pool.threaded,
            "encodes_skipped": server.render.pool.skipped,
            "encode_errors": r.encode_errors,
            "draws_sent": r.sends,
            "coalesced": sum(c["coalesced"] for c in clients),
            "resizes": r.resizes,
            "copies": r.copies,
            "lossless_upgrades": r.upgrades,
            "glz": server.render.glz.stats(),
            "streams": stream_stats(server),
            "lossless_after": server.render.lossless_after,
            "max_fps": 1.0 / server.render.pacer.interval,
            "image_compression": server.display_settings.image_compression,
            "jpeg_wan_compression": server.display_settings.jpeg_wan_compression,
            "zlib_glz_wan_compression": server.display_settings.zlib_glz_wan_compression,
        },
        "link_refusals": dict(server.link_refusals),
        "mouse_mode": server.mouse_mode.name.lower(),
        "source_state": server.source.describe(),
        "cursor": {
            "visible": server.cursor.visible,
            "sets": server.cursor.sets,
            "shape": server.cursor.shape.unique if server.cursor.shape else None,
        },
        "stalled_disconnects": server.stalled_disconnects,
        "unanswered_disconnects": server.unanswered_disconnects,  # dropped by --ping-timeout
        "slot_evictions": server.slot_evictions,  # view-only clients replaced by full-ticket ones
        "link_keys": {"ready": len(server.link_keys.keys), "made_inline": server.link_keys.made_inline, "taken": server.link_keys.taken},
        "guard": server.guard.stats(),
        "audio": audio_stats(server),
        "agent": server.agent_hub.describe(),  # the multi-client policy and what it did
    }


def stream_stats(server: SpiceServer) -> dict[str, Any]:
    """The video streams (render/streams.py): those playing now and what they cost."""
    st = server.render.streams
    c = st.counters
    tiers: dict[int, dict[str, int]] = {}  # each active stream's tier codecs: clients on each
    for client in server.clients.values():
        for p in _players(client):
            for sid in p.shown:
                if (tier := p.tier_codec(sid)) is not None:
                    per = tiers.setdefault(sid, {})
                    per[tier] = per.get(tier, 0) + 1
    active = [
        {
            "id": s.id,
            "rect": list(s.rect),
            "width": s.rect.width,
            "height": s.rect.height,
            "frames": s.frames,
            "fps": round(s.fps, 1),  # frames made a second, smoothed
            "tiers": dict(sorted(tiers.get(s.id, {}).items())),
            "frame_bytes": dict(s.frame_bytes),  # each tier's newest frame as sent
        }
        for s in st.active.values()
    ]
    return {
        "mode": st.mode,  # --streaming-video
        "active": active,
        "started": c.started,
        "ended": c.ended,
        "frames": c.frames,
        "tier_frames": dict(c.tiers),
    }


def audio_stats(server: SpiceServer) -> dict[str, Any]:
    pb, rec, src = server.playback, server.record, server.audio_source
    return {
        "source": src.describe() if src is not None else None,
        "playing": pb.active,
        "volume": pb.volume,  # per channel, 0-0xFFFF; None: never set (a VM's is passed on)
        "mute": pb.mute,
        "frames": pb.frames,
        "encodes": dict(pb.encodes),  # per mode: at most one per frame
        "opus_available": pb.opus_available,
        "record_to": getattr(rec.sink, "path", None),
        "recording_client": rec.active.client.session_id if rec.active is not None else None,
        "recorded_bytes": rec.bytes,
        "record_ignored": rec.ignored,
    }


def summary_line(server: SpiceServer) -> str:
    s = server_stats(server)
    r = s["render"]
    enc = sum(r["encodes"].values())
    per_client = ", ".join(
        f"{c['id']:#x}{'*' if c['primary'] else ''} pipe={c['pipe_items']}/{c['pipe_bytes']}B sent={c['bytes_sent']}B "
        f"coalesced={c['coalesced']} rtt={'-' if c['rtt_ms'] is None else str(c['rtt_ms']) + 'ms'} "
        f"link={'wan' if c['link']['wan'] else 'lan'}/"
        f"{'-' if c['link']['bandwidth_bps'] is None else format(c['link']['bandwidth_bps'] / 1e6, '.1f') + 'Mbit/s'}"
        + (f" audio={c['playback']['mode']}/{c['playback']['frames_sent']}/-{c['playback']['frames_dropped']}" if c["playback"] else "")
        + (f" video={'+'.join(c['video']['tiers'])}/{c['video']['frames_sent']}" if c["video"] and c["video"]["playing"] else "")
        for c in s["clients"]
    )
    streams = len(r["streams"]["active"])
    return (
        f"clients={len(s['clients'])} drawables={r['drawables']} encodes={enc} sends={r['draws_sent']} coalesced={r['coalesced']}"
        + (f" streams={streams}" if streams else "")
        + f" [{per_client}]"
    )

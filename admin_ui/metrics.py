"""Prometheus metrics for `/metrics`: a collector that reads the stats object at scrape time.

Nothing is counted twice: the counters live where they change (channel clients, the
render service, the server; see spice_twisted/stats.py) and `SpiceCollector.collect()`
turns one `server_stats()` snapshot into metric families when Prometheus scrapes. The
scrape runs in the reactor thread like every other admin request, so it reads the live
state without locks. Per-client series carry the session id and the channel as labels;
they disappear when the client goes (its counters go with it, which Prometheus reads as
the end of that series, not as a counter reset).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from spice_twisted.stats import KINDS, server_stats

__all__ = ["CONTENT_TYPE_LATEST", "SpiceCollector", "metrics_registry", "render_metrics"]

CLIENT = ["client"]
CHANNEL = ["client", "channel", "channel_id"]


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class SpiceCollector(Collector):
    """Every number of the stats object that a dashboard or an alert wants, read per scrape."""

    def __init__(self, server: Any) -> None:
        self.server = server

    def collect(self) -> Iterator[Any]:
        s = server_stats(self.server)
        r = s["render"]
        yield _gauge("spice_clients", "Connected SPICE clients (sessions).", len(s["clients"]))
        yield _gauge("spice_uptime_seconds", "Seconds since the server started.", s["uptime"])
        yield _gauge("spice_display_width_pixels", "Width of the shared display.", s["width"])
        yield _gauge("spice_display_height_pixels", "Height of the shared display.", s["height"])

        # --- the render service: once for all clients ------------------------------------
        yield _counter("spice_frames", "Frames the render service turned damage into drawables.", r["frames"])
        yield _counter("spice_drawables", "Drawables made (each encoded once per codec in use).", r["drawables"])
        yield _counter("spice_draws_sent", "Draw messages queued to display channels, all clients together.", r["draws_sent"])
        yield _counter("spice_copies", "COPY_BITS moves sent as such.", r["copies"])
        yield _counter("spice_lossless_upgrades", "Lossy areas re-sent lossless once quiet.", r["lossless_upgrades"])
        yield _counter("spice_encode_errors", "Encodes that failed (the image went another way).", r["encode_errors"])
        enc = CounterMetricFamily("spice_encodes", "Images encoded, per codec (once per codec for all clients).", labels=["codec"])
        for codec, n in sorted(r["encodes"].items()):
            enc.add_metric([codec], n)
        yield enc

        # --- video streams (render/streams.py) ----------------------------------------------
        streams = r["streams"]
        yield _gauge("spice_video_streams", "Video streams playing now.", len(streams["active"]))
        yield _counter("spice_video_streams_started", "Video streams started (a steadily redrawn area detected).", streams["started"])
        by_tier = CounterMetricFamily(
            "spice_video_frames", "Stream frames handed to clients, by tier (one per client a frame goes to).", labels=["tier"]
        )
        for tier, n in sorted(streams["tier_frames"].items()):
            by_tier.add_metric([tier], n)
        yield by_tier

        # --- links and their refusals -----------------------------------------------------
        refusals = CounterMetricFamily("spice_link_refusals", "Links refused, by SPICE link error.", labels=["error"])
        for error, n in sorted(s["link_refusals"].items()):
            refusals.add_metric([error], n)
        yield refusals
        yield _counter(
            "spice_auth_failures",
            "Links refused for a wrong or expired ticket (PERMISSION_DENIED).",
            s["link_refusals"].get("PERMISSION_DENIED", 0),
        )
        guard = s["guard"]
        by_kind = CounterMetricFamily("spice_connection_refusals", "Connections refused by the guard, by reason.", labels=["reason"])
        for kind, n in sorted(guard["refusals"].items()):
            by_kind.add_metric([kind], n)
        yield by_kind
        yield _counter("spice_tickets_delayed", "Ticket checks delayed by the per-address back-off.", guard["tickets_delayed"])
        yield _counter("spice_stalled_disconnects", "Clients dropped for not reading (--stall-timeout).", s["stalled_disconnects"])
        yield _counter(
            "spice_unanswered_disconnects", "Clients dropped for unanswered pings (--ping-timeout).", s["unanswered_disconnects"]
        )

        # --- audio -----------------------------------------------------------------------
        audio = s["audio"]
        yield _counter("spice_audio_frames", "Audio frames played to the clients (each encoded at most once per mode).", audio["frames"])
        yield _counter("spice_audio_recorded_bytes", "Bytes of audio recorded from the primary client.", audio["recorded_bytes"])

        # --- per client and per channel ---------------------------------------------------
        families = {
            "bytes": CounterMetricFamily("spice_channel_bytes_sent", "Bytes written to a client's channel.", labels=CHANNEL),
            "messages": CounterMetricFamily("spice_channel_messages_sent", "Messages written to a client's channel.", labels=CHANNEL),
            "received": CounterMetricFamily(
                "spice_channel_messages_received", "Messages received from a client's channel.", labels=CHANNEL
            ),
            "draws": CounterMetricFamily(
                "spice_channel_updates_sent", "Display updates (draw messages) sent on a display channel.", labels=CHANNEL
            ),
            "coalesced": CounterMetricFamily(
                "spice_channel_coalesced", "Updates dropped because a newer one covered them (slow client).", labels=CHANNEL
            ),
            "collapses": CounterMetricFamily(
                "spice_channel_pipe_collapses", "Times a full display pipe was collapsed to one full-screen update.", labels=CHANNEL
            ),
            "pipe_items": GaugeMetricFamily("spice_channel_pipe_items", "Items waiting in a channel's pipe.", labels=CHANNEL),
            "pipe_bytes": GaugeMetricFamily("spice_channel_pipe_bytes", "Bytes waiting in a channel's pipe.", labels=CHANNEL),
            "rtt": GaugeMetricFamily("spice_channel_rtt_seconds", "Last measured ping round trip of a channel.", labels=CHANNEL),
            "rate": GaugeMetricFamily("spice_channel_send_bytes_per_second", "Recent send rate of a channel.", labels=CHANNEL),
        }
        channels = GaugeMetricFamily("spice_channels", "Open channels, by type.", labels=["channel"])
        per_type: dict[str, int] = {}
        info = GaugeMetricFamily(
            "spice_client_info",
            "One per client: its address, kind (spice-gtk, spice-html5, other), codec and image mode.",
            labels=["client", "address", "kind", "codec", "image_mode"],
        )
        kinds = GaugeMetricFamily("spice_clients_by_kind", "Connected clients by kind (judged from their link's caps).", labels=["kind"])
        per_kind = dict.fromkeys(KINDS, 0)
        primary = GaugeMetricFamily("spice_client_primary", "1 for the client that drives the display.", labels=CLIENT)
        view_only = GaugeMetricFamily("spice_client_view_only", "1 for a client whose input is ignored.", labels=CLIENT)
        inputs = CounterMetricFamily("spice_client_input_events", "Input events received from a client.", labels=CLIENT)
        dropped = CounterMetricFamily("spice_client_input_dropped", "Input events ignored (view-only or not primary).", labels=CLIENT)
        bandwidth = GaugeMetricFamily("spice_client_bandwidth_bits_per_second", "Estimated link bandwidth of a client.", labels=CLIENT)
        audio_sent = CounterMetricFamily("spice_client_audio_frames_sent", "Audio frames sent to a client.", labels=CLIENT)
        audio_dropped = CounterMetricFamily("spice_client_audio_frames_dropped", "Audio frames dropped for a slow client.", labels=CLIENT)
        video_sent = CounterMetricFamily(
            "spice_client_video_frames_sent", "Video stream frames (STREAM_DATA) sent to a client.", labels=CLIENT
        )
        for c in s["clients"]:
            cid = f"{c['id']:#x}"
            info.add_metric([cid, c["address"] or "", c["kind"], c["codec"] or "", c["image_mode"]], 1)
            per_kind[c["kind"]] = per_kind.get(c["kind"], 0) + 1
            primary.add_metric([cid], 1 if c["primary"] else 0)
            view_only.add_metric([cid], 1 if c["view_only"] else 0)
            inputs.add_metric([cid], c["input_events"])
            dropped.add_metric([cid], c["input_dropped"])
            if c["link"]["bandwidth_bps"] is not None:
                bandwidth.add_metric([cid], c["link"]["bandwidth_bps"])
            if c["playback"] is not None:
                audio_sent.add_metric([cid], c["playback"]["frames_sent"])
                audio_dropped.add_metric([cid], c["playback"]["frames_dropped"])
            if c["video"] is not None:
                video_sent.add_metric([cid], c["video"]["frames_sent"])
            for ch in c["channels"]:
                per_type[ch["channel"]] = per_type.get(ch["channel"], 0) + 1
                labels = [cid, ch["channel"], str(ch["id"])]
                families["bytes"].add_metric(labels, ch["bytes_sent"])
                families["messages"].add_metric(labels, ch["messages_sent"])
                families["received"].add_metric(labels, ch["messages_received"])
                families["pipe_items"].add_metric(labels, ch["pipe_items"])
                families["pipe_bytes"].add_metric(labels, ch["pipe_bytes"])
                families["rate"].add_metric(labels, ch["bytes_per_second"])
                if ch["rtt_ms"] is not None:
                    families["rtt"].add_metric(labels, ch["rtt_ms"] / 1000.0)
                if ch["channel"] == "display":
                    families["draws"].add_metric(labels, ch["draws_sent"])
                    families["coalesced"].add_metric(labels, ch["coalesced"])
                    families["collapses"].add_metric(labels, ch.get("collapses", 0))
        for name, n in sorted(per_type.items()):
            channels.add_metric([name], n)
        yield channels
        for kind, n in per_kind.items():
            kinds.add_metric([kind], n)
        yield kinds
        yield info
        yield primary
        yield view_only
        yield inputs
        yield dropped
        yield bandwidth
        yield audio_sent
        yield audio_dropped
        yield video_sent
        yield from families.values()


def metrics_registry(server: Any) -> CollectorRegistry:
    """A registry of our own (not the process-wide default): only this server's numbers."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpiceCollector(server))
    return registry


def render_metrics(registry: CollectorRegistry) -> bytes:
    """The text exposition format, as prometheus_client writes it."""
    return generate_latest(registry)

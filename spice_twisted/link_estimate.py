"""What the server knows of one client's link: bandwidth (bits/s), round trip, and a WAN verdict.

Sans-IO (no Twisted, no sockets, time passed in), so tests drive it with numbers alone.
Three measures feed it:
- the connect-time network test (`NetTest`), as upstream spice-server runs it on the main
  channel: two PINGs with no data, then one with `NET_TEST_BYTES` of padding; the latency
  is the smaller round trip of the two small ones, the bitrate is the large PING's bytes
  over (its round trip - latency);
- the main channel's periodic pings (`rtt_sample`): `rtt` is the lowest of the last
  `RTT_WINDOW`, so one ping stuck behind a burst does not make a LAN look far;
- the display channel's delivery (`delivered`): bytes the client acknowledged per second
  while its pipe had a backlog (the link, not the source, was the limit). A span where
  little was in flight (a window of tiny messages) only says "at least this fast".

The verdict `is_wan` has hysteresis: a LAN client becomes WAN below `WAN_BELOW` bits/s
(upstream's low-bandwidth threshold, 10 Mibit/s) or above `WAN_RTT`; a WAN client becomes
LAN again only above `LAN_ABOVE` and below `LAN_RTT`. Listeners hear every change.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable

NET_TEST_BYTES = 250 * 1024  # padding of the probe's large PING (upstream's NET_TEST_BYTES)
NET_TEST_STAGES = ("warmup", "latency", "rate")  # the three PINGs of one test, in order
WAN_BELOW = 10 * 1024 * 1024  # bits/s: upstream's is_low_bandwidth() threshold
LAN_ABOVE = 15 * 1024 * 1024  # bits/s: a WAN client must measure this much to be LAN again
WAN_RTT = 0.200  # seconds: no LAN or Wi-Fi path has a round trip this long
LAN_RTT = 0.100
RTT_WINDOW = 4  # periodic ping round trips remembered; `rtt` is their minimum
SAMPLE_SPAN = 0.5  # seconds of backlogged delivery that make one send-rate sample
SPAN_MAX_AGE = 5.0  # a span not filled within this many seconds starts again
MIN_IN_FLIGHT = 32 * 1024  # bytes: below this a backlogged span only bounds the rate from below

Listener = Callable[["LinkEstimate"], None]


def net_test_result(warmup: float, latency: float, rate: float, nbytes: int = NET_TEST_BYTES) -> tuple[float, float] | None:
    """(latency s, bitrate bits/s) from the three round trips, or None when the large PING
    came back no later than the small ones (a loaded host: upstream then assumes a fast link)."""
    base = min(warmup, latency)
    if rate <= base:
        return None
    return base, nbytes * 8 / (rate - base)


class NetTest:
    """One run of the network test: which ping id is which stage, and the round trips so far."""

    def __init__(self, started: float, nbytes: int = NET_TEST_BYTES) -> None:
        self.started = started
        self.nbytes = nbytes
        self.stage_of: dict[int, str] = {}
        self.rtts: dict[str, float] = {}

    def sent(self, stage: str, ping_id: int) -> None:
        self.stage_of[ping_id] = stage

    def answered(self, ping_id: int, rtt: float) -> bool:
        """Record a PONG; False for an id that is not one of this test's."""
        stage = self.stage_of.pop(ping_id, None)
        if stage is None:
            return False
        self.rtts[stage] = rtt
        return True

    @property
    def complete(self) -> bool:
        return len(self.rtts) == len(NET_TEST_STAGES)

    def result(self) -> tuple[float, float] | None:
        if not self.complete:
            return None
        return net_test_result(self.rtts["warmup"], self.rtts["latency"], self.rtts["rate"], self.nbytes)


class LinkEstimate:
    """One client's link. Read `bandwidth`, `rtt`, `is_wan`; `subscribe()` to verdict changes."""

    def __init__(self) -> None:
        self.bandwidth: float | None = None  # bits/s; None until something measured it
        self.rtt: float | None = None  # seconds (the lowest recent round trip)
        self.is_wan = False  # as upstream: a client counts as fast until measured slow
        self.source: str | None = None  # what set `bandwidth` last: "probe" or "send-rate"
        self.probe_latency: float | None = None  # the last network test's numbers
        self.probe_bitrate: float | None = None
        self.probes = 0  # network tests that gave a result
        self.samples = 0  # send-rate samples taken
        self.changes = 0  # verdict changes
        self._rtts: deque[float] = deque(maxlen=RTT_WINDOW)
        self._listeners: list[Listener] = []
        self._last_ack: float | None = None
        self._reset_span()

    def __repr__(self) -> str:
        bw = "-" if self.bandwidth is None else f"{self.bandwidth / 1e6:.2f}Mbit/s"
        rtt = "-" if self.rtt is None else f"{self.rtt * 1000:.1f}ms"
        return f"<LinkEstimate {'WAN' if self.is_wan else 'LAN'} {bw} rtt={rtt}>"

    # --- listeners ----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(estimate)` after each change of `is_wan`; returns the unsubscribe."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    # --- measures -----------------------------------------------------------------------
    def probe_result(self, latency: float, bitrate: float) -> None:
        """A network test finished: its bitrate replaces the estimate (a deliberate measure)."""
        self.probes += 1
        self.probe_latency, self.probe_bitrate = latency, bitrate
        self.bandwidth, self.source = bitrate, "probe"
        self._reset_span()
        self.rtt_sample(latency)

    def rtt_sample(self, rtt: float) -> None:
        self._rtts.append(rtt)
        self.rtt = min(self._rtts)
        self._judge()

    def delivered(self, nbytes: int, now: float, backlog: bool, in_flight: int) -> None:
        """The client acknowledged `nbytes` at `now`; `backlog`: the sender had more waiting
        all the time since the previous ACK; `in_flight`: bytes written and not yet
        acknowledged before this ACK."""
        prev, self._last_ack = self._last_ack, now
        if prev is None or not backlog:
            return  # part of the time since the last ACK the link may have idled
        if self._span_time and now - self._span_started > SPAN_MAX_AGE:
            self._reset_span()
        if not self._span_time:
            self._span_started = prev
        self._span_bytes += nbytes
        self._span_time += now - prev
        self._span_min_in_flight = min(self._span_min_in_flight, in_flight)
        if self._span_time < SAMPLE_SPAN:
            return
        rate = self._span_bytes * 8 / self._span_time
        full = self._span_min_in_flight >= MIN_IN_FLIGHT
        self._reset_span()
        self.samples += 1
        if full:
            # A geometric mean of the old estimate and the sample: a change of link shows
            # within two samples, one odd sample moves the estimate only halfway.
            self.bandwidth = rate if self.bandwidth is None else math.sqrt(self.bandwidth * rate)
        elif self.bandwidth is None or rate > self.bandwidth:
            self.bandwidth = rate  # little in flight: the link is at least this fast
        else:
            return
        self.source = "send-rate"
        self._judge()

    def _reset_span(self) -> None:
        self._span_bytes = 0
        self._span_time = 0.0
        self._span_started = 0.0
        self._span_min_in_flight = 1 << 62

    # --- the verdict --------------------------------------------------------------------
    def _judge(self) -> None:
        bw, rtt = self.bandwidth, self.rtt
        if not self.is_wan:
            wan = (bw is not None and bw < WAN_BELOW) or (rtt is not None and rtt > WAN_RTT)
        else:
            wan = not ((bw is None or bw > LAN_ABOVE) and (rtt is None or rtt < LAN_RTT))
        if wan == self.is_wan:
            return
        self.is_wan = wan
        self.changes += 1
        for listener in list(self._listeners):
            listener(self)

    def stats(self) -> dict[str, object]:
        return {
            "wan": self.is_wan,
            "bandwidth_bps": None if self.bandwidth is None else int(self.bandwidth),
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000, 3),
            "source": self.source,
            "probe_latency_ms": None if self.probe_latency is None else round(self.probe_latency * 1000, 3),
            "probe_bitrate_bps": None if self.probe_bitrate is None else int(self.probe_bitrate),
            "probes": self.probes,
            "samples": self.samples,
            "changes": self.changes,
        }

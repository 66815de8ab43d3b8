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
  over ACK windows whose messages were all written before the previous ACK came (they
  were queued in the link, so the link, not the source, set the pace). Windows of tiny
  messages (per-message latency, not bytes, sets their pace) only say "at least this fast".

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
TRUST_SPAN = 2.0  # a sample this long replaces the estimate; a shorter one moves it part way
SPAN_MAX_AGE = 5.0  # a span not filled within this many seconds starts again
MIN_WINDOW_BYTES = 32 * 1024  # ACK windows smaller than this only bound the rate from below

Listener = Callable[["LinkEstimate"], None]


def net_test_result(warmup: float, latency: float, rate: float, nbytes: int = NET_TEST_BYTES) -> tuple[float, float] | None:
    """(latency s, bitrate bits/s) from the three round trips (upstream's arithmetic).

    When the large PING came back no later than the small ones (a fast link, or a client
    busy at connect that read all three at once) upstream gives up and assumes a fast
    link; here the bitrate is then the bound the large PING proves: all its bytes arrived
    within its own round trip. None only for a round trip of zero."""
    base = min(warmup, latency)
    if rate > base:
        return base, nbytes * 8 / (rate - base)
    if rate <= 0:
        return None
    return min(base, rate), nbytes * 8 / rate


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
        self.probes_inconclusive = 0  # ... that did not (no answer, or a too fast answer)
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

    def probe_inconclusive(self) -> None:
        """A network test gave no numbers: the large PING came back as fast as the small
        ones (a fast link, or a client that read all three at once) or not at all. The
        estimate stays as it is (upstream, too, then keeps its client fast)."""
        self.probes_inconclusive += 1

    def rtt_sample(self, rtt: float) -> None:
        self._rtts.append(rtt)
        self.rtt = min(self._rtts)
        self._judge()

    def delivered(self, nbytes: int, now: float, queued: bool) -> None:
        """The client acknowledged `nbytes` at `now`; `queued`: all of them had been written
        before the previous ACK came (so the link had them waiting all the time since)."""
        prev, self._last_ack = self._last_ack, now
        if prev is None or not queued:
            return  # the source, not the link, may have set the pace
        if self._span_time and now - self._span_started > SPAN_MAX_AGE:
            self._reset_span()
        if not self._span_time:
            self._span_started = prev
        self._span_bytes += nbytes
        self._span_time += now - prev
        self._span_min_window = min(self._span_min_window, nbytes)
        if self._span_time < SAMPLE_SPAN:
            return
        span = self._span_time
        rate = self._span_bytes * 8 / span
        full = self._span_min_window >= MIN_WINDOW_BYTES
        self._reset_span()
        self.samples += 1
        if full:
            # Moved towards the sample in proportion to the time it covers (on a log scale:
            # 500 and 2 Mbit/s are far apart, 500 and 600 are not): TRUST_SPAN seconds of
            # backlog are enough to believe a new link, one short burst is not.
            weight = min(1.0, span / TRUST_SPAN)
            old = rate if self.bandwidth is None else self.bandwidth
            self.bandwidth = math.exp((1 - weight) * math.log(old) + weight * math.log(rate))
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
        self._span_min_window = 1 << 62

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
            "probes_inconclusive": self.probes_inconclusive,
            "samples": self.samples,
            "changes": self.changes,
        }

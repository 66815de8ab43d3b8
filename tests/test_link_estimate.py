"""The link estimate alone (sans-IO): the network test's arithmetic, the send-rate samples,
the WAN verdict's hysteresis and its listeners; the core's probe pings; lossy_allowed."""

from __future__ import annotations

import struct

import pytest

from spice_twisted.codecs.choice import lossy_allowed
from spice_twisted.link_estimate import (
    LAN_ABOVE,
    MIN_WINDOW_BYTES,
    NET_TEST_BYTES,
    SAMPLE_SPAN,
    TRUST_SPAN,
    WAN_BELOW,
    LinkEstimate,
    NetTest,
    net_test_result,
)
from spice_twisted.wire.channel import PROBE_IDS, ChannelCore, Pong, ProbePong
from spice_twisted.wire.enums import ChannelType, MsgcCommon, MsgCommon
from spice_twisted.wire.messages import decode_body, message

MINI = struct.Struct("<HI")
MBIT = 1e6


def frame(msg_type: int, body: bytes = b"") -> bytes:
    return MINI.pack(msg_type, len(body)) + body


class FakeClock:
    def __init__(self) -> None:
        self.now = 5_000_000_000

    def __call__(self) -> int:
        return self.now


def feed_rate(est: LinkEstimate, bits_per_second: float, seconds: float, start: float = 100.0, window: int = 64 * 1024) -> float:
    """ACKs of `window` bytes each, at the pace of the given rate, all queued in the link."""
    step = window * 8 / bits_per_second
    t = start
    est.delivered(window, t, True)
    while t < start + seconds:
        t += step
        est.delivered(window, t, True)
    return t


# --- the network test --------------------------------------------------------------------
def test_net_test_result_is_upstreams_arithmetic():
    # 250 KiB in (1.050 - 0.050) s over a 50 ms latency: 2.048 Mbit/s
    latency, bitrate = net_test_result(0.060, 0.050, 1.050)
    assert latency == 0.050
    assert bitrate == pytest.approx(NET_TEST_BYTES * 8 / 1.0)
    # The large ping no slower than the small ones: at least its bytes in its round trip.
    latency, bitrate = net_test_result(0.010, 0.012, 0.009)
    assert latency == 0.009 and bitrate == pytest.approx(NET_TEST_BYTES * 8 / 0.009)
    assert net_test_result(0.0, 0.0, 0.0) is None


def test_net_test_matches_ids_to_stages_and_ignores_strangers():
    test = NetTest(0.0)
    for i, stage in enumerate(("warmup", "latency", "rate")):
        test.sent(stage, 100 + i)
    assert not test.answered(7, 0.1)  # not ours
    assert test.answered(100, 0.020) and test.answered(101, 0.010)
    assert not test.complete and test.result() is None
    assert not test.answered(100, 0.5)  # answered once
    assert test.answered(102, 0.110)
    assert test.complete
    latency, bitrate = test.result()
    assert latency == 0.010 and bitrate == pytest.approx(NET_TEST_BYTES * 8 / 0.1)


def test_probe_result_sets_bandwidth_rtt_and_verdict():
    est = LinkEstimate()
    assert not est.is_wan and est.bandwidth is None  # fast until measured slow (as upstream)
    est.probe_result(0.050, 2 * MBIT)
    assert est.is_wan and est.bandwidth == 2 * MBIT and est.rtt == 0.050 and est.source == "probe"
    s = est.stats()
    assert s["wan"] and s["bandwidth_bps"] == 2_000_000 and s["rtt_ms"] == 50.0 and s["probes"] == 1
    lan = LinkEstimate()
    lan.probe_result(0.0005, 800 * MBIT)
    assert not lan.is_wan


# --- hysteresis and listeners --------------------------------------------------------------
def test_hysteresis_between_thresholds_keeps_the_verdict():
    heard: list[bool] = []
    est = LinkEstimate()
    est.subscribe(lambda e: heard.append(e.is_wan))
    mid = (WAN_BELOW + LAN_ABOVE) / 2
    est.probe_result(0.001, mid)
    assert not est.is_wan  # between the thresholds: a LAN client stays LAN
    est.probe_result(0.001, WAN_BELOW * 0.9)
    assert est.is_wan
    est.probe_result(0.001, mid)
    assert est.is_wan  # ... and a WAN client stays WAN
    est.probe_result(0.001, LAN_ABOVE * 1.1)
    assert not est.is_wan
    assert heard == [True, False] and est.changes == 2


def test_high_round_trip_alone_is_wan_and_the_minimum_of_recent_pings_counts():
    est = LinkEstimate()
    est.probe_result(0.001, 500 * MBIT)
    for _ in range(3):
        est.rtt_sample(0.400)
    assert not est.is_wan  # one fast ping among the recent ones: still near
    est.rtt_sample(0.400)
    assert est.is_wan and est.rtt == 0.400  # all recent pings slow
    est.rtt_sample(0.150)
    assert est.is_wan  # between LAN_RTT and WAN_RTT: stays
    est.rtt_sample(0.002)
    assert not est.is_wan


def test_unsubscribe_stops_notifications():
    heard: list[bool] = []
    est = LinkEstimate()
    unsubscribe = est.subscribe(lambda e: heard.append(e.is_wan))
    unsubscribe()
    unsubscribe()  # twice is harmless
    est.probe_result(0.05, MBIT)
    assert heard == [] and est.is_wan


# --- the send rate ----------------------------------------------------------------------
def test_backlogged_delivery_at_a_slow_rate_makes_a_fast_link_wan_after_trust_span():
    est = LinkEstimate()
    est.probe_result(0.001, 500 * MBIT)
    feed_rate(est, 2 * MBIT, SAMPLE_SPAN)
    assert est.samples == 1 and not est.is_wan  # one short sample moves it only part way
    feed_rate(est, 2 * MBIT, TRUST_SPAN * 1.5, start=200.0)
    assert est.is_wan and est.source == "send-rate"
    assert est.bandwidth < WAN_BELOW


def test_one_long_backlogged_span_is_believed_at_once():
    est = LinkEstimate()
    est.probe_result(0.001, 500 * MBIT)
    est.delivered(100_000, 10.0, True)
    est.delivered(750_000, 10.0 + TRUST_SPAN * 1.5, True)  # 2 Mbit/s for 3 s
    assert est.samples == 1 and est.is_wan and est.bandwidth == pytest.approx(2 * MBIT)


def test_delivery_of_what_was_not_queued_says_nothing():
    est = LinkEstimate()
    est.probe_result(0.001, 500 * MBIT)
    t = 0.0
    for _ in range(200):
        t += 0.05
        est.delivered(100_000, t, False)  # the source, not the link, set this pace
    assert est.samples == 0 and est.bandwidth == 500 * MBIT and not est.is_wan


def test_little_in_flight_only_raises_the_estimate():
    # A window of tiny messages: per-message latency, not bytes, sets the pace.
    est = LinkEstimate()
    est.probe_result(0.001, 20 * MBIT)
    feed_rate(est, 1 * MBIT, SAMPLE_SPAN * 3, window=MIN_WINDOW_BYTES // 4)
    assert est.samples >= 2 and est.bandwidth == 20 * MBIT and not est.is_wan
    feed_rate(est, 90 * MBIT, SAMPLE_SPAN * 3, start=200.0, window=MIN_WINDOW_BYTES // 4)
    assert est.bandwidth > 80 * MBIT


def test_a_slow_link_that_gets_fast_is_lan_again_by_the_send_rate_or_a_probe():
    est = LinkEstimate()
    est.probe_result(0.05, 2 * MBIT)
    assert est.is_wan
    feed_rate(est, 400 * MBIT, SAMPLE_SPAN * 4)
    assert not est.is_wan
    est2 = LinkEstimate()
    est2.probe_result(0.05, 2 * MBIT)
    est2.probe_result(0.001, 300 * MBIT)
    assert not est2.is_wan


def test_a_span_is_made_of_queued_windows_only_and_a_stale_one_starts_again():
    est = LinkEstimate()
    est.probe_result(0.001, 500 * MBIT)
    est.delivered(100_000, 0.0, True)
    est.delivered(100_000, 0.1, True)  # 0.1 s of span
    est.delivered(100_000, 30.0, False)  # written after the last ACK: not counted
    est.delivered(100_000, 30.1, True)  # 0.1 s more, but the span began 30 s ago
    est.delivered(100_000, 30.2, True)
    assert est.samples == 0
    # A link backlogged for a long time between two ACKs (a slow link, big messages) counts.
    est.delivered(100_000, 40.2, True)
    assert est.samples == 1 and est.is_wan


# --- the core's probe pings -----------------------------------------------------------------
def test_probe_pings_carry_the_padding_apart_and_do_not_disturb_periodic_pings():
    clock = FakeClock()
    core = ChannelCore(ChannelType.MAIN, mini_header=True, handles_acks=False, clock_ns=clock)
    _, periodic_body = core.ping()
    periodic = decode_body(message(None, "PING"), periodic_body)
    padding = bytes(NET_TEST_BYTES)
    ping_id, msg_type, head, tail = core.probe_ping(padding)
    assert msg_type == MsgCommon.PING and ping_id >= PROBE_IDS
    assert tail is padding  # the very buffer, not a copy
    fields = decode_body(message(None, "PING"), head + tail)
    assert fields["id"] == ping_id and len(fields["data"]) == NET_TEST_BYTES
    for _ in range(10):  # many probes: the periodic ping is still remembered
        core.probe_ping()
    clock.now += 2_000_000
    pong = struct.pack("<IQ", periodic["id"], periodic["timestamp"])
    assert core.receive_data(frame(MsgcCommon.PONG, pong)) == [Pong(0.002)]


def test_probe_pongs_unknown_forged_or_forgotten_are_ignored():
    clock = FakeClock()
    core = ChannelCore(ChannelType.MAIN, mini_header=True, handles_acks=False, clock_ns=clock)
    ping_id, _, head, _ = core.probe_ping()
    stamp = decode_body(message(None, "PING"), head)["timestamp"]
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", 12345, stamp))) == []
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp + 1))) == []
    clock.now += 50_000_000
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp))) == [ProbePong(ping_id, 0.05)]
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", ping_id, stamp))) == []  # once
    other, _, head, _ = core.probe_ping()
    core.forget_probes()
    stamp = decode_body(message(None, "PING"), head)["timestamp"]
    assert core.receive_data(frame(MsgcCommon.PONG, struct.pack("<IQ", other, stamp))) == []


def test_probe_memory_is_bounded():
    core = ChannelCore(ChannelType.MAIN, mini_header=True, handles_acks=False)
    for _ in range(1000):
        core.probe_ping()
    assert len(core._probes) <= 4


# --- the setting -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "is_wan", "allowed"),
    [("auto", True, True), ("auto", False, False), ("always", False, True), ("always", True, True), ("never", True, False)],
)
def test_lossy_allowed(setting, is_wan, allowed):
    assert lossy_allowed(setting, is_wan) is allowed

"""Fuzzing in the suite: hypothesis over every client-to-server message and every fuzz target
(random, truncated, oversized, wrong-channel and valid-but-hostile input), and a short run of
the long-run harness in fuzz/ (atheris when installed, else its random engine).

The promise under test: bad input ends in the entry point's own error or closes that one
connection, with one log line; valid input, however hostile its values, never closes it."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.processes import ROOT
from twisted.logger import LogLevel, globalLogPublisher

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.gen import DrawChooser, client_messages, other_channel_messages, valid_body, value_for  # noqa: E402
from fuzz.run import have_atheris  # noqa: E402
from fuzz.targets import CHANNELS, TARGETS, _Client, make_server  # noqa: E402
from spice_twisted.limits import Limits  # noqa: E402
from spice_twisted.wire.channel import ChannelCore, ProtocolError, Received  # noqa: E402
from spice_twisted.wire.messages import encode_body  # noqa: E402

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
CASES = [(ch, m) for ch in CHANNELS for m in client_messages(ch)]
IDS = [f"{ch.name.lower()}-{m.name}" for ch, m in CASES]


def _core(channel):
    max_body, per_type = Limits().channel_limits(channel, 6)
    return ChannelCore(channel, True, handles_acks=True, max_body=max_body, type_limits=per_type)


def _frame(msg_id: int, body: bytes) -> bytes:
    return struct.pack("<HI", msg_id, len(body)) + body


@pytest.mark.parametrize("channel,msg", CASES, ids=IDS)
@FUZZ
@given(data=st.data())
def test_every_client_message_valid_truncated_oversized(channel, msg, data):
    ch = DrawChooser(data)
    body = valid_body(ch, msg)
    # valid, any values: decoded (or consumed by the core: ACK, ACK_SYNC, PONG), never an error
    events = _core(channel).receive_data(_frame(msg.id, body))
    assert all(e.message is msg for e in events if isinstance(e, Received))
    # truncated below what the layout needs: the protocol error, nothing else
    cut = data.draw(st.integers(0, max(0, len(body) - 1)))
    try:
        _core(channel).receive_data(_frame(msg.id, body[:cut]))
    except ProtocolError:
        pass
    # oversized: refused on the header, before any body
    limit = _core(channel).framer.type_limits.get(msg.id, _core(channel).framer.max_body)
    with pytest.raises(ProtocolError, match="claims"):
        _core(channel).receive_data(struct.pack("<HI", msg.id, limit + data.draw(st.integers(1, 2**31))))


@pytest.mark.parametrize("channel", CHANNELS, ids=[c.name.lower() for c in CHANNELS])
@FUZZ
@given(data=st.data())
def test_messages_of_other_channels_are_protocol_errors(channel, data):
    others = [m for m in other_channel_messages(channel) if m.id not in {x.id for x in client_messages(channel)}]
    msg = data.draw(st.sampled_from(others))
    with pytest.raises(ProtocolError, match="unknown message type"):
        _core(channel).receive_data(_frame(msg.id, valid_body(DrawChooser(data), msg)))


class _Warnings:
    def __enter__(self):
        self.lines = []
        globalLogPublisher.addObserver(self)
        return self

    def __call__(self, event):
        if event.get("log_level") in (LogLevel.warn, LogLevel.error, LogLevel.critical):
            self.lines.append(event)

    def __exit__(self, *exc):
        globalLogPublisher.removeObserver(self)


@pytest.mark.parametrize("channel,msg", CASES, ids=IDS)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_valid_but_hostile_values_never_close_the_channel(channel, msg, data):
    """Each message with random, extreme values into the real channel client of a real server:
    handled, nothing raised, the connection open, nothing logged as a warning."""
    srv = make_server()
    client = _Client(srv)
    conn = client.conns[channel]
    value = value_for(DrawChooser(data), msg.layout)
    try:
        body = encode_body(msg, value)
    except Exception:  # noqa: BLE001  (a value the encoder cannot build is no message)
        return
    with _Warnings() as w:
        conn.feed(_frame(msg.id, body))
        srv.reactor.advance(1)
    if msg.name == "DISCONNECTING":  # the client asks to close: a polite close, no warning
        assert conn.protocol.close_reason == "client disconnecting"
    else:
        assert not conn.lost and conn.protocol.connected, conn.protocol.close_reason
    assert not w.lines, [e.get("log_format") for e in w.lines]


@pytest.mark.parametrize("channel", CHANNELS, ids=[c.name.lower() for c in CHANNELS])
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_bad_input_closes_that_connection_only_with_one_line(channel, data):
    srv = make_server()
    victim, attacker = _Client(srv), _Client(srv)
    conn = attacker.conns[channel]
    junk = data.draw(st.sampled_from(["unknown", "oversized", "truncated-body"]))
    if junk == "unknown":
        payload = _frame(9999, b"x")
    elif junk == "oversized":
        payload = struct.pack("<HI", client_messages(channel)[-1].id, 1 << 30)
    else:
        msg = data.draw(st.sampled_from([m for m in client_messages(channel) if m.layout.size > 0]))
        payload = struct.pack("<HI", msg.id, msg.layout.size - 1) + bytes(msg.layout.size - 1)
    with _Warnings() as w:
        conn.feed(payload)
        conn.feed(b"more after the error is not read")
    assert conn.lost
    closing = [e for e in w.lines if "closing" in (e.get("log_format") or "")]
    assert len(closing) == 1, [e.get("log_format") for e in w.lines]
    for c in victim.conns.values():
        assert not c.lost and c.protocol.connected


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_targets_under_hypothesis(name, data):
    TARGETS[name](DrawChooser(data))


def test_a_connection_that_vanishes_mid_message_frees_its_share():
    srv = make_server()
    client = _Client(srv)
    conn = client.conns[CHANNELS[0]]
    conn.feed(struct.pack("<HI", 107, 4000) + bytes(1000))  # AGENT_DATA, a quarter of it
    assert srv.guard.budget.total == 1006  # the header too
    conn.drop()
    assert srv.guard.budget.total == 0 and conn.protocol.core.buffered == 0


def _harness(*args: str) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "fuzz.run", *args], cwd=str(ROOT), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr[-5000:]
    return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]


def test_fuzz_harness_smoke_random_engine():
    lines = _harness("all", "--engine", "random", "--runs", "300", "--seed", "7")
    assert {x["target"] for x in lines} == set(TARGETS) and all(x["runs"] == 300 and x["findings"] == 0 for x in lines)


@pytest.mark.skipif(not have_atheris(), reason="atheris is not installed (the random engine runs above)")
def test_fuzz_harness_smoke_atheris():
    """The harness under atheris, on two targets (each is a child that instruments the whole
    package, about 2 s; every target runs under the random engine above and hypothesis)."""
    lines = [line for t in ("channels", "agent") for line in _harness(t, "--engine", "atheris", "--runs", "300")]
    assert {x["target"] for x in lines} == {"channels", "agent"}
    assert all(x["runs"] >= 300 and x["findings"] == 0 and x["status"] == 0 for x in lines), lines


def test_a_saved_input_replays(tmp_path):
    (tmp_path / "input").write_bytes(bytes(range(256)) * 4)
    r = subprocess.run(
        [sys.executable, "-m", "fuzz.run", "channels", "--replay", str(tmp_path / "input")],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "no finding" in r.stdout, r.stderr

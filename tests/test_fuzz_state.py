"""Hypothesis state machines: the link stage (wire.link.ServerLink) driven by a hostile client
and an owner that answers, or calls in the wrong state; and a real in-process server whose
attacking client mixes valid, partial and bad messages on all four channels, ACKs, reads or
not, lets time pass and vanishes, while a second client must stay untouched."""

from __future__ import annotations

import struct
import sys

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from support.processes import ROOT

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fuzz.gen import DrawChooser, client_messages, frame, valid_body  # noqa: E402
from fuzz.targets import CHANNELS, _check_server, _Client, make_server  # noqa: E402
from spice_twisted.wire.client_link import link_message  # noqa: E402
from spice_twisted.wire.enums import ChannelType, CommonCap, LinkError, MsgcCommon  # noqa: E402
from spice_twisted.wire.link import IllegalTransition, LinkDone, LinkFailed, LinkRequested, ServerLink, State, TicketReceived  # noqa: E402

LINK_PIECES = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda c, cid: link_message(c, cid), st.sampled_from([1, 2, 3, 4, 77]), st.integers(0, 2**32 - 1)),
    st.just(struct.pack("<I", 1)),
    st.binary(min_size=128, max_size=128),
)


class LinkMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.link = ServerLink()
        self.failed = self.done = False

    @precondition(lambda self: self.link.state not in (State.DONE, State.FAILED))
    @rule(data=LINK_PIECES)
    def feed(self, data):
        for ev in self.link.receive_data(data):
            if isinstance(ev, LinkFailed):
                assert ev.reply and ev.error != LinkError.OK
                self.failed = True
            elif isinstance(ev, LinkRequested):
                assert self.link.state is State.DECIDING
            elif isinstance(ev, TicketReceived):
                assert len(ev.encrypted) == 128 and self.link.state is State.CHECKING

    @precondition(lambda self: self.link.state is State.DECIDING)
    @rule(mini=st.booleans())
    def accept(self, mini):
        caps = {CommonCap.AUTH_SELECTION} | ({CommonCap.MINI_HEADER} if mini else set())
        reply, more = self.link.accept(bytes(162), frozenset(caps), frozenset())
        assert reply[:4] == b"REDQ"
        assert self.link.state in (State.AUTH_MECH, State.TICKET, State.CHECKING, State.FAILED)

    @precondition(lambda self: self.link.state is State.DECIDING)
    @rule()
    def reject(self):
        assert self.link.reject(LinkError.CHANNEL_NOT_AVAILABLE)[:4] == b"REDQ"
        assert self.link.state is State.FAILED

    @precondition(lambda self: self.link.state is State.CHECKING)
    @rule(ok=st.booleans())
    def result(self, ok):
        out, done = self.link.result(LinkError.OK if ok else LinkError.PERMISSION_DENIED)
        assert len(out) == 4
        assert (done is not None) == ok and (not ok or isinstance(done, LinkDone))
        self.done = ok

    @rule(which=st.sampled_from(["accept", "reject", "result"]))
    def call_in_a_wrong_state(self, which):
        state = self.link.state
        legal = {"accept": State.DECIDING, "reject": State.DECIDING, "result": State.CHECKING}[which]
        if state is legal:
            return
        try:
            if which == "accept":
                self.link.accept(bytes(162), frozenset(), frozenset())
            elif which == "reject":
                self.link.reject(LinkError.ERROR)
            else:
                self.link.result(LinkError.OK)
        except IllegalTransition:
            pass
        else:
            raise AssertionError(f"{which} in {state} was allowed")
        assert self.link.state is state

    @invariant()
    def ends_stay_ends(self):
        if self.link.state in (State.DONE, State.FAILED):
            try:
                self.link.receive_data(b"x")
            except IllegalTransition:
                return
            raise AssertionError("data accepted after the link ended")


TestLink = LinkMachine.TestCase
TestLink.settings = settings(max_examples=150, stateful_step_count=20, deadline=None, suppress_health_check=list(HealthCheck))


class ServerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.srv = make_server()
        self.victim = _Client(self.srv)
        self.attacker = _Client(self.srv)

    def _conn(self, channel):
        return self.attacker.conns[channel]

    @rule(channel=st.sampled_from(CHANNELS), data=st.data())
    def valid_message(self, channel, data):
        msg = data.draw(st.sampled_from(client_messages(channel)))
        body = valid_body(DrawChooser(data), msg)
        self._conn(channel).feed(struct.pack("<HI", msg.id, len(body)) + body)

    @rule(channel=st.sampled_from(CHANNELS), data=st.data())
    def hostile_frame(self, channel, data):
        self._conn(channel).feed(frame(DrawChooser(data), channel, True) or b"\0")

    @rule(channel=st.sampled_from(CHANNELS), data=st.data())
    def half_a_message(self, channel, data):
        msg = data.draw(st.sampled_from(client_messages(channel)))
        body = valid_body(DrawChooser(data), msg) + bytes(8)
        self._conn(channel).feed(struct.pack("<HI", msg.id, len(body))[: data.draw(st.integers(1, 6))])

    @rule(channel=st.sampled_from([ChannelType.DISPLAY, ChannelType.CURSOR]), n=st.integers(0, 4), right=st.booleans())
    def ack(self, channel, n, right):
        conn = self._conn(channel)
        gen = conn.protocol.core.ack_generation if right else conn.protocol.core.ack_generation + 1
        conn.feed(struct.pack("<HII", MsgcCommon.ACK_SYNC, 4, gen) + struct.pack("<HI", MsgcCommon.ACK, 0) * n)

    @rule(channel=st.sampled_from(CHANNELS))
    def read(self, channel):
        self._conn(channel).read()
        self.victim.conns[channel].read()

    @rule(seconds=st.floats(0, 12))
    def time_passes(self, seconds):
        self.srv.reactor.advance(seconds)
        for c in [*self.attacker.conns.values(), *self.victim.conns.values()]:
            c.settle()

    @rule(channel=st.sampled_from(CHANNELS))
    def vanish(self, channel):
        self._conn(channel).drop()

    @precondition(lambda self: self.attacker.conns[ChannelType.MAIN].lost)
    @rule()
    def come_back(self):
        self.attacker = _Client(self.srv)

    @invariant()
    def bounded_and_consistent(self):
        _check_server(self.srv)
        for conn in self.attacker.conns.values():
            cc = conn.protocol
            if conn.lost:
                assert not cc.connected and cc not in cc.client.channels
            else:
                assert cc.core.buffered <= 32 * 1024 + 6
        if self.attacker.conns[ChannelType.MAIN].lost:
            assert self.attacker.session not in self.srv.clients

    @invariant()
    def victim_untouched(self):
        assert self.victim.session in self.srv.clients
        for conn in self.victim.conns.values():
            assert not conn.lost and conn.protocol.connected


TestServer = ServerMachine.TestCase
TestServer.settings = settings(max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck))

"""The main channel: session setup (INIT), the channel list, mouse modes, the network test,
and the transport of the server's built-in agent (channels/agent.py: AGENT_START, AGENT_DATA
and AGENT_TOKEN go to it; INIT says whether the agent is connected: whether the source can
do anything with it, or files may be sent).

The network test (upstream's, see link_estimate.py) runs when the channel starts: three
probe PINGs queued together after INIT, the last one padded with NET_TEST_BYTES of zeros
(one shared buffer, written after the PING's head like a shared image payload, and in
pieces by the base's drain when the transport asks for more). The PONGs give the client's
`link` its latency and bitrate. The test is bounded: it gives up after PROBE_TIMEOUT
(and the core forgets its ids), and its timer goes when the channel closes. While the
client is judged WAN the test runs again now and then (REPROBE_FIRST seconds after the
verdict, doubling to REPROBE_MAX), the only way to see that a slow link got fast while the
display, no longer backlogged, cannot show it.

Liveness: a client must answer one of our PINGs (periodic, probe or keep-alive) within
`ping_timeout` of the moment we began to wait, which is when a PING was queued with none
outstanding, or the last answer while more are outstanding. The clock runs from queueing,
not writing, so a client whose buffers are full is judged the same as one whose kernel
absorbs everything; each answer restarts it, so a slow link working through the 256 KB
probe only needs to move one PING's worth in the bound. When no PING is outstanding and
none was answered for half the bound, a keep-alive PING goes out, so the rule holds
however long --ping-interval is. The server asks `liveness(now)` once a second.

A view-only client is told so by a NOTIFY right after INIT (spice-gtk logs NOTIFYs).
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from ..link_estimate import NET_TEST_BYTES, NET_TEST_STAGES, LinkEstimate, NetTest
from ..wire.agent import AgentError
from ..wire.channel import ProbePong
from ..wire.enums import ChannelType, MainCap, MouseMode, MsgMain
from ..wire.link import LinkRequest
from .agent import ClientAgent
from .base import ChannelClient, ChannelHost, Parts
from .pipe import PipeItem

if TYPE_CHECKING:
    from ..agent_policy import AgentHub
    from .interfaces import ClientView

AGENT_TOKENS = 10
PROBE_TIMEOUT = 30.0  # seconds for the three PONGs of one network test
REPROBE_FIRST = 5.0  # seconds after a WAN verdict (or a WAN-confirming test) to test again
REPROBE_MAX = 60.0
VIEW_ONLY_NOTICE = "view-only: you can watch; your keyboard and mouse input is ignored"
_PADDING = bytes(NET_TEST_BYTES)  # shared by every client's large probe PING, never copied


class SplitItem(PipeItem):
    """A message written as a head and a shared tail buffer (the padded probe PING)."""

    __slots__ = ("tail",)

    def __init__(self, msg_type: int, head: bytes, tail: bytes | None) -> None:
        super().__init__(msg_type, head)
        self.tail = tail
        self.nbytes += len(tail) if tail else 0


class MainSession(Protocol):
    """What the main channel needs of the server: the session-wide facts and decisions."""

    name: str
    uuid: uuid.UUID
    supported_mouse_modes: MouseMode
    mouse_mode: MouseMode

    def mm_time(self) -> int: ...
    def source_notice(self) -> str | None: ...  # news of the source that still holds
    def channel_list(self) -> list[tuple[int, int]]: ...

    @property
    def agent_hub(self) -> AgentHub | None: ...
    def request_mouse_mode(self, mode: MouseMode | None, client: ClientView) -> None: ...
    def main_channel_closed(self, client: ClientView) -> None: ...


class MainChannelClient(ChannelClient):
    channel_type = ChannelType.MAIN

    def __init__(
        self, host: ChannelHost, client: ClientView, request: LinkRequest, mini_header: bool, secure: bool, session: MainSession
    ) -> None:
        self.session = session
        super().__init__(host, client, request, mini_header, secure)
        self.net_test: NetTest | None = None
        self._probe_timer: Any = None  # the running test's timeout, or the next re-test
        self._reprobe_after = REPROBE_FIRST
        self._unsubscribe: Any = None
        self._waiting_since: float | None = None  # monotonic: when the wait for a PONG began
        self._last_answer = time.monotonic()  # the last PONG (or the start)
        hub = getattr(session, "agent_hub", None)
        tokens_cap = MainCap.AGENT_CONNECTED_TOKENS in request.channel_caps
        self.agent = ClientAgent(hub, client, self, AGENT_TOKENS, tokens_cap) if hub is not None else None

    @property
    def link(self) -> LinkEstimate | None:
        return self.client.link

    def on_connected(self) -> None:
        srv = self.session
        self.send(
            "INIT",
            {
                "session_id": self.client.session_id,
                "display_channels_hint": 1,
                "supported_mouse_modes": srv.supported_mouse_modes,
                "current_mouse_mode": srv.mouse_mode,
                "agent_connected": int(self.agent is not None and self.agent.connected),
                "agent_tokens": AGENT_TOKENS,
                "multi_media_time": srv.mm_time(),
                "ram_hint": 64 << 20,
            },
        )
        if self.agent is not None:
            self.agent.attach()
        if MainCap.NAME_AND_UUID in self.request.channel_caps:
            self.send("NAME", {"name": srv.name.encode() + b"\0"})
            self.send("UUID", {"uuid": srv.uuid.bytes})
        if self.client.view_only:
            self.notify(VIEW_ONLY_NOTICE, severity=0)
        notice = srv.source_notice()
        if notice:  # news of the source that still holds (a VM unavailable, its screen too large)
            self.notify(notice)
        link = self.link
        if link is not None:
            self._unsubscribe = link.subscribe(self._verdict_changed)
            self.start_net_test()

    # --- liveness -----------------------------------------------------------------------
    def ping(self) -> None:
        super().ping()
        self._pinged()

    def _pinged(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()

    def _answered(self) -> None:
        now = time.monotonic()
        self._last_answer = now
        self.client.live = True
        self._waiting_since = now if self.core.awaiting_pong else None

    def liveness(self, now: float, timeout: float) -> float:
        """Seconds the client has owed us a PONG (0 if it owes none); sends a keep-alive
        PING when it owes none and answered none for half of `timeout`."""
        if self._waiting_since is not None and not self.core.awaiting_pong:
            self._waiting_since = None  # what it owed was forgotten (a net test that gave up)
        if self._waiting_since is None:
            if timeout and self.connected and now - self._last_answer >= timeout / 2:
                self.ping()
            return 0.0
        return now - self._waiting_since

    # --- the network test ---------------------------------------------------------------
    def start_net_test(self) -> None:
        """Queue the three probe PINGs (unless a test is running)."""
        if self.net_test is not None or not self.connected:
            return
        self._cancel_probe_timer()
        test = NetTest(time.monotonic())
        self.net_test = test
        for stage in NET_TEST_STAGES:
            ping_id, msg_type, head, tail = self.core.probe_ping(_PADDING if stage == "rate" else b"")
            test.sent(stage, ping_id)
            self.queue(SplitItem(msg_type, head, tail))
        self._pinged()
        self._probe_timer = self.reactor.callLater(PROBE_TIMEOUT, self._net_test_timeout)

    def marshal(self, item: PipeItem) -> Parts | None:
        if isinstance(item, SplitItem) and item.tail is not None:
            return [item.data, item.tail]
        return [item.data]

    def probe_answered(self, pong: ProbePong) -> None:
        self._answered()
        test = self.net_test
        if test is None or not test.answered(pong.ping_id, pong.rtt) or not test.complete:
            return
        self._end_net_test()
        result = test.result()
        link = self.link
        if link is None:
            return
        if result is None:
            link.probe_inconclusive()
            self.log.info("{cc}: net test: round trips of zero; keeping the estimate", cc=self)
        else:
            latency, bitrate = result
            link.probe_result(latency, bitrate)
            self.log.info(
                "{cc}: net test: latency {lat:.1f} ms, bitrate {rate:.2f} Mbit/s ({verdict})",
                cc=self,
                lat=latency * 1000,
                rate=bitrate / 1e6,
                verdict="WAN" if link.is_wan else "LAN",
            )
        self._after_test()

    def _net_test_timeout(self) -> None:
        self._probe_timer = None
        self.log.info("{cc}: net test: no answer in {t:g}s; giving up", cc=self, t=PROBE_TIMEOUT)
        self._end_net_test()
        if self.link is not None:
            self.link.probe_inconclusive()
        self._after_test()

    def _end_net_test(self) -> None:
        self.net_test = None
        self.core.forget_probes()
        self._cancel_probe_timer()

    def _after_test(self) -> None:
        """While WAN, test again later (less often each time the link stays slow)."""
        link = self.link
        if link is None or not link.is_wan or not self.connected or self._probe_timer is not None:
            return
        self._probe_timer = self.reactor.callLater(self._reprobe_after, self.start_net_test)
        self._reprobe_after = min(self._reprobe_after * 2, REPROBE_MAX)

    def _verdict_changed(self, link: LinkEstimate) -> None:
        self._reprobe_after = REPROBE_FIRST
        if self.net_test is None:  # (a running test's timer is its timeout: left alone)
            self._cancel_probe_timer()
            self._after_test()

    def _cancel_probe_timer(self) -> None:
        if self._probe_timer is not None and self._probe_timer.active():
            self._probe_timer.cancel()
        self._probe_timer = None

    def rtt_measured(self, rtt: float) -> None:
        self._answered()
        link = self.link
        if link is not None:
            link.rtt_sample(rtt)

    def handle_ATTACH_CHANNELS(self, fields: dict[str, Any]) -> None:
        self.send("CHANNELS_LIST", {"channels": [{"type": t, "id": i} for t, i in self.session.channel_list()]})

    def handle_MOUSE_MODE_REQUEST(self, fields: dict[str, Any]) -> None:
        self.session.request_mouse_mode(MouseMode(fields["mode"]) if fields["mode"] in (1, 2) else None, self.client)

    def send_mouse_mode(self) -> None:
        self.send("MOUSE_MODE", {"supported_modes": self.session.supported_mouse_modes, "current_mode": self.session.mouse_mode})

    # --- the built-in agent (channels/agent.py) ------------------------------------------
    def _agent_call(self, fn: Any, *args: Any) -> None:
        if self.agent is None or self.agent.closed:
            return  # no agent: the client may still try to talk to one; dropped, as upstream
        try:
            fn(*args)
        except AgentError as exc:
            self.agent.close()
            self.abort(f"agent: {exc}")

    def handle_AGENT_START(self, fields: dict[str, Any]) -> None:
        self._agent_call(lambda n: self.agent.start(n), fields["num_tokens"])  # type: ignore[union-attr]

    def handle_AGENT_DATA(self, fields: dict[str, Any]) -> None:
        self._agent_call(lambda d: self.agent.data(d), fields["data"])  # type: ignore[union-attr]

    def handle_AGENT_TOKEN(self, fields: dict[str, Any]) -> None:
        self._agent_call(lambda n: self.agent.token(n), fields["num_tokens"])  # type: ignore[union-attr]

    def item_sent(self, item: PipeItem) -> None:
        if item.msg_type == MsgMain.AGENT_DATA and self.agent is not None:
            self.agent.chunk_written()

    def on_disconnected(self) -> None:
        if self.agent is not None:
            self.agent.close()
        self.net_test = None
        self.core.forget_probes()
        self._cancel_probe_timer()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.session.main_channel_closed(self.client)

"""A SPICE port's connections: `PortRouter` sniffs the first bytes (SPICE or a WebSocket
upgrade), `LinkProtocol` runs the SPICE link stage, then hands the transport to the channel
client the server creates for it."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any
from typing import Protocol as TypingProtocol

from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from ..audit import audit
from ..guard import host_of
from ..wire.enums import ChannelType, LinkError
from ..wire.link import LinkDone, LinkFailed, LinkRequested, ServerLink, TicketReceived
from ..wire.ticket import LinkKey
from .websocket import WebSocketStream

if TYPE_CHECKING:
    from ..guard import Guard
    from ..limits import Limits
    from ..link_estimate import LinkEstimate
    from ..wire.link import LinkRequest
    from .base import ChannelClient
    from .keypool import LinkKeyPool

LINK_TIMEOUT = 30.0  # the default of --link-timeout
WEBSOCKET_START = b"GET "  # an HTTP upgrade request; SPICE starts with b"REDQ"
CLOSE_GRACE = 5.0  # a WebSocket closed for an error: seconds to flush the close frame before the abort
# A display channel's socket takes at most this many bytes not yet sent (TCP_NOTSENT_LOWAT):
# what TCP has sent and not had acknowledged still follows the link (its congestion
# window), but a slow client's backlog waits in our pipe, where a newer frame or a
# refresh replaces it, not in a kernel send buffer of megabytes (docs/performance.md,
# "In flight on a slow link"). A LAN client (or one not yet measured) gets
# DISPLAY_NOTSENT_LOWAT, a few milliseconds of a fast link, so the reactor need not refill
# the socket more often, and large enough that a frame's shared pieces go to the socket
# in one sendmsg (channels/vector_write.py) rather than through Twisted's buffer (a copy); a client judged WAN gets its link's bandwidth-delay product
# (the link estimate's bandwidth x round trip), at least WAN_NOTSENT_MIN. None: the
# kernel's default (the benchmark's "before").
DISPLAY_NOTSENT_LOWAT: int | None = 1024 * 1024
WAN_NOTSENT_MIN = 16 * 1024


def _channel_name(channel_type: int) -> str:
    try:
        return ChannelType(channel_type).name.lower()
    except ValueError:
        return str(channel_type)


class LinkPolicy(TypingProtocol):
    """The server's side of the link stage, and all the link stage gets (`SpiceServer` is one):
    its decisions (may this link go on, which ticket, which caps), the guard that bounds
    what an address may cost, the pool of RSA keys, and the channel client it hands over to."""

    reactor: Any
    limits: Limits
    guard: Guard
    link_keys: LinkKeyPool

    def common_caps(self) -> frozenset[int]: ...
    def channel_caps(self, request: LinkRequest) -> frozenset[int]: ...
    def link_refusal(
        self, request: LinkRequest, secure: bool, view_only: bool | None = False, host: str = ""
    ) -> tuple[LinkError, str] | None: ...
    def authenticate(self, password: bytes | None) -> str | None: ...
    def stats_link_refused(self, error: LinkError) -> None: ...
    def create_channel_client(
        self, request: LinkRequest, mini_header: bool, secure: bool, peer: str, view_only_ticket: bool = False, host: str = ""
    ) -> ChannelClient: ...


class LinkProtocol(Protocol):
    log = Logger()

    def __init__(self, policy: LinkPolicy, secure: bool) -> None:
        self.policy, self.secure = policy, secure
        self.guard, self.reactor = policy.guard, policy.reactor
        self.link = ServerLink()
        self.key: LinkKey | None = None
        self.channel: ChannelClient | None = None
        self._timeout: Any = None
        self._early: bytearray | None = None  # bytes received between link result and channel start
        self._starting: Any = None
        self._checking: Any = None  # a ticket check waiting for its address's backoff slot
        self._received = 0  # bytes received before the channel started
        self.view_only_ticket = False
        self.websocket = False  # set by the PortRouter before any byte arrives
        self.conn = 0
        self.host = ""
        self._end = "closed by the client during the link"

    @property
    def peer(self) -> str:
        p = self.transport.getPeer()
        return f"{getattr(p, 'host', p)}:{getattr(p, 'port', '')}"

    @property
    def limits(self) -> Any:
        return self.policy.limits

    def connectionMade(self) -> None:
        self.host = host_of(self.transport.getPeer())
        self.conn = self.guard.next_conn()
        audit("connect", conn=self.conn, peer=self.peer, tls=self.secure)
        timeout = self.limits.link_timeout
        if timeout:
            self._timeout = self.reactor.callLater(timeout, self._link_timeout)

    def _link_timeout(self) -> None:
        self._timeout = None
        t = self.limits.link_timeout
        self._end = f"no complete link in {t:g}s"
        self.log.warn("link from {peer}: no complete link in {t}s, closing", peer=self.peer, t=t)
        self.transport.abortConnection()

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.dataReceived(data)
            return
        self._received += len(data)
        if self._received > self.limits.max_connection_buffer + 4096:
            # a link is at most about 4 KiB; what follows it before the channel starts is small
            self._abort(f"{self._received} bytes before the channel started (limit {self.limits.max_connection_buffer})")
        elif self._early is not None:
            self._early += data  # the channel starts in a moment: keep what the client sent
        elif self.link.state.value not in ("done", "failed"):
            self._handle(self.link.receive_data(data))

    def _handle(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, LinkFailed):
                self._refuse(ev.error, ev.reason, ev.reply)
            elif isinstance(ev, LinkRequested):
                # The ticket is not known yet: a full one may make room where view-only ones cannot.
                refusal = self.policy.link_refusal(ev.request, self.secure, None, self.host)
                if refusal is not None:
                    self._refuse(refusal[0], refusal[1], self.link.reject(refusal[0]))
                    return
                if not self.guard.allow_link(self.host):
                    # An RSA key costs milliseconds of CPU: an address gets only so many a second.
                    self._refuse(
                        LinkError.ERROR,
                        "too many link requests from this address (--link-rate)",
                        self.link.reject(LinkError.ERROR),
                        "link-rate",
                    )
                    return
                self.key = self.policy.link_keys.take()
                reply, more = self.link.accept(self.key.public_der, self.policy.common_caps(), self.policy.channel_caps(ev.request))
                self.transport.write(reply)
                self._handle(more)
            elif isinstance(ev, TicketReceived):
                self._ticket(ev.encrypted)

    def _ticket(self, encrypted: bytes) -> None:
        wait = self.guard.ticket_wait(self.host)
        if wait is None:
            self.key = None
            audit("auth_failure", conn=self.conn, peer=self.peer, channel=self._channel(), reason="backoff")
            self._result_refused(LinkError.PERMISSION_DENIED, "too many wrong tickets from this address: refused unchecked", "backoff")
        elif wait > 0:
            self._checking = self.reactor.callLater(wait, self._check_ticket, encrypted)
        else:
            self._check_ticket(encrypted)

    def _channel(self) -> str:
        return _channel_name(self.link.request.channel_type) if self.link.request is not None else "?"

    def _check_ticket(self, encrypted: bytes) -> None:
        assert self.key is not None and self.link.request is not None
        self._checking = None
        password = self.key.decrypt_ticket(encrypted)
        self.key = None
        level = self.policy.authenticate(password)
        del password
        if level is None:
            self.guard.ticket_failed(self.host)
            audit("auth_failure", conn=self.conn, peer=self.peer, channel=self._channel(), reason="wrong or expired ticket")
            self._result_refused(LinkError.PERMISSION_DENIED, "wrong or expired ticket", "ticket")
            return
        self.guard.ticket_ok(self.host)
        self.view_only_ticket = level == "view-only"
        refusal = self.policy.link_refusal(self.link.request, self.secure, self.view_only_ticket, self.host)
        if refusal is not None:
            self._result_refused(refusal[0], refusal[1])
            return
        result, done = self.link.result(LinkError.OK)
        self.transport.write(result)
        assert done is not None
        # Start the channel on the next reactor turn, so the 4-byte result leaves in a TLS
        # record of its own: Twisted's TLS transport joins the writes of one turn into one
        # record, and spice-gtk reads exactly 4 bytes and then polls the socket, leaving the
        # channel's first messages unread in OpenSSL's buffer until the next ping.
        # The link timeout keeps running until the channel has really started.
        self._early = bytearray(done.leftover)
        self._starting = self.reactor.callLater(0, self._start_channel, done)

    def _result_refused(self, error: LinkError, reason: str, kind: str = "link") -> None:
        result, _ = self.link.result(error)
        self._refuse(error, reason, result, kind)

    def _start_channel(self, done: LinkDone) -> None:
        assert self.link.request is not None and self._early is not None
        self._starting = None
        request = self.link.request
        # The session may have gone in between (its main channel closed in this very turn):
        # then this link is refused like any link to an unknown session. Its result was OK
        # already, so there is nothing left to tell the client but the close.
        refusal = self.policy.link_refusal(request, self.secure, self.view_only_ticket, self.host)
        if refusal is not None:
            self._refuse(refusal[0], f"{refusal[1]} (it went away before this channel started)", b"")
            return
        self._cancel_timeout()
        early, self._early = bytes(self._early), None
        try:
            self.channel = self.policy.create_channel_client(
                request, done.mini_header, self.secure, self.peer, view_only_ticket=self.view_only_ticket, host=self.host
            )
        except Exception:
            self.log.failure("link from {peer}: the channel could not start", peer=self.peer)
            self._abort("the channel could not start")
            return
        audit(
            "link",
            conn=self.conn,
            peer=self.peer,
            channel=self._channel(),
            result="OK",
            session=f"{self.channel.client.session_id:#x}",
            view_only_ticket=self.view_only_ticket,
            tls=self.secure,
            **({"websocket": True} if self.websocket else {}),
        )
        if request.channel_type == ChannelType.DISPLAY and DISPLAY_NOTSENT_LOWAT is not None:
            follow_link(tcp_socket(self.transport), self.channel.client.link)
        self.channel.makeConnection(self.transport)
        if early:
            self.channel.dataReceived(early)

    def _refuse(self, error: LinkError, reason: str, reply: bytes, kind: str = "link") -> None:
        self._end = f"link refused ({error.name})"
        self.policy.stats_link_refused(error)
        self.guard.refuse(
            self.host,
            f"{kind}:{error.name}",
            "link from {peer} refused ({error}): {reason}",
            log=self.log,
            peer=self.peer,
            error=error.name,
            reason=reason,
        )
        audit(
            "link",
            conn=self.conn,
            peer=self.peer,
            channel=self._channel(),
            result=error.name,
            reason=reason,
            tls=self.secure,
            **({"websocket": True} if self.websocket else {}),
        )
        self._cancel_timeout()
        if reply:
            self.transport.write(reply)
        self.transport.loseConnection()

    def _abort(self, reason: str) -> None:
        self._end = reason
        self.guard.refuse(self.host, "link-abort", "link from {peer}: closing: {reason}", log=self.log, peer=self.peer, reason=reason)
        self._cancel_timeout()
        self.transport.abortConnection()

    def stream_closed(self, reason: str, error: bool) -> None:
        """The WebSocket under this connection is closing (the PortRouter closes it): for the
        log and the audit line. An error is counted and logged like a bad link."""
        if self.channel is not None:
            self.channel.close_reason = self.channel.close_reason or reason
            if error:
                self.log.warn("{cc}: closing: {reason}", cc=self.channel, reason=reason)
            return
        self._end = reason
        if error:
            self.guard.refuse(self.host, "websocket", "link from {peer}: closing: {reason}", log=self.log, peer=self.peer, reason=reason)

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_timeout()
        for call in (self._starting, self._checking):
            if call is not None and call.active():
                call.cancel()
        self._starting = self._checking = None
        self._early = None
        self.link.discard()
        if self.host:
            self.guard.release(self.host)
        if self.channel is not None:
            cc = self.channel
            cc.connectionLost(reason)
            why = cc.close_reason or "closed by the client"
            audit("disconnect", conn=self.conn, peer=self.peer, channel=self._channel(), session=f"{cc.client.session_id:#x}", reason=why)
        elif self.conn:
            audit("disconnect", conn=self.conn, peer=self.peer, reason=self._end)


@implementer(ITransport, IConsumer, IPushProducer)
def tcp_socket(transport: Any) -> socket.socket | None:
    """The TCP socket under a transport: through our PortRouter and Twisted's TLS (whose
    getHandle() is the OpenSSL connection), down to the TCP transport's own."""
    for _ in range(4):
        if transport is None:
            return None
        handle = getattr(transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
    return None


def unsent_bound(link: LinkEstimate) -> int:
    """The display socket's TCP_NOTSENT_LOWAT for a client's link (see DISPLAY_NOTSENT_LOWAT)."""
    assert DISPLAY_NOTSENT_LOWAT is not None
    if not link.is_wan or link.bandwidth is None or link.rtt is None:
        return DISPLAY_NOTSENT_LOWAT
    return int(max(WAN_NOTSENT_MIN, min(DISPLAY_NOTSENT_LOWAT, link.bandwidth / 8 * link.rtt)))


def bound_unsent(sock: socket.socket, nbytes: int) -> bool:
    """TCP_NOTSENT_LOWAT: the socket reports writable, and takes bytes, only while fewer than
    `nbytes` wait unsent in it (Linux and macOS; elsewhere nothing changes). False when
    the socket is closed or not TCP."""
    option = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if option is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.fileno() < 0:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, nbytes)
    except OSError:
        return False  # closed meanwhile, or not a TCP socket after all
    return True


def follow_link(sock: socket.socket | None, link: LinkEstimate) -> None:
    """Bound the display socket's unsent bytes now and at each change of the link's verdict
    (until the socket is closed: the listener then lets go of itself)."""
    if sock is None or not bound_unsent(sock, unsent_bound(link)):
        return
    unsubscribe: Any = None

    def changed(est: LinkEstimate) -> None:
        if not bound_unsent(sock, unsent_bound(est)) and unsubscribe is not None:
            unsubscribe()

    unsubscribe = link.subscribe(changed)


class PortRouter(Protocol):
    """Every connection on a SPICE port, plain or inside TLS: the link protocol's transport.

    As upstream spice-server 0.14.3+ does, a connection whose first bytes are "GET " is a
    WebSocket upgrade (spice-html5 in a browser); anything else is SPICE and passes through
    untouched (a bad magic gets its INVALID_MAGIC reply from the link stage, as before).
    Over WebSocket, decoded payloads go to the same link protocol and channel client as a
    byte stream, and each of their writes leaves as one binary message. Producers, pausing
    and aborts pass straight to the real transport, so backpressure and every channel bound
    work as over TCP; the link timeout, which runs from the accept, also bounds the HTTP
    handshake. See channels/websocket.py for the WebSocket bounds.
    """

    def __init__(self, inner: LinkProtocol) -> None:
        self.inner = inner
        self.websocket: WebSocketStream | None = None
        self._routed = False
        self._sniffed = b""
        self._grace: Any = None

    # --- the real transport's protocol ------------------------------------------------
    def connectionMade(self) -> None:
        self.inner.makeConnection(self)  # the link timeout starts at the accept, as before

    def dataReceived(self, data: bytes) -> None:
        if not self._routed:
            data, self._sniffed = self._sniffed + data, b""
            if len(data) < len(WEBSOCKET_START) and WEBSOCKET_START.startswith(data):
                self._sniffed = data
                return
            self._routed = True
            if data.startswith(WEBSOCKET_START):
                self.websocket = WebSocketStream(self.inner.limits.max_connection_buffer)
                self.inner.websocket = True
        if self.websocket is None:
            self.inner.dataReceived(data)
            return
        got = self.websocket.receive(data)
        if got.reply:
            self.transport.write(got.reply)
        for piece in got.payload:
            if self._grace is not None:
                return
            self.inner.dataReceived(piece)
        if got.close is not None and self._grace is None:
            self.inner.stream_closed(got.close, error=not got.polite)
            self._close_after_grace()

    def _close_after_grace(self) -> None:
        """Flush what is written (our close frame or HTTP error), then close; a peer that
        reads nothing is aborted after CLOSE_GRACE seconds."""
        self.transport.loseConnection()
        self._grace = self.inner.reactor.callLater(CLOSE_GRACE, self.transport.abortConnection)

    def connectionLost(self, reason: Any = None) -> None:
        if self._grace is not None and self._grace.active():
            self._grace.cancel()
        self.inner.connectionLost(reason)

    # --- ITransport for the link protocol and the channel client -----------------------
    def write(self, data: bytes) -> None:
        if self.websocket is None:
            self.transport.write(data)
        elif framed := self.websocket.frame(data):
            self.transport.write(framed)

    def writeSequence(self, data: Any) -> None:
        if self.websocket is None:
            self.transport.writeSequence(data)
        else:
            self.write(b"".join(data))  # one SPICE message, one WebSocket message

    def loseConnection(self) -> None:
        if self.websocket is not None and (close := self.websocket.close_frame()):
            self.transport.write(close)
        self.transport.loseConnection()

    def abortConnection(self) -> None:
        self.transport.abortConnection()

    def getPeer(self) -> Any:
        return self.transport.getPeer()

    def getHost(self) -> Any:
        return self.transport.getHost()

    def getHandle(self) -> Any:
        """The socket (for socket options such as the playback channel's send buffer)."""
        return self.transport.getHandle()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        self.transport.resumeProducing()

    def stopProducing(self) -> None:
        self.transport.stopProducing()


class SpiceFactory(Factory):
    """Builds a port router and link protocol per connection; `secure` marks the TLS port."""

    noisy = False

    def __init__(self, policy: LinkPolicy, secure: bool) -> None:
        self.policy, self.secure = policy, secure

    def buildProtocol(self, addr: Any) -> PortRouter | None:
        # Per-address connection limit, before any work (on the TLS port: before the handshake).
        if not self.policy.guard.admit(host_of(addr), self.secure):
            return None
        p = LinkProtocol(self.policy, self.secure)
        p.factory = self
        router = PortRouter(p)
        router.factory = self
        return router

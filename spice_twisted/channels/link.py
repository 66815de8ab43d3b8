"""The link protocol: runs the SPICE link stage on a new connection, then hands the
transport to the channel client the server creates for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from ..wire.enums import LinkError
from ..wire.link import LinkDone, LinkFailed, LinkRequested, ServerLink, TicketReceived
from ..wire.ticket import LinkKey

if TYPE_CHECKING:
    from ..server import SpiceServer
    from .base import ChannelClient

LINK_TIMEOUT = 30.0


class LinkProtocol(Protocol):
    log = Logger()

    def __init__(self, server: SpiceServer, secure: bool) -> None:
        self.server, self.secure = server, secure
        self.link = ServerLink()
        self.key: LinkKey | None = None
        self.channel: ChannelClient | None = None
        self._timeout: Any = None
        self._early: bytearray | None = None  # bytes received between link result and channel start
        self._starting: Any = None

    @property
    def peer(self) -> str:
        p = self.transport.getPeer()
        return f"{getattr(p, 'host', p)}:{getattr(p, 'port', '')}"

    def connectionMade(self) -> None:
        self._timeout = self.server.reactor.callLater(LINK_TIMEOUT, self._link_timeout)

    def _link_timeout(self) -> None:
        self._timeout = None
        self.log.warn("link from {peer}: no complete link in {t}s, closing", peer=self.peer, t=LINK_TIMEOUT)
        self.transport.abortConnection()

    def _cancel_timeout(self) -> None:
        if self._timeout is not None and self._timeout.active():
            self._timeout.cancel()
        self._timeout = None

    def dataReceived(self, data: bytes) -> None:
        if self.channel is not None:
            self.channel.dataReceived(data)
        elif self._early is not None:
            self._early += data  # the channel starts in a moment: keep what the client sent
        elif self.link.state.value not in ("done", "failed"):
            self._handle(self.link.receive_data(data))

    def _handle(self, events: list[Any]) -> None:
        for ev in events:
            if isinstance(ev, LinkFailed):
                self._refuse(ev.error, ev.reason, ev.reply)
            elif isinstance(ev, LinkRequested):
                error = self.server.check_link(ev.request, self.secure)
                if error is not None:
                    self._refuse(error, f"channel {ev.request.channel_type} link refused", self.link.reject(error))
                    return
                self.key = self.server.link_keys.take()
                reply, more = self.link.accept(self.key.public_der, self.server.common_caps(), self.server.channel_caps(ev.request))
                self.transport.write(reply)
                self._handle(more)
            elif isinstance(ev, TicketReceived):
                self._check_ticket(ev.encrypted)

    def _check_ticket(self, encrypted: bytes) -> None:
        assert self.key is not None and self.link.request is not None
        password = self.key.decrypt_ticket(encrypted)
        self.key = None
        error = LinkError.OK
        if not self.server.ticket.accepts(password):
            error = LinkError.PERMISSION_DENIED
        else:
            error = self.server.check_link(self.link.request, self.secure) or LinkError.OK
        result, done = self.link.result(error)
        self.transport.write(result)
        if done is None:
            self._refuse(error, "wrong or expired ticket" if error == LinkError.PERMISSION_DENIED else "link refused", b"")
            return
        self._cancel_timeout()
        # Start the channel on the next reactor turn, so the 4-byte result leaves in a TLS
        # record of its own: Twisted's TLS transport joins the writes of one turn into one
        # record, and spice-gtk reads exactly 4 bytes and then polls the socket, leaving the
        # channel's first messages unread in OpenSSL's buffer until the next ping.
        self._early = bytearray(done.leftover)
        self._starting = self.server.reactor.callLater(0, self._start_channel, done)

    def _start_channel(self, done: LinkDone) -> None:
        assert self.link.request is not None and self._early is not None
        self._starting = None
        early, self._early = bytes(self._early), None
        self.channel = self.server.create_channel_client(self.link.request, done.mini_header, self.secure, self.peer)
        self.channel.makeConnection(self.transport)
        if early:
            self.channel.dataReceived(early)

    def _refuse(self, error: LinkError, reason: str, reply: bytes) -> None:
        self.log.warn("link from {peer} refused ({error}): {reason}", peer=self.peer, error=error.name, reason=reason)
        self.server.stats_link_refused(error)
        self._cancel_timeout()
        if reply:
            self.transport.write(reply)
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._cancel_timeout()
        if self._starting is not None and self._starting.active():
            self._starting.cancel()
        if self.channel is not None:
            self.channel.connectionLost(reason)


class SpiceFactory(Factory):
    """Builds a link protocol per connection; `secure` marks the TLS port."""

    noisy = False

    def __init__(self, server: SpiceServer, secure: bool) -> None:
        self.server, self.secure = server, secure

    def buildProtocol(self, addr: Any) -> LinkProtocol:
        p = LinkProtocol(self.server, self.secure)
        p.factory = self
        return p

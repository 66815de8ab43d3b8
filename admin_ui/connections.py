"""Bounds on the admin site's connections, below HTTP: how many, from where, and how long
a request may take to arrive.

Twisted's HTTP channel restarts its idle timeout on every byte, so a client that sends a
header line every 30 s held a connection for ever, and a thousand such connections from
one address used up the process's file descriptors, SPICE clients' included. Here:

- at most `per_address` connections from one address (IPv6: one /64) and `total` in all:
  more are closed at once, before TLS or HTTP sees a byte. The admin site can thus never
  hold more than `total` descriptors, whatever SPICE clients need stays free;
- every request, head and body, must arrive within `request_timeout` seconds of the
  connection being ready for it (opened, or done with the previous response), or the
  connection is closed. An idle kept-alive connection is closed after the same time.

`AdminRequest` (http.py) reports through its transport, which is the wrapper below, when
a request has arrived whole and when its response is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from spice_twisted.ratelimit import ConnectionCounter, address_key

REQUEST_TIMEOUT = 10.0  # seconds for a whole request to arrive (browsers send it in one go)
MAX_CONNECTIONS = 64  # admin connections at once, all addresses together
MAX_CONNECTIONS_PER_ADDRESS = 16  # a browser opens up to 6 per site; a few tabs and curl beside
ABORT_GRACE = 2.0  # after a polite close, a peer that does not read is cut off this much later

Refuse = Callable[[str, str, str], Any]  # (host, kind, message format) -> logged or counted


class AdminConnection(ProtocolWrapper):
    """One admin connection: carries its request deadline."""

    factory: AdminConnections

    def __init__(self, factory: AdminConnections, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.host = ""
        self._pending = 0  # requests that arrived whole and are not yet answered
        self._started = False  # bytes of a request arrived since the deadline was set
        self._deadline: Any = None
        self._abort: Any = None

    def makeConnection(self, transport: Any) -> None:
        self._arm()
        super().makeConnection(transport)

    # --- called by AdminRequest -----------------------------------------------------------
    def request_received(self) -> None:
        self._pending += 1
        self._cancel()

    def request_done(self) -> None:
        self._pending = max(0, self._pending - 1)
        if self._pending == 0 and self.connected and not self.disconnecting:
            self._arm()  # the next request (or the end of an idle kept-alive connection)

    # --- the deadline ---------------------------------------------------------------------
    def _arm(self) -> None:
        self._cancel()
        self._started = False
        self._deadline = self.factory.reactor.callLater(self.factory.request_timeout, self._expired)

    def _cancel(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        self.factory.expired += 1
        if self._started:  # part of a request came: say why it goes unanswered
            self.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.loseConnection()  # a kept-alive connection with nothing to say ends quietly
        self._abort = self.factory.reactor.callLater(ABORT_GRACE, self.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        self._started = True
        super().dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self._cancel()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        super().connectionLost(reason)


class Refused(Protocol):
    """A connection past a limit: cut off at once, nothing read. (Returning None from
    buildProtocol would do on plain TCP, but under TLS the TLS layer would then wrap None.)"""

    def connectionMade(self) -> None:
        self.transport.abortConnection()


@implementer(IProtocolNegotiationFactory)
class AdminConnections(WrappingFactory):
    """Wraps the admin Site: refuses connections past the limits, times requests out."""

    protocol = AdminConnection  # type: ignore[assignment]
    noisy = False  # no "Starting factory" lines
    log = Logger()

    def __init__(
        self,
        site: Factory,
        reactor: Any,
        request_timeout: float = REQUEST_TIMEOUT,
        total: int = MAX_CONNECTIONS,
        per_address: int = MAX_CONNECTIONS_PER_ADDRESS,
        refuse: Refuse | None = None,
    ) -> None:
        super().__init__(site)
        self.reactor, self.request_timeout, self.total = reactor, request_timeout, total
        self.addresses = ConnectionCounter(per_address)
        self.refuse = refuse or (lambda host, kind, fmt: self.log.warn(fmt, host=host))
        self.expired = 0  # connections closed by the request deadline

    def buildProtocol(self, addr: Any) -> Protocol:
        host = str(getattr(addr, "host", addr))
        if len(self.protocols) >= self.total:
            self.refuse(host, "admin connections", f"admin connection from {{host}} refused: {self.total} admin connections open already")
            return Refused()
        if not self.addresses.acquire(address_key(host)):
            n = self.addresses.limit
            self.refuse(
                host, "admin connections", f"admin connection from {{host}} refused: {n} admin connections from that address already"
            )
            return Refused()
        proto = super().buildProtocol(addr)
        proto.host = host
        return proto

    def acceptableProtocols(self) -> list[bytes]:
        """ALPN over HTTPS: HTTP/1.1 only, whose requests the deadline above follows
        (Twisted's TLS fails a handshake that offers ALPN when the factory names none)."""
        return [b"http/1.1"]

    def unregisterProtocol(self, p: Any) -> None:
        if p in self.protocols:
            self.addresses.release(address_key(p.host))
        super().unregisterProtocol(p)

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

`/ws` (issue 19): a connection whose first request line is `GET /ws` (or `GET /ws?...`)
is not HTTP for the admin site but SPICE over WebSocket, for deployments behind one
reverse proxy. It is handed whole, the request included, to the same `PortRouter` and
`LinkProtocol` a SPICE port builds (`spice_router`), which answer the upgrade with
wsproto and run the link and the channel exactly as on the SPICE port: the SPICE guard's
per-address limit, the link timeout, the ticket. The admin request deadline and the admin
connection limits stop there (the SPICE guard's per-address limit counts it instead).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import directlyProvides, implementer, providedBy

from spice_twisted.ratelimit import ConnectionCounter, address_key

REQUEST_TIMEOUT = 10.0  # seconds for a whole request to arrive (browsers send it in one go)
MAX_CONNECTIONS = 64  # admin connections at once, all addresses together
MAX_CONNECTIONS_PER_ADDRESS = 16  # a browser opens up to 6 per site; a few tabs and curl beside
ABORT_GRACE = 2.0  # after a polite close, a peer that does not read is cut off this much later
WS_STARTS = (b"GET /ws ", b"GET /ws?")  # the first request line of a SPICE-over-WebSocket connection

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
        self._sniffed: bytes | None = None  # the first bytes, while HTTP or /ws is undecided
        self._spice = False  # handed to the SPICE link machinery (/ws)

    def makeConnection(self, transport: Any) -> None:
        self._arm()
        if self.factory.spice_router is None:
            super().makeConnection(transport)
            return
        # As ProtocolWrapper does, but the wrapped protocol (HTTP, or SPICE for /ws) is
        # connected once the first request line says which.
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._sniffed = b""

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
        if self._sniffed is not None:
            data, self._sniffed = self._sniffed + data, None
            if len(data) < len(WS_STARTS[0]) and any(start.startswith(data) for start in WS_STARTS):
                self._sniffed = data
                return
            if data.startswith(WS_STARTS):
                self._to_spice(data)
                return
            self.wrappedProtocol.makeConnection(self)
        super().dataReceived(data)

    def _to_spice(self, data: bytes) -> None:
        """SPICE over WebSocket: the SPICE port's own machinery takes the connection."""
        self._cancel()  # the link timeout bounds it from here
        router = self.factory.spice_router(self.transport.getPeer())
        if router is None:  # over the SPICE guard's per-address limit
            self.transport.abortConnection()
            return
        # From here it is a SPICE connection: the SPICE guard counts it, the admin site's
        # connection limits no longer do (a browser client holds five or six of them).
        self.factory.unregisterProtocol(self)
        self._spice = True
        self.wrappedProtocol = router
        router.makeConnection(self)
        router.dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self._cancel()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        if self._sniffed is not None:  # nothing was connected to the wrapped protocol
            self.disconnecting = 1
            self.factory.unregisterProtocol(self)
            return
        if self._spice:  # unregistered already
            self.disconnecting = 1
            self.wrappedProtocol.connectionLost(reason)
            return
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
        spice_router: Callable[[Any], Protocol | None] | None = None,
    ) -> None:
        super().__init__(site)
        self.spice_router = spice_router  # builds a SPICE port's PortRouter for /ws (None: no /ws)
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

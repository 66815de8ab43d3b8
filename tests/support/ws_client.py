"""A raw WebSocket client of the server (wsproto), with a byte-stream view of what comes
back: the SPICE port's WebSocket and the admin port's /ws are driven by it."""

from __future__ import annotations

import socket
import ssl
import struct
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Message, Pong, RejectConnection, Request

from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import ChannelType
from spice_twisted.wire.messages import LINK_HEADER, LINK_REPLY
from spice_twisted.wire.schema import decode
from spice_twisted.wire.ticket import encrypt_ticket
from support.rawclient import link_bytes


class Closed(Exception):
    """The server closed the WebSocket: `code` is its close code (None for a bare TCP close)."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


class WsClient:
    """A WebSocket client of the SPICE port with a byte-stream view of what the server sends."""

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        subprotocols: tuple[str, ...] = ("binary",),
        rcvbuf: int = 0,
        target: str = "/",
        split_at: int = 0,
    ) -> None:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(20)
        sock.connect(("127.0.0.1", port))
        self.sock = tls.wrap_socket(sock, server_hostname="localhost") if tls is not None else sock
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.stream = bytearray()
        self.accepted: AcceptConnection | None = None
        self.pongs: list[bytes] = []
        self.close_code: int | None = None
        self.closed = False
        head = self.ws.send(Request(host="127.0.0.1", target=target, subprotocols=list(subprotocols)))
        if split_at:  # the request line in two TCP segments
            self.sock.sendall(head[:split_at])
            time.sleep(0.2)  # only to make a second segment; coalesced, a test still holds
            head = head[split_at:]
        self.sock.sendall(head)
        while self.accepted is None:
            self._pump()

    def _pump(self) -> None:
        if self.closed:
            raise Closed(self.close_code)
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            raise Closed(self.close_code)
        self.ws.receive_data(data)
        for ev in self.ws.events():
            if isinstance(ev, AcceptConnection):
                self.accepted = ev
            elif isinstance(ev, RejectConnection):
                raise AssertionError(f"handshake refused: {ev.status_code}")
            elif isinstance(ev, BytesMessage):
                self.stream += ev.data
            elif isinstance(ev, Pong):
                self.pongs.append(bytes(ev.payload))
            elif isinstance(ev, CloseConnection):
                self.close_code, self.closed = ev.code, True  # what came before it is still read

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(Message(data=data)))

    def recv_exact(self, n: int) -> bytes:
        while len(self.stream) < n:
            self._pump()
        out = bytes(self.stream[:n])
        del self.stream[:n]
        return out

    def link(self, password: bytes, channel: int = ChannelType.MAIN, short_ticket: bool = False, session: int = 0) -> int:
        """A whole SPICE link over this WebSocket; the link result."""
        self.send(link_bytes(channel, session))
        return self.finish_link(password, short_ticket)

    def finish_link(self, password: bytes, short_ticket: bool = False) -> int:
        hdr = decode(LINK_HEADER, self.recv_exact(LINK_HEADER.size))
        reply = decode(LINK_REPLY, self.recv_exact(hdr["size"])[: LINK_REPLY.size])
        assert reply["error"] == 0, reply
        if short_ticket:
            self.send(struct.pack("<I", 1) + html5_short_ticket(reply["pub_key"], password))
        else:
            self.send(ticket_message(reply["pub_key"], password))
        (result,) = struct.unpack("<I", self.recv_exact(4))
        return result

    def read_message(self) -> tuple[int, bytes]:
        """One SPICE message (mini header)."""
        msg_type, size = struct.unpack("<HI", self.recv_exact(6))
        return msg_type, self.recv_exact(size)

    def wait_closed(self, timeout: float = 20.0) -> int | None:
        """Read until the server closes; its close code (None if it only closed TCP)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                self._pump()
        except Closed as exc:
            return exc.code
        except (ConnectionResetError, BrokenPipeError):
            return self.close_code
        raise AssertionError(f"server did not close in {timeout}s")

    def close(self) -> None:
        self.sock.close()


def html5_short_ticket(public_der: bytes, password: bytes) -> bytes:
    """The ticket spice-html5 sends when its RSA result starts with a zero byte: the other
    127 bytes, then a zero (its hex round trip drops the leading zero)."""
    for _ in range(10_000):
        full = encrypt_ticket(public_der, password)
        if full[0] == 0:
            return full[1:] + b"\0"
    raise AssertionError("no RSA result below 2**1016 in 10000 tries")


def raw_http(port: int, data: bytes, timeout: float = 20.0) -> bytes:
    """Send `data` (ignoring a reset once the server closed), read everything until EOF."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                return out
            out += chunk
        return out
    finally:
        sock.close()

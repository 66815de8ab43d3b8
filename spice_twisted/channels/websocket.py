"""SPICE over WebSocket (RFC 6455) on the SPICE ports: wsproto under bounds of ours.

A browser cannot open a TCP socket, so spice-html5 speaks SPICE inside WebSocket binary
messages (subprotocol "binary"), as upstream spice-server 0.14.3+ accepts on its own ports.
SPICE is a byte stream: message boundaries mean nothing here. Each decoded payload piece is
fed to the SPICE protocol as it arrives, and each write of the SPICE protocol leaves as one
binary message (one SPICE message or one chunk of a large one; spice-html5 joins pieces).

`WebSocketStream` is the sans-IO part: bytes in, what to deliver, what to send and why to
close out. wsproto does the RFC work (handshake, masking, fragments, control frames, close
codes); we add the bounds a public port needs:

- the HTTP head of the upgrade request: at most `MAX_HEAD` bytes (its time is the link
  timeout, which runs from the TCP accept);
- one message: at most `max_message` bytes (the server passes --max-connection-buffer, the
  most a SPICE connection may hold), counted as it streams in, so a frame that claims
  gigabytes costs nothing before it is refused with close code 1009;
- text messages are refused (1003): SPICE is binary. No extension (permessage-deflate) is
  accepted, so nothing is decompressed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import RemoteProtocolError

SUBPROTOCOL = "binary"  # what spice-html5 asks for
MAX_HEAD = 16 * 1024  # request line and headers; browsers send under 2 KiB plus cookies
_END_OF_HEAD = b"\r\n\r\n"
_NOT_WEBSOCKET = (
    b"This is a SPICE port. Connect a SPICE client (remote-viewer) to it, or spice-html5 with a ws:// (wss:// on the TLS port) address.\n"
)


@dataclass
class Received:
    """What a piece of input asks the owner to do, in this order: send `reply`, feed each
    of `payload` to the SPICE protocol, then (when `close` is set) close for that reason
    after sending `reply`. `opened` is True on the input that completed the handshake."""

    reply: bytes = b""
    payload: list[bytes] = field(default_factory=list)
    close: str | None = None
    polite: bool = False  # the peer closed (or we refused its request): no error to log
    opened: bool = False


class WebSocketStream:
    """One server-side WebSocket connection as a byte stream (sans-IO)."""

    def __init__(self, max_message: int) -> None:
        self.max_message = max_message
        self._ws = WSConnection(ConnectionType.SERVER)
        self._head = bytearray()  # the upgrade request until its end is seen
        self._message = 0  # bytes of the binary message being received
        self.open = False
        self.closed = False
        self.path = ""

    def receive(self, data: bytes) -> Received:
        out = Received()
        if self.closed:
            return out
        if not self.open:
            self._head += data
            end = self._head.find(_END_OF_HEAD)
            if end < 0:
                if len(self._head) > MAX_HEAD:
                    return self._reject(out, 431, f"upgrade request head over {MAX_HEAD} bytes")
                return out
            head, rest = bytes(self._head[: end + 4]), bytes(self._head[end + 4 :])
            if end + 4 > MAX_HEAD:
                return self._reject(out, 431, f"upgrade request head over {MAX_HEAD} bytes")
            self._head = bytearray()
            try:
                self._ws.receive_data(head)
                events = list(self._ws.events())
            except (RemoteProtocolError, ValueError) as exc:  # ValueError: wsproto decodes Host with idna
                return self._reject(out, 400, f"not a WebSocket upgrade request: {exc}")
            request = next((ev for ev in events if isinstance(ev, Request)), None)
            if request is None:
                return self._reject(out, 400, "not a WebSocket upgrade request")
            if request.subprotocols and SUBPROTOCOL not in request.subprotocols:
                return self._reject(out, 400, f"subprotocols {request.subprotocols} offered, not {SUBPROTOCOL!r}")
            self.path = request.target
            out.reply = self._ws.send(AcceptConnection(subprotocol=SUBPROTOCOL if request.subprotocols else None))
            self.open = out.opened = True
            data = rest
            if not data:
                return out
        try:
            self._ws.receive_data(data)
        except Exception as exc:  # wsproto refuses input after a close: ours to report, not raise
            return self._close(out, CloseReason.PROTOCOL_ERROR, f"WebSocket error: {exc}")
        for ev in self._ws.events():
            if isinstance(ev, BytesMessage):
                self._message += len(ev.data)
                if self._message > self.max_message:
                    return self._close(out, CloseReason.MESSAGE_TOO_BIG, f"WebSocket message over {self.max_message} bytes")
                if ev.message_finished:
                    self._message = 0
                if ev.data:
                    out.payload.append(bytes(ev.data))
            elif isinstance(ev, TextMessage):
                return self._close(out, CloseReason.UNSUPPORTED_DATA, "WebSocket text message (SPICE is binary)")
            elif isinstance(ev, Ping):
                out.reply += self._ws.send(ev.response())
            elif isinstance(ev, CloseConnection):
                if self._ws.state is ConnectionState.REMOTE_CLOSING:  # the peer's close frame
                    out.reply += self._ws.send(ev.response())
                    self.closed = True
                    out.close, out.polite = f"WebSocket closed by the client ({ev.code})", True
                    return out
                return self._close(out, ev.code, f"WebSocket protocol error: {ev.reason}")  # wsproto's parse error
        return out

    def frame(self, data: bytes) -> bytes:
        """`data` as one binary message, for the peer (nothing once closed)."""
        if self.closed or not self.open:
            return b""
        return self._ws.send(Message(data=data))

    def close_frame(self, code: int = CloseReason.NORMAL_CLOSURE, reason: str = "") -> bytes:
        """Our close frame (nothing if the handshake never finished or a close was sent)."""
        if self.closed or not self.open:
            return b""
        self.closed = True
        try:
            return self._ws.send(CloseConnection(code=code, reason=reason))
        except Exception:  # wsproto: already closing
            return b""

    def _close(self, out: Received, code: int, why: str) -> Received:
        out.reply += self.close_frame(code, why[:100])
        out.close = why
        return out

    def _reject(self, out: Received, status: int, why: str) -> Received:
        self.closed = True
        head = (
            f"HTTP/1.1 {status} {'Bad Request' if status == 400 else 'Request Header Fields Too Large'}\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(_NOT_WEBSOCKET)}\r\nConnection: close\r\n\r\n"
        )
        out.reply = head.encode() + _NOT_WEBSOCKET
        out.close = why
        return out

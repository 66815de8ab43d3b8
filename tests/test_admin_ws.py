"""The admin port's /ws (issue 19, item 1) driven by a raw wsproto client: a request line split
across TCP segments is still routed, the whole SPICE link runs over it with the ticket, the
admin site's request deadline no longer applies once it is SPICE, a wrong ticket is refused
as on the SPICE port, and requests that only look alike (/wsx, /ws without an upgrade) are
not taken for it. The server's log and a spice-gtk client on the SPICE port go on."""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

from support.admin import TOKEN, write_token
from support.processes import free_port
from support.rawclient import link_bytes
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request

from spice_twisted.wire.client_link import ticket_message
from spice_twisted.wire.enums import LinkError, MsgCommon, MsgMain
from spice_twisted.wire.messages import LINK_HEADER, LINK_REPLY
from spice_twisted.wire.schema import decode

PASSWORD = b"admin-ws-pass"
REQUEST_TIMEOUT = 1.0  # --admin-request-timeout for the server below


class AdminWs:
    """A WebSocket to /ws on the admin port, with a byte-stream view of what comes back."""

    def __init__(self, port: int, split_at: int = 0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.stream = bytearray()
        self.accepted: AcceptConnection | None = None
        head = self.ws.send(Request(host="127.0.0.1", target="/ws", subprotocols=["binary"]))
        if split_at:
            self.sock.sendall(head[:split_at])
            time.sleep(0.2)  # only to make a second TCP segment; coalesced, the test still holds
            head = head[split_at:]
        self.sock.sendall(head)
        while self.accepted is None:
            self._pump()

    def _pump(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the server")
        self.ws.receive_data(data)
        for ev in self.ws.events():
            if isinstance(ev, AcceptConnection):
                self.accepted = ev
            elif isinstance(ev, BytesMessage):
                self.stream += ev.data

    def send(self, data: bytes) -> None:
        self.sock.sendall(self.ws.send(BytesMessage(data=data)))

    def recv_exact(self, n: int) -> bytes:
        while len(self.stream) < n:
            self._pump()
        out = bytes(self.stream[:n])
        del self.stream[:n]
        return out

    def link(self, password: bytes) -> int:
        self.send(link_bytes())
        hdr = decode(LINK_HEADER, self.recv_exact(LINK_HEADER.size))
        reply = decode(LINK_REPLY, self.recv_exact(hdr["size"])[: LINK_REPLY.size])
        assert reply["error"] == 0, reply
        self.send(ticket_message(reply["pub_key"], password))
        (result,) = struct.unpack("<I", self.recv_exact(4))
        return result


def http_first_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out:
                break
        return out


def test_admin_ws_links_and_outlives_the_admin_request_deadline(spawn, tmp_path: Path):
    write_token(tmp_path / "admin-token", TOKEN)
    (tmp_path / "pw").write_bytes(PASSWORD)
    admin_port = free_port()
    server = spawn.harness(
        "--admin-port",
        str(admin_port),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
        "--admin-request-timeout",
        str(REQUEST_TIMEOUT),
        "--password-file",
        str(tmp_path / "pw"),
    )
    gtk = spawn.client("--port", str(server.port), "--password", PASSWORD.decode())
    gtk.wait_event("mark", timeout=60)

    ws = AdminWs(admin_port, split_at=len("GET /w"))
    assert ws.accepted.subprotocol == "binary"
    # Idle past the admin site's request deadline (which would close an HTTP connection):
    # a SPICE link in progress is bounded by --link-timeout (30 s) instead.
    time.sleep(REQUEST_TIMEOUT * 2.5)
    assert ws.link(PASSWORD) == LinkError.OK
    msg_type, _ = struct.unpack("<HI", ws.recv_exact(6))
    assert msg_type in (MsgMain.INIT, MsgCommon.SET_ACK)  # the main channel runs
    assert len(server.stats()["clients"]) == 2  # the raw client and spice-gtk

    # A wrong ticket over /ws: refused as on the SPICE port, counted as such.
    bad = AdminWs(admin_port)
    assert bad.link(b"not-the-password") == LinkError.PERMISSION_DENIED
    assert server.stats()["link_refusals"].get("PERMISSION_DENIED", 0) >= 1

    # Look-alikes stay HTTP for the admin site, or get the SPICE port's plain answer.
    assert http_first_request(admin_port, b"GET /wsx HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert http_first_request(admin_port, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert http_first_request(admin_port, b"GET /api/server HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 401")
    ws.sock.close()
    bad.sock.close()
    assert gtk.stats()["marks"] >= 1  # spice-gtk still answers; the server went on
    assert len(server.stats()["clients"]) >= 1

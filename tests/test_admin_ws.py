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
from support.ws_client import WsClient

from spice_twisted.wire.enums import LinkError, MsgCommon, MsgMain

PASSWORD = b"admin-ws-pass"
REQUEST_TIMEOUT = 1.0  # --admin-request-timeout for the server below


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

    ws = WsClient(admin_port, target="/ws", split_at=len("GET /w"))
    assert ws.accepted.subprotocol == "binary"
    # Idle past the admin site's request deadline (which would close an HTTP connection):
    # a SPICE link in progress is bounded by --link-timeout (30 s) instead.
    time.sleep(REQUEST_TIMEOUT * 2.5)
    assert ws.link(PASSWORD) == LinkError.OK
    msg_type, _ = struct.unpack("<HI", ws.recv_exact(6))
    assert msg_type in (MsgMain.INIT, MsgCommon.SET_ACK)  # the main channel runs
    assert len(server.stats()["clients"]) == 2  # the raw client and spice-gtk

    # A wrong ticket over /ws: refused as on the SPICE port, counted as such.
    bad = WsClient(admin_port, target="/ws")
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

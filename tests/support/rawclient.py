"""A minimal protocol-level SPICE client over a plain socket, for bad-input tests."""

from __future__ import annotations

import socket
import struct

from spice_twisted.channels.inputs import MOTION_ACK_BUNCH
from spice_twisted.wire.client_link import DEFAULT_COMMON_CAPS, link_message, ticket_message
from spice_twisted.wire.enums import SPICE_MAGIC, ChannelType, LinkError, MsgcInputs, MsgInputs, MsgMain
from spice_twisted.wire.messages import CLIENT, LINK_HEADER, LINK_REPLY, encode_body
from spice_twisted.wire.schema import decode


def link_bytes(
    channel: int = ChannelType.MAIN, connection_id: int = 0, common=DEFAULT_COMMON_CAPS, magic: bytes = SPICE_MAGIC, major: int = 2
) -> bytes:
    return link_message(channel, connection_id, common, (), magic, major)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError(f"closed after {len(out)} of {n} bytes")
        out += chunk
    return out


def read_reply(sock: socket.socket) -> dict:
    hdr = decode(LINK_HEADER, recv_exact(sock, LINK_HEADER.size))
    body = recv_exact(sock, hdr["size"])
    reply = decode(LINK_REPLY, body[: LINK_REPLY.size])
    return reply


def link(
    port: int,
    password: bytes = b"",
    channel: int = ChannelType.MAIN,
    connection_id: int = 0,
    source: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[socket.socket, int]:
    """Run a whole link from `source`; returns the socket and the link result code (a refused
    request gives its reply's error)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    sock.sendall(link_bytes(channel, connection_id))
    reply = read_reply(sock)
    if reply["error"]:
        return sock, reply["error"]
    sock.sendall(ticket_message(reply["pub_key"], password))
    (result,) = struct.unpack("<I", recv_exact(sock, 4))
    return sock, result


def _main_session(port: int, password: bytes = b"") -> tuple[socket.socket, int]:
    """A linked main channel (mini headers) and its session id, read from INIT."""
    sock, result = link(port, password)
    assert result == LinkError.OK, LinkError(result)
    msg_type, size = struct.unpack("<HI", recv_exact(sock, 6))
    body = recv_exact(sock, size)
    assert msg_type == MsgMain.INIT, msg_type
    return sock, struct.unpack_from("<I", body)[0]


def closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


class NotifyReader:
    """A raw main channel (mini headers) that collects the text of every NOTIFY it gets, and
    answers PINGs as a real client does (the server drops one that does not: --ping-timeout)."""

    def __init__(self, port: int) -> None:
        import threading

        from spice_twisted.wire.enums import MsgCommon

        self.sock, result = link(port)
        assert result == 0, result
        self.texts: list[str] = []
        self._notify = MsgCommon.NOTIFY
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        from spice_twisted.wire.enums import MsgcCommon, MsgCommon
        from spice_twisted.wire.messages import decode_body, message

        notify, ping = message(None, "NOTIFY"), message(None, "PING")
        self.sock.settimeout(None)
        try:
            while True:
                msg_type, size = struct.unpack("<HI", recv_exact(self.sock, 6))
                body = recv_exact(self.sock, size)
                if msg_type == self._notify:
                    self.texts.append(decode_body(notify, body)["message"].rstrip(b"\0").decode(errors="replace"))
                elif msg_type == MsgCommon.PING:
                    p = decode_body(ping, body)
                    self.sock.sendall(struct.pack("<HI", MsgcCommon.PONG, 12) + struct.pack("<IQ", p["id"], p["timestamp"]))
        except (OSError, ConnectionError):
            pass

    def close(self) -> None:
        self.sock.close()


class RawInputs:
    """A client of our own on the wire: a main and an inputs channel. Its inputs are
    followed by MOTION_ACK_BUNCH positions, whose MOUSE_MOTION_ACK says the server has
    handled everything it sent before them (one channel is handled in order)."""

    def __init__(self, port: int, password: bytes = b"") -> None:
        self.main, self.session_id = _main_session(port, password)
        self.inputs, result = link(port, password, ChannelType.INPUTS, self.session_id)
        assert result == LinkError.OK, LinkError(result)

    def send(self, msg: MsgcInputs, **fields: object) -> None:
        body = encode_body(CLIENT[(ChannelType.INPUTS, msg)], fields)
        self.inputs.sendall(struct.pack("<HI", msg, len(body)) + body)

    def handled(self, timeout: float = 20.0) -> None:
        """Returns once the server has handled every message sent so far."""
        for i in range(MOTION_ACK_BUNCH):
            self.send(MsgcInputs.MOUSE_POSITION, x=300 + i, y=10, buttons_state=0, display_id=0)
        self.inputs.settimeout(timeout)
        while True:
            msg_type, size = struct.unpack("<HI", recv_exact(self.inputs, 6))
            recv_exact(self.inputs, size)
            if msg_type == MsgInputs.MOUSE_MOTION_ACK:
                return

    def close(self) -> None:
        self.inputs.close()
        self.main.close()

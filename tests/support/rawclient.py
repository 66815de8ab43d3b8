"""A minimal protocol-level SPICE client over a plain socket, for bad-input tests."""

from __future__ import annotations

import socket
import struct

from spice_twisted.wire.caps import caps_to_words, pack_words
from spice_twisted.wire.enums import SPICE_MAGIC, ChannelType, CommonCap
from spice_twisted.wire.messages import LINK_HEADER, LINK_MESS, LINK_REPLY
from spice_twisted.wire.schema import decode, encode
from spice_twisted.wire.ticket import encrypt_ticket


def link_bytes(
    channel: int = ChannelType.MAIN,
    connection_id: int = 0,
    common=(CommonCap.AUTH_SELECTION, CommonCap.MINI_HEADER),
    magic: bytes = SPICE_MAGIC,
    major: int = 2,
) -> bytes:
    words = caps_to_words(common)
    mess = encode(
        LINK_MESS,
        {
            "connection_id": connection_id,
            "channel_type": channel,
            "channel_id": 0,
            "num_common_caps": len(words),
            "num_channel_caps": 0,
            "caps_offset": LINK_MESS.size,
        },
    )
    mess += pack_words(words)
    return encode(LINK_HEADER, {"magic": magic, "major": major, "minor": 2, "size": len(mess)}) + mess


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


def link(port: int, password: bytes = b"", channel: int = ChannelType.MAIN, connection_id: int = 0) -> tuple[socket.socket, int]:
    """Run a whole link; returns the socket and the link result code."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(link_bytes(channel, connection_id))
    reply = read_reply(sock)
    if reply["error"]:
        return sock, reply["error"]
    sock.sendall(struct.pack("<I", 1) + encrypt_ticket(reply["pub_key"], password))
    (result,) = struct.unpack("<I", recv_exact(sock, 4))
    return sock, result


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

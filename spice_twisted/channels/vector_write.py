"""Vectored writes of shared payload pieces to a plain TCP socket, without Twisted's copy.

Twisted's TCP transport keeps what it is given in a list and, when the socket is
writable, joins it into one send buffer: one copy of every payload per connection (none
only when a single `bytes` is all that is pending). A display channel writes the same
shared pieces to every client, so that copy is the one per-client cost left between the
encoded payload and the kernel. Here, when the transport has nothing buffered, the
pieces go to the socket at once in one `sendmsg` (the kernel gathers them straight from
the shared objects); only what the socket does not take now is handed to the transport,
which buffers it, pauses the producer past its buffer size and resumes it once drained,
exactly as before. Order holds because the socket is written directly only while the
transport holds nothing; a socket error is left for the transport to meet on its own
write, so a lost connection ends the usual way.

Only plain TCP: TLS encrypts per connection anyway and a WebSocket frames each write,
so those keep the transport's own writes (docs/architecture.md, "Writes").
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from twisted.internet import tcp

try:
    IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))  # buffers one sendmsg takes (Linux: 1024)
except (AttributeError, ValueError, OSError):
    IOV_MAX = 16
_FLAGS = getattr(socket, "MSG_NOSIGNAL", 0)
_WOULD_BLOCK = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})
# What the writer reads of Twisted's FileDescriptor to know it holds nothing; a Twisted
# without them gets the transport's own writes.
_BUFFER_ATTRS = ("dataBuffer", "offset", "_tempDataLen", "socket", "connected", "disconnecting")


class VectorWriter:
    """Writes sequences of bytes-like pieces to one plain TCP connection; see the module."""

    def __init__(self, transport: tcp.Connection) -> None:
        self.transport = transport
        self._sendmsg = transport.socket.sendmsg
        self.direct_bytes = 0  # bytes the kernel took straight from the pieces given
        self.handed_bytes = 0  # bytes handed to the transport (it buffers and joins them)
        self.sendmsgs = 0  # sendmsg calls (one per write while the socket takes it all)

    def idle(self) -> bool:
        """The transport holds nothing to send: writing the socket directly keeps the order."""
        t = self.transport
        return t.connected and not t.disconnecting and not t._tempDataLen and t.offset >= len(t.dataBuffer)

    def write(self, pieces: Sequence[Any]) -> None:
        """Write `pieces` in order: to the socket now as far as it takes them, the rest
        (and everything, while the transport still holds earlier bytes) through the transport."""
        if not pieces:
            return
        if not self.idle():
            self._hand(pieces, 0, 0)
            return
        i, n = 0, len(pieces)
        while i < n:
            batch = pieces[i : i + IOV_MAX]
            self.sendmsgs += 1
            try:
                sent = self._sendmsg(batch, (), _FLAGS)
            except OSError as exc:
                if exc.errno not in _WOULD_BLOCK:
                    # A broken connection: the transport meets the error on its own write
                    # and closes as it always does.
                    self._hand(pieces, i, 0)
                    return
                sent = 0
            self.direct_bytes += sent
            for p in batch:
                size = len(p)
                if sent < size:
                    self._hand(pieces, i, sent)  # the socket is full: the rest waits
                    return
                sent -= size
                i += 1

    def _hand(self, pieces: Sequence[Any], index: int, offset: int) -> None:
        """pieces[index:], the first from `offset`, to the transport (which takes only bytes:
        the tail of a piece the socket took part of is copied, once, here)."""
        rest = [p if type(p) is bytes else bytes(p) for p in pieces[index + 1 :]]
        first = pieces[index]
        if offset or type(first) is not bytes:
            first = bytes(memoryview(first)[offset:])
        rest.insert(0, first)
        self.handed_bytes += sum(len(p) for p in rest)
        self.transport.writeSequence(rest)


@runtime_checkable
class Router(Protocol):
    """What a channel's transport offers when it is the port router (channels/link.py's
    `PortRouter`; named here by its shape, since link.py knows the channels): the
    connection's own transport, and its WebSocket if it is one."""

    transport: Any
    websocket: Any


def vector_writer_for(transport: Any) -> VectorWriter | None:
    """A writer for a channel's transport if it is plain TCP under the port router (no TLS,
    no WebSocket) and Twisted's transport is the one this module knows; else None."""
    if not isinstance(transport, Router) or transport.websocket is not None:
        return None
    real = transport.transport
    if not isinstance(real, tcp.Connection) or not all(hasattr(real, a) for a in _BUFFER_ATTRS):
        return None
    if not hasattr(real.socket, "sendmsg"):
        return None
    return VectorWriter(real)

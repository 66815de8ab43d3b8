"""TLS whose ciphertext goes straight to the socket: Twisted's TLS transport, minus its buffering.

Twisted's `TLSMemoryBIOProtocol` joins a `writeSequence`, encrypts 16 KiB at a time and
hands each record's ciphertext to the TCP transport, which keeps it in its buffer,
registers the socket with epoll, and on the next reactor iteration joins the buffer,
sends it and unregisters: per client and frame a join, a `doWrite`, a `send` and two
`epoll.modify` on top of the encryption (docs/performance.md, "TLS: the ciphertext
straight to the socket"). Here a write encrypts its parts without joining them (small
ones share a record with the head of the large part after them; the rest of a large part
is encrypted from its own buffer), reads all the ciphertext the memory BIO holds and, while
the TCP transport holds nothing, gives it to the socket in one `sendmsg`
(channels/vector_write.py's writer); only what the socket leaves goes to the transport,
which buffers it and pauses the producer past its buffer size as before.

Order holds: the socket is written directly only while the transport holds nothing.
Record boundaries are those of the writes, as before: each write (one SPICE message, or
one part of a large one) ends a TLS record, which spice-gtk needs (tls.py). Handshake,
alerts and close_notify take the same path; after `abortConnection` nothing is written
directly, so an abort still drops what is pending. A socket error is left to the
transport, which meets it on its own write and closes as usual.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from OpenSSL.SSL import Error, WantReadError
from twisted.internet import tcp
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from .channels.vector_write import VectorWriter

RECORD = 1 << 14  # a TLS record's plaintext at most: parts this large are encrypted in place
BIO_READ = 1 << 18  # ciphertext read from the memory BIO per call
_WRITER_ATTRS = ("dataBuffer", "offset", "_tempDataLen", "socket", "connected", "disconnecting")


class DirectTLSProtocol(TLSMemoryBIOProtocol):
    """Twisted's TLS protocol whose ciphertext goes to the socket itself; see the module."""

    _writer: VectorWriter | None = None
    _writer_looked = False
    ciphertext_writes = 0  # flushes of the memory BIO that had ciphertext to send

    def _socket_writer(self) -> VectorWriter | None:
        """A writer for the TCP transport under this TLS (Twisted's own, with a socket that
        has sendmsg), looked up once; None: the transport's writes, as Twisted does."""
        if not self._writer_looked:
            self._writer_looked = True
            t = self.transport
            if isinstance(t, tcp.Connection) and all(hasattr(t, a) for a in _WRITER_ATTRS) and hasattr(t.socket, "sendmsg"):
                self._writer = VectorWriter(t)
        return self._writer

    def _flushSendBIO(self) -> None:
        """All the ciphertext the memory BIO holds, to the socket while the transport holds
        nothing (the rest to the transport), in one sendmsg."""
        tls = self._tlsConnection
        out: list[bytes] = []
        while True:
            try:
                data = tls.bio_read(BIO_READ)
            except WantReadError:
                break  # the BIO is empty
            out.append(data)
            if len(data) < BIO_READ:
                break
        if not out:
            return
        self.ciphertext_writes += 1
        writer = None if self._aborted else self._socket_writer()
        if writer is not None:
            writer.write(out)
        elif len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.writeSequence(out)

    def _write(self, data: Any) -> None:
        """Encrypt `data` (bytes or a buffer: never copied here) and send the records."""
        self._encrypt((data,))

    def writeSequence(self, iovec: Iterable[Any]) -> None:
        """Encrypt the parts in order without joining them all first; one flush of the
        ciphertext for them all. Small parts (a header, a prefix) are joined with the head
        of the large part after them, up to one record, so a message takes as many records
        as when it was joined whole; the rest of a large part is encrypted from its own buffer."""
        if self.disconnecting and self._producer is None:
            return
        self._encrypt(iovec)

    def _encrypt(self, parts: Iterable[Any]) -> None:
        if self._lostTLSConnection:
            return
        try:
            small: list[Any] = []
            held = 0  # bytes in `small`
            it = iter(parts)
            for part in it:
                size = len(part)
                if size < RECORD:
                    small.append(part)
                    held += size
                    continue
                if small:
                    if held < RECORD:  # fill the first record from the large part (a copy of < 16 KiB)
                        view = memoryview(part)
                        cut = RECORD - held
                        small.append(view[:cut])
                        part = view[cut:]
                    ok = self._ssl_write(b"".join(small))
                    small, held = [], 0
                    if not ok:
                        self._buffer_rest([part, *it])
                        return
                if not self._ssl_write(part):
                    self._buffer_rest(list(it))
                    return
            if small:
                self._ssl_write(small[0] if len(small) == 1 else b"".join(small))
        finally:
            if not self._lostTLSConnection:
                self._flushSendBIO()  # once for all the parts: one sendmsg

    def _buffer_rest(self, rest: list[Any]) -> None:
        """After a write TLS could not take (it waits for a read: a renegotiation), the
        parts still to come wait behind it in Twisted's plaintext buffer, in order."""
        if not self._lostTLSConnection:
            self._appSendBuffer.extend(bytes(p) for p in rest)

    def _ssl_write(self, data: Any) -> bool:
        """SSL_write all of `data`: one call on the TLS port's context (tls.py turns off
        partial writes), a call per 16 KiB record where they are on; the ciphertext stays in
        the BIO for one flush. False if TLS could not take it all now:
        the rest is buffered (and the producer paused) as Twisted does, or the connection
        failed and is closing."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        done, size = 0, len(view)
        if not size:
            return True
        if self._appSendBuffer:
            self._bufferedWrite(bytes(view))  # earlier bytes wait for a read: keep the order
            return False
        tls = self._tlsConnection
        while done < size:
            try:
                done += tls.send(view[done:] if done else view)
            except WantReadError:
                self._bufferedWrite(bytes(view[done:]))
                return False
            except Error:
                self._tlsShutdownFinished(Failure())
                return False
        return True

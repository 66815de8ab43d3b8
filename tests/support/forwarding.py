"""What the tests' TCP forwarders share (support/tap.py's wire tap, support/shaper.py's link
shaper): a listener on 127.0.0.1 that connects each accepted client to a target port and
closes every socket at the end, and the delay line that sends one direction's bytes each
at its own time, as a shaped link delivers them."""

from __future__ import annotations

import socket
import threading
import time
from collections import deque

HOST = "127.0.0.1"


class DelayLine:
    """Pieces for `dst`, each sent at its time (monotonic), in order, from a thread of its
    own (started with the first piece). At most `limit` bytes wait in it, counting the
    piece being sent: whoever feeds it waits for room (`wait_room`), so the sender feels
    the link, as behind a router's buffer."""

    def __init__(self, dst: socket.socket, limit: int, name: str) -> None:
        self.dst, self.limit, self.name = dst, limit, name
        self._queue: deque[tuple[float, bytes]] = deque()
        self._held = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.broken = False  # sending to dst failed: what is queued is dropped
        self.sent = 0

    @property
    def idle(self) -> bool:
        """Nothing queued or being sent: a direct write to dst would keep the order."""
        return self._held == 0

    def wait_room(self) -> bool:
        """Block while `limit` bytes wait; False once dst failed or the line was drained."""
        with self._cond:
            while self._held >= self.limit and not self.broken and not self._stopping:
                self._cond.wait(0.2)
            return not (self.broken or self._stopping)

    def put(self, when: float, piece: bytes) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        with self._cond:
            self._queue.append((when, piece))
            self._held += len(piece)
            self._cond.notify_all()

    def drain(self, timeout: float = 600.0) -> None:
        """No more pieces come: wait until those queued have left (or dst failed, or
        `timeout` passed: the rest is dropped), then let the thread end."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._held and not self.broken and time.monotonic() < deadline:
                self._cond.wait(0.2)
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(0.2)
                if not self._queue:
                    return
                when, piece = self._queue[0]
                left = when - time.monotonic()
                if left > 0:
                    self._cond.wait(min(left, 0.05))
                    continue
                self._queue.popleft()
            try:
                self.dst.sendall(piece)
            except OSError:
                with self._cond:
                    self.broken = True
                    self._queue.clear()
                    self._held = 0
                    self._cond.notify_all()
                return
            with self._cond:
                self._held -= len(piece)
                self.sent += len(piece)
                self._cond.notify_all()


class Forwarder:
    """Listens on 127.0.0.1 (a free port) and connects each accepted client to
    `target_port`; a subclass forwards the pair (`forward`). `rcvbuf`: the receive buffer
    of both sockets of each pair (None: the kernel's)."""

    name = "forwarder"

    def __init__(self, target_port: int, rcvbuf: int | None = None) -> None:
        self.target_port, self.rcvbuf = target_port, rcvbuf
        self._sockets: list[socket.socket] = []
        self._lock = threading.Condition()
        self._closed = False
        self.listener = socket.socket()
        if rcvbuf is not None:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # inherited by accepted sockets
        self.listener.bind((HOST, 0))
        self.listener.listen(64)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, name=f"{self.name}-{self.port}", daemon=True).start()

    def __enter__(self) -> Forwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.socket()
            if self.rcvbuf is not None:
                server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)  # before connect: the window it offers
            server.settimeout(10)
            try:
                server.connect((HOST, self.target_port))
            except OSError:
                client.close()
                server.close()
                continue
            for s in (client, server):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
                self.forward(client, server)
                self._lock.notify_all()

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        """Start forwarding a new pair (called with the lock held)."""
        raise NotImplementedError

    def close(self) -> None:
        self._closed = True
        close_quietly(self.listener)
        with self._lock:
            socks = list(self._sockets)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            close_quietly(s)


def close_quietly(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def end_of_stream(dst: socket.socket) -> None:
    """Pass the sender's end of stream on (a half close)."""
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def wait_for_the_other(done: threading.Barrier) -> None:
    """One direction ended: the pair closes when both have (the barrier's action)."""
    try:
        done.wait(timeout=600)
    except threading.BrokenBarrierError:
        pass

"""A userspace link shaper for tests and benchmarks: a TCP proxy on 127.0.0.1 that adds a
one-way delay each way and limits each direction's rate with a token bucket.

Network namespaces with netem need CAP_NET_ADMIN on a host network stack; in the
project's containers they are not there, so links are shaped here, in the path of the
bytes: `Shaper(server_port, rate=10e6 / 8, delay=0.04)` is an 80 ms, 10 Mbit/s link.
Point a client (or a wire tap) at `shaper.port`.

Like a real link, and unlike a proxy that reads as fast as it can:
- each direction is one bottleneck shared by all connections through the shaper (a
  burst on the display channel delays the main channel's pings);
- the token bucket holds at most `burst` bytes (a few packets): a long transfer goes at
  `rate` from its first kilobytes on, as through netem's rate;
- what the link holds is bounded: per connection and direction at most `queue` bytes wait
  for the bucket or the delay line (a router's buffer), and the shaper's sockets have a
  small receive buffer (`SO_RCVBUF`). Past that the shaper stops reading and the
  sender's TCP feels the link; its own kernel send buffer is where the rest waits. A
  proxy with loopback-sized receive buffers would take megabytes at once and hide the
  link from the sender.
"""

from __future__ import annotations

import socket
import threading
import time

from support.forwarding import DelayLine, Forwarder, close_quietly, end_of_stream, wait_for_the_other

PIECE = 4096  # bytes timed as one unit (about three packets)
RCVBUF = 32 * 1024  # the shaper's sockets' receive buffers (the kernel doubles it)
QUEUE = 64 * 1024  # bytes one direction of one connection holds in the shaper


class TokenBucket:
    """One direction of the link: `rate` bytes/s, at most `burst` bytes at once, then
    `delay` seconds of propagation. FIFO: a piece never leaves before the one before it."""

    def __init__(self, rate: float | None, delay: float, burst: int = PIECE) -> None:
        self.rate, self.delay, self.burst = rate, delay, max(burst, PIECE)
        self._tokens = float(self.burst)
        self._at = time.monotonic()  # when _tokens was right (the last departure)
        self._lock = threading.Lock()

    def set(self, rate: float | None, delay: float) -> None:
        with self._lock:
            self.rate, self.delay = rate, delay

    def arrival(self, nbytes: int) -> float:
        """When `nbytes` entering the link now come out of its far end (monotonic)."""
        with self._lock:
            now = time.monotonic()
            if not self.rate:
                return now + self.delay
            t = max(now, self._at)
            tokens = min(self.burst, self._tokens + (t - self._at) * self.rate)
            if tokens < nbytes:
                t += (nbytes - tokens) / self.rate
                tokens = nbytes
            self._tokens, self._at = tokens - nbytes, t
            return t + self.delay


class _Direction:
    """src -> dst through a bucket: a reader thread takes pieces while the delay line has
    room, the line sends each at its arrival time."""

    def __init__(self, src: socket.socket, dst: socket.socket, bucket: TokenBucket, queue: int, done: threading.Barrier) -> None:
        self.src, self.dst, self.bucket, self.done = src, dst, bucket, done
        self.line = DelayLine(dst, queue, f"shaper-{src.getsockname()[1]}")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while self.line.wait_room():
                try:
                    data = self.src.recv(PIECE)
                except OSError:
                    break
                if not data:
                    break
                self.line.put(self.bucket.arrival(len(data)), data)
            self.line.drain()
            end_of_stream(self.dst)
        finally:
            wait_for_the_other(self.done)


class Shaper(Forwarder):
    """Listens on 127.0.0.1 (a free port) and forwards each connection to `target_port`
    through the shaped link: `rate` bytes/s (None: unlimited) and `delay` s each way."""

    name = "shaper"

    def __init__(self, target_port: int, rate: float | None = None, delay: float = 0.0, burst: int = PIECE, queue: int = QUEUE) -> None:
        self.queue = queue
        self.down = TokenBucket(rate, delay, burst)  # server -> client
        self.up = TokenBucket(rate, delay, burst)  # client -> server
        self.connections = 0
        self.upstream_ports: list[int] = []  # each connection's local port towards the target, in order
        super().__init__(target_port, rcvbuf=RCVBUF)

    def shape(self, rate: float | None, delay: float) -> None:
        """From now on, both ways: `rate` bytes/s and `delay` s (bytes already queued keep their times)."""
        self.down.set(rate, delay)
        self.up.set(rate, delay)

    def forward(self, client: socket.socket, server: socket.socket) -> None:
        self.connections += 1
        self.upstream_ports.append(server.getsockname()[1])
        done = threading.Barrier(2, action=lambda: close_quietly(client, server))
        _Direction(client, server, self.up, self.queue, done)
        _Direction(server, client, self.down, self.queue, done)

"""Every resource limit of the server in one place, with the defaults and what each protects.

- Message size, per channel and per message type: a client message whose header claims
  more is refused before one byte of its body is buffered (wire.framer).
- Bytes held for one connection (`max_connection_buffer`): the link stage and the
  incomplete message after it; a connection that needs more is closed.
- Bytes held across all connections (`max_buffered_total`): the sum of every incomplete
  message; past it, the connections holding the most are closed first (`InputBudget`).
- An incomplete message must be finished within `message_timeout` (`InputWatch`); a link
  within `link_timeout`.
- Clients, clients per address, channel connections per client, concurrent connections per
  address, link requests per address per second, and the backoff after failed tickets
  (ratelimit.py). Past `max_clients` or `max_clients_per_address` a client with the full
  ticket makes room by replacing a view-only-ticket client (server.py).
- A main channel must answer a PING within `ping_timeout` (channels/main.py): a client
  that reads nothing is dropped however much the kernel's buffers still take.

docs/security.md explains the threat each limit answers and how to choose values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .wire.enums import ChannelType
from .wire.messages import CLIENT

KIB = 1024
MIB = 1024 * KIB

# Upstream's receive buffers: 1 KiB for display and cursor, about 26 KiB on main (agent data).
DEFAULT_MESSAGE_LIMITS: dict[str, int] = {
    "default": 4 * KIB,
    "main": 32 * KIB,
    # spice-gtk and spice-html5 cut agent data into 2048-byte messages; twice that is room enough.
    "main:AGENT_DATA": 4 * KIB,
    "inputs:KEY_SCANCODE": 256,
    # A microphone's buffer per message (spice-gtk sends what its audio source hands it);
    # upstream reads record messages into 32 KiB as well.
    "record": 32 * KIB,
}
MAX_MESSAGE_LIMIT = 64 * MIB
# Messages queued for one channel connection beyond its display pipe's own bounds (replies,
# pings, acks). Only a client that sends requests and reads none of the replies gets here.
MAX_CONTROL_BACKLOG = 1024


@dataclass
class Limits:
    """The server's limits; `parse_*` helpers build them from option values."""

    message: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MESSAGE_LIMITS))
    max_connection_buffer: int = 64 * KIB
    max_buffered_total: int = 16 * MIB
    message_timeout: float = 30.0
    link_timeout: float = 30.0
    max_clients: int = 64
    # One address (an IPv6 /64) may hold this many clients (0 = no limit): a quarter of the
    # default --max-clients, so one address cannot take every slot. Behind a proxy (websockify,
    # an SSH tunnel) every client has the proxy's address: raise it there.
    max_clients_per_address: int = 16
    ping_timeout: float = 60.0  # a main channel answering no PING this long is dropped (0 = never)
    max_channels_per_client: int = 16
    max_connections_per_address: int = 64
    link_rate: float = 10.0  # link requests per second per address (0 = no limit)
    link_burst: float = 40.0
    ticket_backoff: float = 15.0  # longest pause between two checked tickets of one address (0 = off)
    log_window: float = 60.0  # one refusal line per address and kind per this many seconds

    def channel_limits(self, channel: ChannelType, header_size: int) -> tuple[int, dict[int, int]]:
        """(body limit for the channel, {message type: body limit}) for a channel's framer."""
        cap = max(0, self.max_connection_buffer - header_size)
        name = channel.name.lower()
        base = min(self.message.get(name, self.message.get("default", DEFAULT_MESSAGE_LIMITS["default"])), cap)
        per_type: dict[int, int] = {}
        for (ch, msg_id), msg in CLIENT.items():
            if ch is not None and ch != channel:
                continue
            limit = self.message.get(f"{name}:{msg.name}", self.message.get(f"default:{msg.name}"))
            if limit is not None:
                per_type[msg_id] = min(limit, cap)
        return base, per_type


_SIZE = re.compile(r"^\s*(\d+)\s*([kKmM]?)(?:i?[bB])?\s*$")


def parse_size(value: str) -> int:
    """A byte count: 4096, 64K, 16M (K and M are 1024 and 1024*1024)."""
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r} (write bytes, or a number with K or M)")
    n = int(m.group(1)) * {"": 1, "k": KIB, "m": MIB}[m.group(2).lower()]
    if n <= 0:
        raise ValueError("must be positive")
    return n


def _channel_names() -> list[str]:
    return [c.name.lower() for c in ChannelType]


def parse_message_limit(spec: str) -> tuple[str, int]:
    """CHANNEL=SIZE or CHANNEL:MESSAGE=SIZE (CHANNEL may be 'default') -> (key, bytes)."""
    where, eq, size = spec.partition("=")
    if not eq:
        raise ValueError(f"{spec!r}: write CHANNEL=SIZE or CHANNEL:MESSAGE=SIZE, e.g. main=64K or main:AGENT_DATA=8K")
    channel, _, msg_name = where.strip().partition(":")
    channel = channel.lower()
    names = _channel_names()
    if channel != "default" and channel not in names:
        raise ValueError(f"unknown channel {channel!r}: use default or one of {', '.join(names)}")
    if msg_name:
        msg_name = msg_name.upper()
        ctype = None if channel == "default" else ChannelType[channel.upper()]
        known = sorted({m.name for (ch, _), m in CLIENT.items() if ch is None or ctype is None or ch == ctype})
        if msg_name not in known:
            raise ValueError(f"no client message {msg_name} on {channel}: one of {', '.join(known)}")
    n = parse_size(size)
    if n > MAX_MESSAGE_LIMIT:
        raise ValueError(f"{n} bytes is more than {MAX_MESSAGE_LIMIT} (64M)")
    return (f"{channel}:{msg_name}" if msg_name else channel), n


def parse_rate(value: str) -> tuple[float, float]:
    """RATE or RATE/BURST (links a second, and how many at once); 0 turns the limit off."""
    rate_s, _, burst_s = value.partition("/")
    try:
        rate = float(rate_s)
        burst = float(burst_s) if burst_s else max(4.0 * rate, 1.0)
    except ValueError:
        raise ValueError(f"not a rate: {value!r} (write RATE or RATE/BURST, e.g. 10/40)") from None
    if rate < 0 or burst < 1:
        raise ValueError("the rate must not be negative and the burst must be at least 1")
    return rate, burst


class InputBudget:
    """Bytes of incomplete input held across all connections, at most `limit`.

    Each holder reports what it holds (`hold`). Past the limit the holders with the
    most are evicted first (their `evict(reason)` closes them), so one flood cannot
    push out the small, ordinary partial messages of everybody else.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held: dict[Any, int] = {}
        self.total = 0
        self.peak = 0
        self.evictions = 0

    def hold(self, holder: Any, n: int) -> None:
        old = self.held.pop(holder, 0)
        self.total += n - old
        if n:
            self.held[holder] = n
        self.peak = max(self.peak, self.total)
        while self.total > self.limit and self.held:
            biggest = max(self.held, key=self.held.__getitem__)
            self.total -= self.held.pop(biggest)
            self.evictions += 1
            biggest.evict(f"the server holds {self.limit} bytes of unfinished messages at most, and this connection held the most")


class InputWatch:
    """One connection's incomplete input: its share of the budget and a deadline.

    `update(buffered, progressed)` after every read: a message left incomplete must be
    finished within `timeout` seconds from when it began (the deadline restarts when a
    whole message arrived); a connection holding more than `per_connection` bytes, or
    the biggest holder when the server-wide budget is spent, is closed with `close(reason)`.
    """

    def __init__(self, reactor: Any, timeout: float, per_connection: int, budget: InputBudget | None, close: Callable[[str], None]) -> None:
        self.reactor, self.timeout, self.per_connection, self.budget, self.close = reactor, timeout, per_connection, budget, close
        self._timer: Any = None
        self.closed = False

    def update(self, buffered: int, progressed: bool) -> None:
        if self.closed:
            return
        if buffered > self.per_connection:
            self._stop()
            self.close(f"{buffered} bytes of unfinished input (limit {self.per_connection} a connection)")
            return
        if self.budget is not None:
            self.budget.hold(self, buffered)
        if self.closed:
            return
        if not buffered:
            self._cancel()
        elif progressed or self._timer is None:
            self._cancel()
            if self.timeout:
                self._timer = self.reactor.callLater(self.timeout, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if not self.closed:
            self._stop()
            self.close(f"a message left unfinished for {self.timeout:g}s")

    def evict(self, reason: str) -> None:
        if not self.closed:
            self._stop(release=False)  # the budget has already let go of us
            self.close(reason)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _stop(self, release: bool = True) -> None:
        self.closed = True
        self._cancel()
        if release and self.budget is not None:
            self.budget.hold(self, 0)

    def stop(self) -> None:
        """The connection is gone: release its share, stop its deadline."""
        if not self.closed:
            self._stop()

"""The server's guard against hostile clients: it applies `Limits` with the per-address
tables of ratelimit.py and keeps the refusal log quiet (one line per address and kind
per window, then a summary with the count).

The link protocol asks it before costly steps: `admit()` before a connection gets a
protocol (and, on the TLS port, before the handshake), `allow_link()` before a link
request gets an RSA key, `ticket_wait()` before a ticket is decrypted. Channel clients
take an `InputWatch` from `watch()` for their unfinished messages.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from .audit import audit
from .limits import InputBudget, InputWatch, Limits
from .ratelimit import ConnectionCounter, LogWindow, RateLimiter, TicketBackoff, address_key


def host_of(peer: Any) -> str:
    """The host of a Twisted address (IPv4Address, IPv6Address, or anything else)."""
    return str(getattr(peer, "host", peer))


class Guard:
    log = Logger(namespace="spice_twisted.guard")

    def __init__(self, limits: Limits, reactor: Any) -> None:
        self.limits, self.reactor = limits, reactor
        self.connections = ConnectionCounter(limits.max_connections_per_address)
        self.links = RateLimiter(limits.link_rate, limits.link_burst)
        self.backoff = TicketBackoff(limits.ticket_backoff, max_wait=min(10.0, limits.link_timeout / 2))
        self.window = LogWindow(limits.log_window)
        self.budget = InputBudget(limits.max_buffered_total)
        self.refusals: Counter[str] = Counter()
        self._conn_ids = itertools.count(1)

    def now(self) -> float:
        return float(self.reactor.seconds())

    def next_conn(self) -> int:
        """A number for each accepted connection, to match its audit lines."""
        return next(self._conn_ids)

    # --- per-address decisions -----------------------------------------------------------
    def admit(self, host: str, tls: bool) -> bool:
        if self.connections.acquire(address_key(host)):
            return True
        n = self.limits.max_connections_per_address
        fmt = "connection from {host} refused: {n} connections from that address already (--max-connections-per-address)"
        if self.refuse(host, "connections", fmt, n=n):
            audit("refused", kind="connections", peer=host, tls=tls, limit=n)
        return False

    def release(self, host: str) -> None:
        self.connections.release(address_key(host))

    def allow_link(self, host: str) -> bool:
        return self.links.allow(address_key(host), self.now())

    def ticket_wait(self, host: str) -> float | None:
        return self.backoff.reserve(address_key(host), self.now())

    def ticket_failed(self, host: str) -> None:
        self.backoff.failed(address_key(host), self.now())

    def ticket_ok(self, host: str) -> None:
        self.backoff.succeeded(address_key(host))

    def watch(self, close: Callable[[str], None]) -> InputWatch:
        lim = self.limits
        return InputWatch(self.reactor, lim.message_timeout, lim.max_connection_buffer, self.budget, close)

    # --- the quiet refusal log --------------------------------------------------------
    def refuse(self, host: str, kind: str, fmt: str, log: Logger | None = None, **fields: Any) -> bool:
        """Count a refusal; log it (to `log`, the refusing protocol's logger, or ours) if it is
        the first of its kind from this address in this window (returns True then); later
        ones are summed up by `tick()`."""
        self.refusals[kind] += 1
        if self.window.first(address_key(host), kind, self.now()):
            (log or self.log).warn(fmt, host=host, **fields)
            return True
        return False

    def tick(self) -> None:
        """Once a second: summary lines for windows that ended, forget idle addresses."""
        now = self.now()
        for key, kind, n in self.window.due(now):
            self.log.warn(
                "{n} more refusals ({kind}) from {key} in the last {w:g}s, not logged one by one",
                n=n,
                kind=kind,
                key=key,
                w=self.window.window,
            )
            audit("refused_summary", kind=kind, peer=key, count=n, window=self.window.window)
        self.links.sweep(now)
        self.backoff.sweep(now)

    def stats(self) -> dict[str, Any]:
        return {
            "refusals": dict(self.refusals),
            "connections_by_address": len(self.connections.counts),
            "backoff_addresses": len(self.backoff.table),
            "tickets_delayed": self.backoff.delayed,
            "buffered_bytes": self.budget.total,
            "buffered_peak": self.budget.peak,
            "buffer_evictions": self.budget.evictions,
        }

"""Per-address bookkeeping against floods: concurrent connections, link rate, ticket backoff,
and one log line per address per window instead of one per refusal.

Everything here is plain data keyed by an address key and driven by a clock passed in
(`now` in seconds), so tests run it without time. Every table is bounded: idle entries
are forgotten, and past `max_addresses` the least recently seen address goes first.

An address key is the IPv4 address, or the /64 network of an IPv6 address (one host
usually owns a whole /64, so per-/128 limits would be no limit at all).
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

MAX_ADDRESSES = 65536  # per table: enough for any real crowd, a few MB at most


def address_key(host: str) -> str:
    """The key limits are counted under: IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 by /64."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host  # not an IP (a UNIX socket, a test transport): its own key
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Table(OrderedDict):
    """An LRU dict: `touch(key)` moves a key to the end; the oldest go past `limit`."""

    def __init__(self, limit: int = MAX_ADDRESSES) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str) -> None:
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class ConnectionCounter:
    """Concurrent connections per address; `acquire` says no past `limit` (0 = no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.counts: dict[str, int] = {}
        self.refused = 0

    def acquire(self, key: str) -> bool:
        n = self.counts.get(key, 0)
        if self.limit and n >= self.limit:
            self.refused += 1
            return False
        self.counts[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self.counts.get(key, 0) - 1
        if n > 0:
            self.counts[key] = n
        else:
            self.counts.pop(key, None)


class RateLimiter:
    """A token bucket per address: `burst` at once, refilled at `rate` a second (rate 0 = off)."""

    def __init__(self, rate: float, burst: float, max_addresses: int = MAX_ADDRESSES) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.buckets: _Table = _Table(max_addresses)  # key -> (tokens, when)
        self.refused = 0

    def allow(self, key: str, now: float) -> bool:
        if not self.rate:
            return True
        tokens, when = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - when) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        else:
            self.refused += 1
        self.buckets[key] = (tokens, now)
        self.buckets.touch(key)
        return ok

    def sweep(self, now: float) -> None:
        """Forget buckets that are full again (they would allow a whole burst anyway)."""
        if not self.rate:
            return
        full_after = self.burst / self.rate
        for key in [k for k, (_, when) in self.buckets.items() if now - when >= full_after]:
            del self.buckets[key]


@dataclass
class _Failures:
    count: int = 0  # wrong tickets seen
    pending: int = 0  # tickets waiting for (or in) their check: counted as failures for spacing
    next_check: float = 0.0  # the earliest moment the next ticket from here is checked
    last: float = 0.0


class TicketBackoff:
    """Failed tickets slow down their own address, and only it.

    Every ticket from an address takes a time slot: the first `free` ones follow each
    other at once, then each waits `base` * 2**(n - free) seconds after the one before
    (at most `cap`), n counting the failures so far and the tickets still being checked,
    so parallel guesses are serialised as well as sequential ones. A ticket that would
    wait more than `max_wait` is refused without being decrypted. A right ticket clears
    the address. An address idle for `forget_after` is forgotten. cap 0 turns it off.
    """

    def __init__(
        self,
        cap: float,
        base: float = 0.5,
        free: int = 3,
        max_wait: float = 10.0,
        forget_after: float = 600.0,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.cap, self.base, self.free, self.max_wait, self.forget_after = cap, base, free, max_wait, forget_after
        self.table: _Table = _Table(max_addresses)
        self.delayed = 0
        self.refused = 0

    def interval(self, attempts: int) -> float:
        """The pause after the `attempts`-th ticket that may be wrong, before the next one."""
        if not self.cap or attempts < self.free:
            return 0.0
        return min(self.cap, self.base * 2.0 ** (attempts - self.free))

    def reserve(self, key: str, now: float) -> float | None:
        """Seconds to wait before checking this ticket (0 = now), or None: refuse it unchecked."""
        if not self.cap:
            return 0.0
        f = self.table.get(key)
        if f is not None and now - f.last > self.forget_after:
            f = None
        if f is None:
            f = self.table[key] = _Failures()
        self.table.touch(key)
        start = max(now, f.next_check)
        wait = start - now
        if wait > self.max_wait:
            self.refused += 1
            return None
        f.pending += 1
        f.last = now
        f.next_check = start + self.interval(f.count + f.pending)
        if wait > 0:
            self.delayed += 1
        return wait

    def failed(self, key: str, now: float) -> None:
        f = self.table.get(key) or _Failures()
        f.pending = max(0, f.pending - 1)
        f.count += 1
        f.last = now
        self.table[key] = f
        self.table.touch(key)

    def succeeded(self, key: str) -> None:
        self.table.pop(key, None)

    def failures(self, key: str) -> int:
        f = self.table.get(key)
        return f.count if f is not None else 0

    def sweep(self, now: float) -> None:
        for key in [k for k, f in self.table.items() if now - f.last > self.forget_after]:
            del self.table[key]


class LogWindow:
    """One log line per (address, kind) per window; the rest are counted and summed up.

    `first(key, kind, now)` is True for the first event of a window (log it). `due(now)`
    returns (key, kind, count) for windows that ended with events left unlogged, for one
    summary line each.
    """

    def __init__(self, window: float, max_keys: int = MAX_ADDRESSES) -> None:
        self.window = window
        self.open: _Table = _Table(max_keys)  # (key, kind) -> [window start, suppressed]
        self._ended: list[tuple[str, str, int]] = []

    def first(self, key: str, kind: str, now: float) -> bool:
        if self.window <= 0:
            return True
        slot = self.open.get((key, kind))
        if slot is None or now - slot[0] >= self.window:
            if slot is not None and slot[1]:
                self._ended.append((key, kind, slot[1]))
            self.open[(key, kind)] = [now, 0]
            self.open.touch((key, kind))
            return True
        slot[1] += 1
        return False

    def due(self, now: float) -> list[tuple[str, str, int]]:
        out, self._ended = self._ended, []
        for k, (start, suppressed) in list(self.open.items()):
            if now - start >= self.window:
                del self.open[k]
                if suppressed:
                    out.append((k[0], k[1], suppressed))
        return out

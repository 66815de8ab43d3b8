"""Link keys made ahead of time in a thread: an RSA key costs milliseconds of CPU,
which a burst of links (a client opens four channels at once) would take from the reactor."""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from ..wire.ticket import LinkKey


class LinkKeyPool:
    """Keeps up to `size` fresh keys; each key serves exactly one link, as upstream. Keys are
    made in a thread of their own, so a burst of links never delays the codec pool."""

    def __init__(self, reactor: Any, size: int = 8) -> None:
        self.reactor, self.size = reactor, size
        self.pool: ThreadPool | None = None
        self.keys: deque[LinkKey] = deque()
        self._making = 0
        self.made_inline = 0
        self.taken = 0  # keys handed to links (each one an RSA key made)

    def take(self) -> LinkKey:
        self.taken += 1
        key = self.keys.popleft() if self.keys else None
        if key is None:
            self.made_inline += 1  # the pool ran dry (or has no thread): make one here
            key = LinkKey()
        self.refill()
        return key

    def start(self) -> None:
        if self.pool is None:
            self.pool = ThreadPool(1, 1, name="spice-link-keys")
            self.pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        self.refill()

    def stop(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            pool.stop()

    def refill(self) -> None:
        if self.pool is None:
            return
        while len(self.keys) + self._making < self.size:
            self._making += 1
            d = threads.deferToThreadPool(self.reactor, self.pool, LinkKey)
            d.addBoth(self._made)

    def _made(self, key: Any) -> None:
        self._making -= 1
        if isinstance(key, LinkKey):
            self.keys.append(key)

"""Runs encodes off the reactor thread: the reactor only parses, schedules and writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.python.threadpool import ThreadPool

# Below this many bytes of pixels the thread hand-off costs more than the encode itself.
INLINE_LIMIT = 64 * 1024


class Encoder:
    """A small thread pool (numpy and the codecs release the GIL while they work)."""

    def __init__(self, reactor: Any, threads_max: int = 2) -> None:
        self.reactor = reactor
        self.pool = ThreadPool(1, threads_max, name="spice-encode")
        self._started = False

    def start(self) -> None:
        if not self._started:
            self.pool.start()
            self._started = True
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.pool.stop()

    def run(self, fn: Callable[[], bytes], size_hint: int) -> Deferred[bytes] | bytes:
        """Encode inline when small (returns bytes), else in the pool (returns a Deferred)."""
        if size_hint < INLINE_LIMIT or not self._started:
            return fn()
        return threads.deferToThreadPool(self.reactor, self.pool, fn)

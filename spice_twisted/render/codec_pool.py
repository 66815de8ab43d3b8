"""The codec lanes: encodes run here, off the reactor thread, in commit order.

The reactor only schedules: each drawable's encodes are submitted when it is
committed, in commit order, to threads of their own (link RSA keys have another),
and the codecs release the GIL while they work. Only encodes smaller than the
codec's measured inline threshold run on the reactor, where a thread hand-off
would cost more than the encode (codecs.INLINE_PIXELS).

Two kinds of lane. `CodecPool` is the parallel lane for stateless codecs (bitmap,
LZ4, JPEG, QUIC, LZ): up to two threads, so two encodes may finish in either order,
which is harmless when no image depends on another. `OrderedLane` is the one lane
for a codec with a dictionary (GLZ): one thread, and an inline encode only while
nothing is queued, so its encodes start *and complete* in submission order, and the
results reach the reactor in that order too (callFromThread is FIFO).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .. import codecs
from ..codecs.glz import INLINE_PIXELS as GLZ_INLINE_PIXELS

if TYPE_CHECKING:
    from .counters import RenderCounters
    from .drawable import Drawable

# The answer of one encode: the payload, or None when it failed or was skipped.
Done = Callable[["codecs.Payload | None"], None]


class CodecPool:
    log = Logger()
    name = "spice-codec"

    def __init__(self, reactor: Any, counters: RenderCounters, threads_max: int = 2) -> None:
        self.reactor = reactor
        self.counters = counters
        self.pool = ThreadPool(1, threads_max, name=self.name)
        self.started = False
        self.threaded = 0  # encodes handed to the threads (the rest ran inline)
        self.skipped = 0  # of those, not run: no pipe held the drawable any more
        self.pending = 0  # handed to the threads and not answered yet

    def start(self) -> None:
        if not self.started:
            self.pool.start()
            self.started = True
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.pool.stop()

    def runs_inline(self, drawable: Drawable, codec: str) -> bool:
        return not self.started or drawable.rect.area < codecs.INLINE_PIXELS.get(codec, GLZ_INLINE_PIXELS)

    def submit(
        self, drawable: Drawable, codec: str, pixels: np.ndarray, done: Done, encode: Callable[[], codecs.Payload] | None = None
    ) -> None:
        """Encode now (small, or no threads: tests on a fake clock) or in a thread; `done`
        gets the payload (None: failed or skipped) on the reactor. `encode` replaces the
        plain `codecs.encode(codec, pixels)` (a stateful codec's job)."""
        job = encode if encode is not None else (lambda: codecs.encode(codec, pixels))
        if self.runs_inline(drawable, codec):
            try:
                payload = job()
            except Exception:
                self._failed(Failure(), drawable, codec, done)
                return
            self._done(payload, drawable, codec, done)
            return
        self.threaded += 1
        self.pending += 1
        d = threads.deferToThreadPool(self.reactor, self.pool, _encode_if_held, drawable, job)
        d.addCallbacks(self._answered, self._answered_failure, callbackArgs=(drawable, codec, done), errbackArgs=(drawable, codec, done))

    def _answered(self, payload: codecs.Payload | None, drawable: Drawable, codec: str, done: Done) -> None:
        self.pending -= 1
        self._done(payload, drawable, codec, done)

    def _answered_failure(self, failure: Failure, drawable: Drawable, codec: str, done: Done) -> None:
        self.pending -= 1
        self._failed(failure, drawable, codec, done)

    def _done(self, payload: codecs.Payload | None, drawable: Drawable, codec: str, done: Done) -> None:
        if payload is None:
            self.skipped += 1  # every pipe had dropped it before its turn came
        else:
            self.counters.encoded(codec.split(":")[0])  # a GLZ generation's images count as "glz"
        done(payload)

    def _failed(self, failure: Failure, drawable: Drawable, codec: str, done: Done) -> None:
        self.counters.encode_errors += 1
        self.log.failure("{codec} encode of drawable {id} failed", failure, codec=codec, id=drawable.id)
        done(None)


class OrderedLane(CodecPool):
    """The one lane of a dictionary codec: encodes start and complete in submission order.

    One thread runs the jobs one after the other; a small encode runs inline only while
    no job is queued, so it cannot overtake one."""

    name = "spice-glz"

    def __init__(self, reactor: Any, counters: RenderCounters, name: str | None = None) -> None:
        super().__init__(reactor, counters, threads_max=1)
        if name is not None:
            self.name = name
            self.pool.name = name

    def runs_inline(self, drawable: Drawable, codec: str) -> bool:
        return not self.started or (self.pending == 0 and drawable.rect.area < codecs.INLINE_PIXELS.get(codec, GLZ_INLINE_PIXELS))


def _encode_if_held(drawable: Drawable, job: Callable[[], codecs.Payload]) -> codecs.Payload | None:
    """In a codec thread: a queued job whose drawable every pipe has dropped meanwhile
    (a client far behind collapsed it) is skipped, not encoded for nobody."""
    if drawable.refs <= 0:
        return None
    return job()

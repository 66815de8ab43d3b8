"""The codec pool: encodes run here, in commit order, off the reactor thread.

The reactor only schedules: each drawable's encodes are submitted when it is
committed, in commit order, to a thread pool of their own (link RSA keys have
another), and the codecs release the GIL while they work. Only encodes smaller
than the codec's measured inline threshold run on the reactor, where a thread
hand-off would cost more than the encode (codecs.INLINE_PIXELS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from twisted.internet import threads
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from .. import codecs

if TYPE_CHECKING:
    from .drawable import Drawable
    from .service import RenderCounters


class CodecPool:
    log = Logger()

    def __init__(self, reactor: Any, counters: RenderCounters, threads_max: int = 2) -> None:
        self.reactor = reactor
        self.counters = counters
        self.pool = ThreadPool(1, threads_max, name="spice-codec")
        self.started = False
        self.threaded = 0  # encodes handed to the threads (the rest ran inline)
        self.skipped = 0  # of those, not run: no pipe held the drawable any more

    def start(self) -> None:
        if not self.started:
            self.pool.start()
            self.started = True
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self.started:
            self.started = False
            self.pool.stop()

    def submit(self, drawable: Drawable, codec: str, pixels: np.ndarray) -> None:
        """Encode now (small, or no threads: tests on a fake clock) or in the pool."""
        if not self.started or drawable.rect.area < codecs.INLINE_PIXELS[codec]:
            try:
                payload = codecs.encode(codec, pixels)
            except Exception:
                self._failed(Failure(), drawable, codec)
                return
            self._done(payload, drawable, codec)
            return
        self.threaded += 1
        d = threads.deferToThreadPool(self.reactor, self.pool, _encode_if_held, drawable, codec, pixels)
        d.addCallbacks(self._done, self._failed, callbackArgs=(drawable, codec), errbackArgs=(drawable, codec))

    def _done(self, payload: codecs.Payload | None, drawable: Drawable, codec: str) -> None:
        if payload is None:
            self.skipped += 1  # every pipe had dropped it before its turn came
        else:
            self.counters.encoded(codec)
        drawable.encoded(codec, payload)

    def _failed(self, failure: Failure, drawable: Drawable, codec: str) -> None:
        self.counters.encode_errors += 1
        self.log.failure("{codec} encode of drawable {id} failed", failure, codec=codec, id=drawable.id)
        drawable.encoded(codec, None)


def _encode_if_held(drawable: Drawable, codec: str, pixels: np.ndarray) -> codecs.Payload | None:
    """In a codec thread: a queued job whose drawable every pipe has dropped meanwhile
    (a client far behind collapsed it) is skipped, not encoded for nobody."""
    if drawable.refs <= 0:
        return None
    return codecs.encode(codec, pixels)

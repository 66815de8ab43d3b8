"""Send turns: a cooperative scheduler that runs each ready worker's bounded step later.

The render service's frame only enqueues into every display pipe and wakes the pipe's
channel here; marshalling and writing happen in the send turns that follow, each
worker a bounded step per visit, visited in the order they woke. So the reactor time
inside a frame does not grow with the number of clients, and a client with much to
send (or a slow one) gets its share per turn instead of holding the frame or the
others. A turn ends after TURN_BUDGET seconds; the workers not visited yet go first in
the next one, after the reactor has done its I/O (callLater(0)). Nothing here knows
of channels or sockets: a worker is anything with `run_turn()`.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

TURN_BUDGET = 0.005  # seconds of one reactor turn the send turns may take before yielding


class Worker(Protocol):
    def run_turn(self) -> bool:
        """Do one bounded step; True while more is ready (visit again next turn)."""
        ...


class SendTurns:
    def __init__(self, reactor: Any, budget: float = TURN_BUDGET) -> None:
        self.reactor = reactor
        self.budget = budget
        self._ready: dict[Worker, None] = {}  # an ordered set: the order they woke
        self._call: Any = None
        self.turns = 0  # reactor turns that ran workers (stats, tests)
        self.visits = 0  # worker steps run

    def __len__(self) -> int:
        return len(self._ready)

    def wake(self, worker: Worker) -> None:
        """`worker` has work: visit it in the next send turn (once, however often it is woken)."""
        self._ready[worker] = None
        if self._call is None:
            self._call = self.reactor.callLater(0, self._turn)

    def discard(self, worker: Worker) -> None:
        self._ready.pop(worker, None)

    def _turn(self) -> None:
        self._call = None
        self.turns += 1
        order, self._ready = list(self._ready), {}
        deadline = time.perf_counter() + self.budget
        for i, worker in enumerate(order):
            self.visits += 1
            if worker.run_turn():
                self._ready[worker] = None  # more to send: after the others, next turn
            if time.perf_counter() > deadline and i + 1 < len(order):
                # Out of time: the rest go first next turn, after the reactor's I/O.
                self._ready = {**dict.fromkeys(order[i + 1 :]), **self._ready}
                break
        if self._ready and self._call is None:
            self._call = self.reactor.callLater(0, self._turn)

    def stop(self) -> None:
        """Forget every pending visit (the service stops)."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._ready.clear()

    def run_now(self, max_turns: int = 1000) -> None:
        """Run the pending turns now (a harness's or test's flush), at most `max_turns`."""
        for _ in range(max_turns):
            if not self._ready:
                break
            if self._call is not None:
                self._call.cancel()
                self._call = None
            self._turn()

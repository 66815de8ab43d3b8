"""A frame only commits and enqueues: every client's marshal and write come after it (issue 18).

In process, over Twisted's in-memory transports: 32 display clients, one frame. Counted
at boundaries the test owns: the transports' write calls and the channels' marshal calls
made while the frame runs (the pacer's frame callable, wrapped), and the pipes' pushes.
What crosses each transport afterwards is decoded and must equal the surface.
"""

from __future__ import annotations

import numpy as np
from support.inprocess import Reader, make_server, open_display, stripes

from spice_twisted.render.rect import Rect

N = 32


class FrameWork:
    """Counts the work done inside the frame's call stack, per kind."""

    def __init__(self, srv, readers: list[Reader]) -> None:
        self.in_frame = False
        self.counts = {"marshal": 0, "write": 0, "push": 0}
        frame = srv.render.pacer.run_frame

        def counted_frame() -> None:
            self.in_frame = True
            try:
                frame()
            finally:
                self.in_frame = False

        srv.render.pacer.run_frame = counted_frame
        for r in readers:
            self._wrap(r.cc, "marshal", "marshal")
            self._wrap(r.cc.pipe, "push", "push")
            self._wrap(r.t, "write", "write")
            self._wrap(r.t, "writeSequence", "write")

    def _wrap(self, obj, name: str, kind: str) -> None:
        real = getattr(obj, name)

        def counted(*a, **kw):
            if self.in_frame:
                self.counts[kind] += 1
            return real(*a, **kw)

        setattr(obj, name, counted)


def one_frame(n: int) -> tuple[dict[str, int], list[Reader], object]:
    srv = make_server()
    readers = [Reader(*open_display(srv)) for _ in range(n)]
    for r in readers:
        r.catch_up(srv)
    work = FrameWork(srv, readers)
    for k, rect in enumerate((Rect(0, 0, 60, 40), Rect(100, 50, 180, 90), Rect(70, 10, 90, 30))):
        stripes(srv, rect, 40 + 30 * k, flush=False)
    srv.render.pacer.run_now()  # the frame, and nothing after it
    return work.counts, readers, srv


def test_32_clients_cost_the_frame_only_their_enqueue():
    one, _, _ = one_frame(1)
    many, readers, srv = one_frame(N)
    drawables = one["push"]
    assert drawables >= 1  # the 3 rects, as the damage planner merged them
    # The enqueue grows with the clients: one push per client per drawable ...
    assert many["push"] == N * drawables
    # ... and nothing else in the frame does: no client is marshalled or written to.
    assert many["marshal"] == one["marshal"] == 0, many
    assert many["write"] == one["write"] == 0, many
    # The sends follow in the next reactor turns; every client gets the frame.
    assert all(r.t.value() == b"" for r in readers)
    srv.reactor.advance(0)
    for r in readers:
        drawn = r.screen.draws
        r.catch_up(srv)
        assert r.screen.draws > drawn
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_each_client_is_sent_to_in_its_own_turn_and_a_full_one_delays_nobody():
    srv = make_server()
    readers = [Reader(*open_display(srv)) for _ in range(8)]
    for r in readers:
        r.catch_up(srv)
    slow = readers[3]
    slow.cc.pauseProducing()  # its socket buffer is full (Twisted would pause it so)
    turns = srv.render.sends
    turns.budget = 0.0  # one client per reactor turn: the reactor does its I/O between clients
    before = turns.turns
    stripes(srv, Rect(10, 10, 120, 70), 90, flush=False)
    srv.render.pacer.run_now()
    assert all(r.t.value() == b"" for r in readers)  # the frame wrote nothing
    srv.reactor.advance(0)
    assert turns.turns - before == len(readers)  # one turn per client that had work
    for r in readers:
        if r is slow:
            assert r.read() == []  # paused: nothing written, and it held up no one
            continue
        r.catch_up(srv)
        assert np.array_equal(r.screen.fb[..., :3], srv.render.primary.pixels[..., :3])
    slow.cc.resumeProducing()  # its socket drained
    slow.catch_up(srv)
    assert np.array_equal(slow.screen.fb[..., :3], srv.render.primary.pixels[..., :3])


def test_send_turns_visit_in_wake_order_and_a_busy_worker_goes_after_the_others():
    from twisted.internet.task import Clock

    from spice_twisted.turns import SendTurns

    clock = Clock()
    turns = SendTurns(clock, budget=0.0)  # one visit per reactor turn
    visits: list[str] = []

    class Worker:
        def __init__(self, name: str, steps: int) -> None:
            self.name, self.steps = name, steps

        def run_turn(self) -> bool:
            visits.append(self.name)
            self.steps -= 1
            return self.steps > 0

    busy, a, b = Worker("busy", 3), Worker("a", 1), Worker("b", 1)
    for w in (busy, a, b, a):  # woken twice, visited once
        turns.wake(w)
    assert visits == []  # nothing runs where the work was made
    clock.advance(0)
    assert visits == ["busy", "a", "b", "busy", "busy"]
    assert turns.turns == 5 and len(turns) == 0

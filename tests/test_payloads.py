"""The payload service: one encode per (drawable, codec), lanes by codec, drops, lifetime.

The ordered lane runs in real threads here: a dictionary codec's encodes must start and
complete in commit order even when an earlier image takes longer to encode than a later one.
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np
import pytest

from spice_twisted import codecs
from spice_twisted.codecs import video
from spice_twisted.codecs.bitmap import encode as bitmap_encode
from spice_twisted.render.drawable import Drawable
from spice_twisted.render.payloads import PayloadService
from spice_twisted.render.rect import Rect
from spice_twisted.render.service import RenderCounters


class ThreadReactor:
    """Just what a codec lane needs of a reactor: results come back through a queue the test pumps."""

    def __init__(self) -> None:
        self.calls: queue.Queue = queue.Queue()

    def callFromThread(self, fn, *args, **kw) -> None:  # noqa: N802 (Twisted's name)
        self.calls.put((fn, args, kw))

    def addSystemEventTrigger(self, *args) -> None:  # noqa: N802
        pass

    def pump(self, until, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            fn, args, kw = self.calls.get(timeout=max(0.01, deadline - time.monotonic()))
            fn(*args, **kw)


def _drawables(service: PayloadService, n: int, side: int = 200) -> list[Drawable]:
    out = []
    for i in range(n):
        px = np.full((side, side, 4), i, np.uint8)
        d = Drawable(0, 0, Rect(0, 0, side, side), px, service)
        d.hold()
        out.append(d)
    return out


@pytest.fixture
def slow_dictionary_codec(monkeypatch):
    """A "glz" whose first images take longest: in a parallel lane they would finish last."""
    started: list[int] = []
    lock = threading.Lock()

    def encode(pixels):
        value = int(pixels[0, 0, 0])
        with lock:
            started.append(value)
        time.sleep(0.02 * max(0, 5 - value))
        return bitmap_encode(pixels)

    monkeypatch.setitem(codecs.ENCODERS, "glz", encode)
    monkeypatch.setitem(codecs.INLINE_PIXELS, "glz", 64 * 64)
    return started


def test_the_ordered_lane_starts_and_completes_in_commit_order(slow_dictionary_codec):
    reactor = ThreadReactor()
    service = PayloadService(reactor, RenderCounters())
    service.start()
    try:
        ds = _drawables(service, 8)
        small = Drawable(0, 0, Rect(0, 0, 8, 8), np.full((8, 8, 4), 8, np.uint8), service)  # inline-sized
        small.hold()
        ds.append(small)
        done: list[int] = []
        for i, d in enumerate(ds):
            d.request("glz")
            d.when_ready("glz", lambda i=i: done.append(i))
        reactor.pump(lambda: len(done) == len(ds))
        assert slow_dictionary_codec == list(range(len(ds)))  # started in commit order, one at a time
        assert done == list(range(len(ds)))  # and completed in it: the small one did not overtake
        assert service.ordered.threaded == len(ds) and service.pool.threaded == 0
    finally:
        service.stop()


def test_a_streams_tiers_encode_in_parallel_each_in_order():
    """A stream's full and low tiers have a video lane each: the low tier's frame is encoded
    while the full tier's is (here each waits for the other to start: one lane for both
    would never let them meet), and within a tier the frames complete in order."""
    reactor = ThreadReactor()
    service = PayloadService(reactor, RenderCounters())
    service.start()
    meet = threading.Barrier(2, timeout=10)
    order: dict[str, list[int]] = {video.VP9: [], video.VP9_LOW: []}

    def job(tier: str, i: int, px: np.ndarray):
        def run():
            if i == 0:
                meet.wait()  # raises BrokenBarrierError (a failed encode) if the other never starts
            time.sleep(0.01 * (3 - i))  # earlier frames take longer
            order[tier].append(i)
            return bitmap_encode(px)

        return run

    try:
        ds = _drawables(service, 3)
        done: list[tuple[str, int]] = []
        for i, d in enumerate(ds):
            for tier in (video.VP9, video.VP9_LOW):
                service.request(d, tier, job=job(tier, i, d.pixels))
                d.when_ready(tier, lambda tier=tier, i=i: done.append((tier, i)))
        reactor.pump(lambda: len(done) == 6)
        assert all(d.payload(t) is not None for d in ds for t in order), "an encode failed: the tiers never ran together"
        assert order == {video.VP9: [0, 1, 2], video.VP9_LOW: [0, 1, 2]}
        assert [i for t, i in done if t == video.VP9] == [0, 1, 2] and [i for t, i in done if t == video.VP9_LOW] == [0, 1, 2]
        assert sorted(service.video) == sorted(order) and all(lane.threaded == 3 for lane in service.video.values())
    finally:
        service.stop()


def test_one_encode_per_codec_and_the_entry_goes_with_the_last_holder(monkeypatch):
    calls: list[str] = []
    real = codecs.ENCODERS["lz4"]
    monkeypatch.setitem(codecs.ENCODERS, "lz4", lambda px: calls.append("lz4") or real(px))
    service = PayloadService(ThreadReactor(), RenderCounters())  # not started: inline
    (d,) = _drawables(service, 1)
    d.hold()  # two pipes hold it
    for _ in range(3):
        d.request("lz4")
    assert calls == ["lz4"] and d.payload("lz4") is not None and len(service) == 1
    d.dropped(7)  # one pipe drops it unsent
    assert d.dropped_by == {7} and d.payload("lz4") is not None
    d.release()  # the other sends it
    assert len(service) == 0 and d.pixels is None and d.payload("lz4") is None
    d.request("lz4")  # a late ask makes no entry and no encode
    assert len(service) == 0 and calls == ["lz4"] and service.failed(d, "lz4")


def test_a_failed_encode_is_remembered_and_answers_its_waiters(monkeypatch):
    def broken(px):
        raise RuntimeError("codec exploded")

    monkeypatch.setitem(codecs.ENCODERS, "lz4", broken)
    counters = RenderCounters()
    service = PayloadService(ThreadReactor(), counters)
    (d,) = _drawables(service, 1)
    woken = []
    d.when_ready("lz4", lambda: woken.append(1))
    assert woken == [1] and service.failed(d, "lz4") and counters.encode_errors == 1
    d.request("lz4")
    assert counters.encode_errors == 1  # not tried again

"""Frame pacing: run a frame soon after damage arrives, but at most `max_fps` times a second.

Sources and input handlers only change pixels and mark damage; whatever piles up
between two frames becomes one frame's drawables. An idle display schedules
nothing; the first damage after a pause is served at once (no added latency).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

DEFAULT_MAX_FPS = 30.0


class FramePacer:
    def __init__(self, reactor: Any, max_fps: float, run_frame: Callable[[], None]) -> None:
        if max_fps <= 0:
            raise ValueError("max_fps must be positive")
        self.reactor = reactor
        self.interval = 1.0 / max_fps
        self.run_frame = run_frame
        self._call: Any = None
        self._last = float("-inf")
        self.frames = 0

    @property
    def pending(self) -> bool:
        return self._call is not None

    def request(self) -> None:
        """Damage arrived: make sure a frame will run (once) when the pace allows."""
        if self._call is not None:
            return
        delay = max(0.0, self._last + self.interval - self.reactor.seconds())
        self._call = self.reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._last = self.reactor.seconds()
        self.frames += 1
        self.run_frame()

    def run_now(self) -> None:
        """Run the pending frame at once (tests, harness, a resize)."""
        if self._call is not None:
            self._call.cancel()
            self._fire()

    def stop(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None

"""`x11[:DISPLAY]`: a running X display (Xorg, Xvfb, an xrdp session) served to every client.

The display is checked when the source is made (so a missing extension is a usage
error, never a traceback), then left alone until the server starts. At start a
capture thread (x11_capture.py) connects, reads what X reports damaged and hands
it to the reactor through `FrameHandoff`; input goes back through XTEST on a second
connection owned by the reactor thread (x11_input.py). A watch every half second
tells the thread whether anyone is connected (nothing is read otherwise) and
releases what clients that went away still held down. The clipboard and RandR resize
for the server's agent are `X11Agent` (x11_agent.py), on a third connection the
capture thread opens and the reactor reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import task
from twisted.logger import Logger

from ..render.handoff import FrameHandoff
from .audio_monitor import desktop_sound
from .base import DisplaySource
from .x11_agent import X11Agent
from .x11_capture import CaptureThread
from .x11_conn import XDisplay, XUnavailable, XUnsuitable, connect, display_name, lost
from .x11_input import XInjector

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..inputs import InputOrigin
    from ..render.cursor import CursorService
    from ..render.service import RenderService

WATCH_INTERVAL = 0.5  # how often the reactor checks who is connected
RETRY_SECONDS = 3.0


class X11Source(DisplaySource):
    accepts_absolute = True
    log = Logger()

    def __init__(self, display: str | None = None, retry: float = RETRY_SECONDS) -> None:
        try:
            self.display = display_name(display)  # its errors name the option already
        except XUnsuitable as exc:
            raise ValueError(str(exc)) from None
        try:
            x = connect(self.display)
        except (XUnavailable, XUnsuitable) as exc:
            given = f"x11:{display}" if display else f"x11 ($DISPLAY={self.display})"
            raise ValueError(f"--source {given}: {exc}") from None
        self.width, self.height = x.width, x.height
        self.extensions = dict(x.extensions)
        x.close()  # the server may fork (twistd daemonises) before it starts
        self.name = f"x11:{self.display}"
        self.retry = retry
        self.exit_on_loss = False
        # A hook for the server: told the X lock LEDs (1 scroll, 2 num, 4 caps) when X changes
        # them, so every client's LEDs follow. Nothing in the source API sets it yet.
        self.render: RenderService | None = None
        self.capture: CaptureThread | None = None
        self.input: XInjector | None = None
        self.available = False
        self.x_lock_state = 0
        self.keymap_source = ""
        self.released = 0  # keys and buttons released for clients that went away
        self._watch: task.LoopingCall | None = None
        self._lost_logged = False
        self.oversized: tuple[int, int] | None = None  # the X screen's size while past --max-surface
        self.agent = X11Agent(self.display, bool(self.extensions.get("RANDR")))
        # The desktop's sound (a PulseAudio/PipeWire monitor) when a sound server is there;
        # the server plays it (unless --audio-source says otherwise).
        self.sounds = desktop_sound(self.log)

    # --- life ------------------------------------------------------------------------------
    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render, self.cursor = render, cursor
        self.bind_bound(render)
        self.reactor = render.reactor
        self.handoff = FrameHandoff(self.reactor, render, cursor)
        fps = 1.0 / render.pacer.interval
        self.capture = CaptureThread(
            self.display,
            self.handoff,
            fps,
            self.reactor.callFromThread,
            self,
            (render.width, render.height),
            retry=self.retry,
            bound=self.max_surface,
        )
        self.capture.start()
        self._watch = task.LoopingCall(self.watch)
        self._watch.clock = self.reactor
        self._watch.start(WATCH_INTERVAL, now=True)

    def stop(self) -> None:
        if self._watch is not None and self._watch.running:
            self._watch.stop()
        if self.capture is not None:
            self.capture.stop()
        self._drop_input()
        self.agent.detach()

    def desktop_agent(self) -> X11Agent:
        return self.agent

    def watch(self) -> None:
        """Who watches decides whether X is read."""
        if self.render is None or self.capture is None:
            return
        sinks = list(self.render.sinks) + list(self.cursor.sinks)
        self.capture.set_active(bool(sinks), self.paused)

    def client_gone(self, origin: InputOrigin) -> None:
        """Release what the departed client held (a key another client holds stays down)."""
        if self.input is None:
            return
        n = self.input.release_all(origin.session_id)
        if n:
            self.released += n
            self.log.info("released {n} keys/buttons held by client {sid:#x}, which left", n=n, sid=origin.session_id)

    # --- told by the capture thread (on the reactor) ---------------------------------------
    def x_connected(self, x: XDisplay, keymap: dict[int, int], how: str, bits: dict[str, int], locks: int, shm: bool) -> None:
        """The capture thread (re)connected; `x` is the input connection, ours from now on."""
        self._drop_input()
        if self.capture is None or self.capture.stopping:
            x.close()
            return
        self.input = XInjector(x.conn, x.root, keymap, bits, self._input_error)
        self.keymap_source = how
        self.available = True
        self.x_lock_state = locks
        how_read = "MIT-SHM" if shm else "GetImage (no MIT-SHM)"
        if self._lost_logged:
            self.log.info("X display {d} is back ({w}x{h}), serving it again", d=self.display, w=x.width, h=x.height)
            if self.notify_clients is not None:
                self.notify_clients(f"the X display {self.display} is back")
        else:
            self.log.info(
                "X display {d}: {w}x{h}, read through {how}, keymap from {km}", d=self.display, w=x.width, h=x.height, how=how_read, km=how
            )
        self._lost_logged = False
        if self.report_locks is not None:
            self.report_locks(locks)

    def x_agent_connected(self, x: XDisplay) -> None:
        """The agent's connection, made by the capture thread with the input one."""
        if self.capture is None or self.capture.stopping:
            x.close()
            return
        self.agent.bound = self.max_surface
        self.agent.attach(x, self.reactor)

    def x_lost(self, reason: str) -> None:
        self.available = False
        self._drop_input()
        self.agent.detach()
        if self.exit_on_loss:
            self.log.error("{reason}: exiting (--exit-on-x-loss)", reason=reason)
            if self.reactor.running:
                self.reactor.stop()
            return
        if not self._lost_logged:
            self._lost_logged = True
            if self.notify_clients is not None:
                self.notify_clients(f"the X display {self.display} is unavailable; retrying every {self.retry:g} s")
            self.log.warn("{reason}; clients see a 'display unavailable' frame; retrying every {s:g} s", reason=reason, s=self.retry)

    def x_oversized(self, width: int, height: int, served_w: int, served_h: int) -> None:
        """The X screen grew past --max-surface: its top-left part is served (told once a size)."""
        if self.oversized == (width, height):
            return
        self.oversized = (width, height)
        why = self.max_surface.refusal(f"the X display {self.display}", width, height)
        self.log.warn("{why}: serving its top-left {w}x{h}", why=why, w=served_w, h=served_h)
        if self.notify_clients is not None:
            self.notify_clients(f"{why}: you see its top-left {served_w}x{served_h}")

    def x_fits(self) -> None:
        """The X screen fits --max-surface again: served whole."""
        self.oversized = None
        self.log.info("X display {d} fits --max-surface again: serving all of it", d=self.display)

    def x_keymap(self, keymap: dict[int, int], how: str, bits: dict[str, int]) -> None:
        """X has a new keyboard mapping."""
        self.keymap_source = how
        if self.input is not None:
            self.input.keymap, self.input.indicators = keymap, bits

    def x_locks(self, state: int) -> None:
        """X's lock LEDs changed (a key typed in X, xdotool, a client's toggle)."""
        if state != self.x_lock_state:
            self.x_lock_state = state
            if self.report_locks is not None:
                self.report_locks(state)

    def x_log(self, message: str, error: bool = False) -> None:
        (self.log.error if error else self.log.info)("{m}", m=message)

    def _input_error(self, exc: BaseException) -> None:
        if lost(exc):
            self._drop_input()  # the capture thread sees the loss too, and reconnects
        else:
            self.log.failure("X input failed", None)

    def _drop_input(self) -> None:
        if self.input is not None:
            self.input.close()
            self.input = None

    # --- input from clients (the reactor) --------------------------------------------------
    def _send(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Input into X; an X error never reaches the client's inputs channel."""
        if self.input is None:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if lost(exc):
                self._drop_input()  # the capture thread sees the loss too, and reconnects
            else:
                self.log.failure("X input failed", None)
            return None

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None:
        if self.input is not None:
            self._send(self.input.move, x, y)

    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None:
        if self.input is not None:
            self._send(self.input.button, origin.session_id, button, pressed, x, y)

    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None:
        if self.input is not None:
            self._send(self.input.key, origin.session_id, key, pressed)

    def locks(self, modifiers: int) -> None:
        if self.input is not None:
            state = self._send(self.input.set_locks, modifiers & 7)
            if state is not None:
                self.x_lock_state = state

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "display": self.display,
            "available": self.available,
            "keymap": self.keymap_source,
            "x_locks": self.x_lock_state,
            "released_for_departed": self.released,
            "oversized": list(self.oversized) if self.oversized else None,
        }
        if self.capture is not None:
            d["capturing"] = self.capture.capturing
            d["capture"] = self.capture.stats.as_dict()
        if self.input is not None:
            d["input"] = {"sent": self.input.sent, "unmapped": self.input.unmapped}
        d["agent"] = self.agent.describe()
        return d

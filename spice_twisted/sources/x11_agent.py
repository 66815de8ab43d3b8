"""The X11 source's side of the built-in agent: the X selections and the screen size.

The capture thread opens one more connection for it each time it (re)connects to X and
hands it over on the reactor (`attach`), as it does the input connection, so the reactor
never waits to connect. The reactor then reads that connection's events itself
(x11_clipboard.XEventReader); a lost connection is dropped until the capture thread
brings the next one. What clients copied is owned again on the new connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import xcffib
from twisted.logger import Logger

from .desktop_agent import PNG, SELECTIONS, TEXT, AgentSink, Contents, DesktopAgent
from .x11_clipboard import XClipboard, XEventReader
from .x11_resize import ResizeError, can_resize, resize_screen

if TYPE_CHECKING:
    from ..render.surface import SurfaceBound
    from .x11_conn import XDisplay


class X11Agent(DesktopAgent):
    """Clipboard (text and PNG, CLIPBOARD and PRIMARY) and RandR resize for one X display."""

    log = Logger()
    clipboard_types = frozenset({TEXT, PNG})

    def __init__(self, display: str, randr: bool, bound: SurfaceBound | None = None) -> None:
        self.display, self.bound = display, bound
        self.can_resize = randr
        self.sink: AgentSink | None = None
        self.x: XDisplay | None = None
        self.clipboard: XClipboard | None = None
        self.reader: XEventReader | None = None
        self.reactor: Any = None
        self.wanted: dict[str, Contents] = {}  # what clients copied and X should hold
        self.resizes = 0
        self.resize_refused = 0
        self.reported = 0

    # --- the server's calls -----------------------------------------------------------------
    def start_agent(self, sink: AgentSink) -> None:
        self.sink = sink

    def set_clipboard(self, selection: str, contents: Contents | None) -> None:
        if selection not in SELECTIONS:
            return
        if contents:
            self.wanted[selection] = contents
        else:
            self.wanted.pop(selection, None)
        if self.clipboard is not None:
            self._x_call(self.clipboard.set, selection, contents)

    def resize(self, width: int, height: int) -> None:
        if not self.can_resize or self.x is None:
            return
        if width < 1 or height < 1 or (self.bound is not None and not self.bound.allows(width, height)):
            self.resize_refused += 1
            self.log.info("a resize of X display {d} to {w}x{h} was refused: past --max-surface", d=self.display, w=width, h=height)
            return
        x = self.x
        try:
            self._x_call(resize_screen, x.conn, x.root, width, height)
            self.resizes += 1
        except (ResizeError, xcffib.Error) as exc:
            self.resize_refused += 1
            self.log.info("X display {d} cannot be resized to {w}x{h}: {exc}", d=self.display, w=width, h=height, exc=exc)

    # --- the connection ---------------------------------------------------------------------
    def attach(self, x: XDisplay, reactor: Any) -> None:
        """A new connection from the capture thread (on the reactor)."""
        self.detach()
        self.reactor, self.x = reactor, x
        try:
            self.clipboard = XClipboard(x.conn, x.root, reactor, self._report)
            if self.can_resize and not can_resize(x.conn, x.root):
                self.can_resize = False
                self.log.info("X display {d} has no RandR outputs: clients cannot resize it", d=self.display)
        except xcffib.XcffibException as exc:
            self.log.warn("X display {d}: no clipboard ({exc!r})", d=self.display, exc=exc)
            self.detach()
            return
        self.reader = XEventReader(x.conn, self.clipboard.handle, self._lost)
        reactor.addReader(self.reader)
        for selection, contents in self.wanted.items():
            self.clipboard.set(selection, contents)
        self._x_call(self.clipboard.take_current)  # what X held before (then the queued events)

    def detach(self) -> None:
        if self.reader is not None:
            self.reactor.removeReader(self.reader)
            self.reader.closed = True
            self.reader = None
        if self.clipboard is not None:
            self.clipboard.close()
            self.clipboard = None
        if self.x is not None:
            self.x.close()
            self.x = None

    def _lost(self, why: str) -> None:
        self.log.debug("X display {d}: the agent stops until X is back ({why})", d=self.display, why=why)
        self.detach()

    def _x_call(self, fn: Any, *args: Any) -> Any:
        """A call that talks to X, then the events it left queued are handled."""
        try:
            return fn(*args)
        except xcffib.ConnectionException as exc:
            self._lost(str(exc))
            return None
        finally:
            if self.reader is not None:
                self.reader.drain()

    def _report(self, selection: str, contents: Contents | None) -> None:
        """Another X client owns `selection` now (or nobody does)."""
        self.wanted.pop(selection, None)
        self.reported += 1
        if self.sink is not None:
            self.sink.desktop_clipboard(selection, contents)

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"resizes": self.resizes, "resize_refused": self.resize_refused, "clipboard_reports": self.reported}
        if self.clipboard is not None:
            d["clipboard"] = dict(self.clipboard.counters)
        return d

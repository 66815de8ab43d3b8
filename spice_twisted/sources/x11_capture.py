"""The capture thread: X damage in, changed pixels out through the frame hand-off.

One thread owns one X connection. It sleeps in select() on that connection and a
wake-up pipe; X tells it what changed:

- DAMAGE (report level NonEmpty on the root window): one event when the screen goes
  from clean to dirty. At most `fps` times a second the thread moves the damage into
  an XFIXES region (DamageSubtract), fetches its rectangles, merges them into a few,
  and reads just those: ShmGetImage into one shared memory segment (several requests
  in flight at once, each at its own offset), or plain GetImage without MIT-SHM. The
  pixels go to `FrameHandoff.publish`, which the reactor applies as one batch.
- XFIXES CursorNotify: the pointer's shape changed; QueryPointer at frame rate says
  where it is.
- ConfigureNotify on the root / RandR ScreenChangeNotify: a new screen size, which
  becomes a new primary surface (`FrameHandoff.resize`) and a full read.
- XKB: lock LEDs changed (IndicatorStateNotify) or a new keyboard (NewKeyboardNotify,
  MappingNotify): the keymap is rebuilt.

On each (re)connection the thread also opens the connections the reactor uses: input
(XTEST) and the agent's (selections, RandR resize; x11_agent.py).

While no client is connected the thread is *inactive*: it reads nothing (damage piles
up in the X server, for free) and blocks without a timeout. On becoming active it
reads the whole screen once. When the connection drops, it publishes a "display
unavailable" frame, tells the source, and tries to reconnect every `retry` seconds.
"""

from __future__ import annotations

import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import xcffib
import xcffib.damage
import xcffib.randr
import xcffib.shm
import xcffib.xfixes
import xcffib.xkb
import xcffib.xproto

from ..render.rect import Rect
from ..render.region import Region
from .base import message_frame
from .x11_conn import XDisplay, XUnavailable, XUnsuitable, connect, lost
from .x11_cursor import KEEP, CursorReader
from .x11_input import indicator_bits, lock_state, server_keymap
from .x11_shm import ShmSegment

if TYPE_CHECKING:
    from ..render.handoff import FrameHandoff
    from ..render.surface import SurfaceBound

MAX_READS = 16  # a frame's damage is read as at most this many rectangles
# The pointer is polled (QueryPointer) at frame rate while it moves, and this often once it
# has been still for POINTER_SETTLE seconds: an idle desktop costs a few wake-ups a second.
POINTER_IDLE_POLL = 0.2
POINTER_SETTLE = 2.0
PLAIN_BAND = 1 << 20  # plain GetImage reads at most this many bytes per request
ZPIXMAP = xcffib.xproto.ImageFormat.ZPixmap
ALL_PLANES = 0xFFFFFFFF
XKB_NEW_KEYBOARD, XKB_MAP, XKB_INDICATOR_STATE = 0, 1, 4


def unavailable_frame(width: int, height: int, display: str, retry: float) -> np.ndarray:
    """A plain frame saying the display is gone, (h, w, 4) B G R X."""
    return message_frame(width, height, [f"X display {display} is unavailable", f"retrying every {retry:g} s"], (40, 44, 52))


class CaptureStats:
    """Counters the source shows in its stats (written by the thread, read anywhere)."""

    def __init__(self) -> None:
        self.frames = 0  # damage reads
        self.rects = 0  # rectangles read
        self.pixels = 0  # pixels read
        self.read_s = 0.0  # time spent reading (X round trips and copies), seconds
        self.cpu_s = 0.0  # the capture thread's own CPU time so far, seconds
        self.full_reads = 0
        self.damage_events = 0
        self.cursor_images = 0
        self.cursor_unreadable = 0
        self.resizes = 0
        self.losses = 0
        self.reconnects = 0
        self.shm = False

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class _Pending:
    """What X said since it was last acted on."""

    damaged: bool = False
    cursor: bool = True
    size: bool = False
    keymap: bool = False
    locks: bool = False


class CaptureThread:
    """Runs the capture loop; `post(fn, *args)` runs fn on the reactor (callFromThread)."""

    def __init__(
        self,
        display: str,
        handoff: FrameHandoff,
        fps: float,
        post: Callable[..., None],
        events: Any,
        size: tuple[int, int],
        retry: float = 3.0,
        use_shm: bool = True,
        bound: SurfaceBound | None = None,
    ) -> None:
        self.display = display
        self.handoff = handoff
        self.interval = 1.0 / fps
        self.post = post
        self.events = events  # the source: x_connected / x_lost / x_keymap / x_locks / x_log
        self.size = size  # what is served: the screen, or its top-left part past `bound`
        self.screen = size  # the X screen's own size
        self.bound = bound  # --max-surface
        self._over = False  # the screen is past the bound (the source was told)
        self.retry = retry
        self.use_shm = use_shm
        self.stats = CaptureStats()
        self._active = False
        self._paused = False
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._thread = threading.Thread(target=self._run, name=f"x11-capture {display}", daemon=True)
        self._x: XDisplay | None = None
        self._shm: ShmSegment | None = None
        self._shmseg = 0

    # --- the reactor's side ----------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def set_active(self, active: bool, paused: bool = False) -> None:
        """Capture only while someone watches (`active`) and the source is not paused."""
        if (active, paused) != (self._active, self._paused):
            self._active, self._paused = active, paused
            self._wake()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def capturing(self) -> bool:
        return self._active and not self._paused

    # --- the thread ------------------------------------------------------------------------
    def _run(self) -> None:
        first = True
        while not self._stopping:
            try:
                x = connect(self.display)
            except (XUnavailable, XUnsuitable) as exc:
                if first:
                    self._unavailable(str(exc))
                    first = False
                self._sleep(self.retry)
                continue
            if not first:
                self.stats.reconnects += 1
            first = False
            try:
                self._serve(x)
            except Exception as exc:
                if self._stopping:
                    break
                if lost(exc):
                    self.stats.losses += 1
                    self._unavailable(f"the connection to X display {self.display!r} was lost")
                else:  # a bug or an unexpected X reply: say so, start over
                    self.post(self.events.x_log, f"X capture failed: {exc!r}; reconnecting", True)
                    self._unavailable(f"X capture failed: {exc}")
                self._sleep(self.retry)
            finally:
                self._release(x)

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            select.select([self._wake_r], [], [], left)
            self._drain_wake()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _unavailable(self, reason: str) -> None:
        """Clients keep their connection and see a frame that says what is going on."""
        w, h = self.size
        self.handoff.publish(Rect(0, 0, w, h), unavailable_frame(w, h, self.display, self.retry))
        self.handoff.cursor_hide()
        self.post(self.events.x_lost, reason)

    def _release(self, x: XDisplay) -> None:
        if self._shm is not None:
            x.close()  # the server detaches the segment with the connection
            self._shm.close()
            self._shm = None
        else:
            x.close()
        self._x = None

    def _setup_shm(self, x: XDisplay, size: int) -> bool:
        """A segment of `size` bytes attached on both sides; False: use plain GetImage."""
        if not (self.use_shm and x.has("MIT-SHM")):
            return False
        shm = x.conn(xcffib.shm.key)
        if self._shm is not None:
            shm.Detach(self._shmseg)
            self._shm.close()
            self._shm = None
        try:
            seg = ShmSegment(size)
        except OSError:
            return False
        try:
            xid = x.conn.generate_id()
            shm.AttachChecked(xid, seg.shmid, False).check()
            # one pixel read proves the server can write into it (a remote X cannot)
            shm.GetImage(x.root, 0, 0, 1, 1, ALL_PLANES, ZPIXMAP, xid, 0).reply()
        except xcffib.Error:
            seg.close()
            return False
        finally:
            seg.mark_removed()
        self._shm, self._shmseg = seg, xid
        return True

    def _serve(self, x: XDisplay) -> None:
        self._x = x
        conn = x.conn
        self.screen = (x.width, x.height)
        size = self._fit(x.width, x.height)
        if size != self.size:
            self.size = size
            self.handoff.resize(*size)
            self.stats.resizes += 1
        self.stats.shm = self._setup_shm(x, size[0] * size[1] * 4)
        damage_ext = conn(xcffib.damage.key)
        xfixes = conn(xcffib.xfixes.key)
        damage = conn.generate_id()
        damage_ext.Create(damage, x.root, xcffib.damage.ReportLevel.NonEmpty)
        region = conn.generate_id()
        xfixes.CreateRegion(region, 0, [])
        cursor = CursorReader(conn, x.root)
        cursor.select()
        conn.core.ChangeWindowAttributes(x.root, xcffib.xproto.CW.EventMask, [xcffib.xproto.EventMask.StructureNotify])
        if x.has("RANDR"):
            conn(xcffib.randr.key).SelectInput(x.root, xcffib.randr.NotifyMask.ScreenChange)
        xkb = conn(xcffib.xkb.key)
        et = xcffib.xkb.EventType
        # details: NewKeyboardNotify (affect, details) and IndicatorStateNotify (affect, details)
        xkb.SelectEvents(
            xcffib.xkb.ID.UseCoreKbd, et.NewKeyboardNotify | et.IndicatorStateNotify, 0, 0, 0, 0, [7, 7, 0xFFFFFFFF, 0xFFFFFFFF]
        )
        conn.flush()
        # The reactor's input connection, made here so the reactor never waits on X.
        inp = connect(self.display)
        try:
            keymap, how = server_keymap(conn)
            bits = indicator_bits(conn)
            locks = lock_state(conn, bits)
        except BaseException:
            inp.close()
            raise
        self.post(self.events.x_connected, inp, keymap, how, bits, locks, self.stats.shm)
        # The agent's connection (clipboard, resize), read by the reactor: made here too.
        if getattr(self.events, "x_agent_connected", None) is not None:
            self.post(self.events.x_agent_connected, connect(self.display))

        ev = _Pending()
        if not self.capturing:  # one read now: whoever joins later starts from this, not black
            self._read_frame(x, damage, region, True)
        full = True  # the whole screen is read on connecting and on every activation
        was_capturing = False
        last_pos: tuple[int, int] | None = None
        last_move = time.monotonic()
        next_frame = 0.0
        fd = x.fd
        while not self._stopping:
            # Events xcb already took off the socket (while waiting for a reply) would not
            # wake select(): look at its queue first.
            self._drain(conn, ev)
            capturing = self.capturing
            if capturing and not was_capturing:
                full, ev.cursor, last_pos = True, True, None
            was_capturing = capturing
            if not capturing:
                timeout = None
            elif ev.damaged or full:
                timeout = max(0.0, next_frame - time.monotonic())
            elif ev.cursor:
                timeout = 0.0
            else:  # the pointer is polled: at frame rate while it moves
                still = time.monotonic() - last_move > POINTER_SETTLE
                timeout = POINTER_IDLE_POLL if still else self.interval
            readable, _, _ = select.select([fd, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                self._drain_wake()
            self._drain(conn, ev)
            conn.invalid()  # raises if the server went away (EOF reads as no event)
            if ev.size:
                ev.size = False
                g = conn.core.GetGeometry(x.root).reply()
                if (g.width, g.height) != self.screen:
                    self._resized(x, g.width, g.height)
                    full = True
            if ev.keymap:
                ev.keymap = False
                keymap, how = server_keymap(conn)
                self.post(self.events.x_keymap, keymap, how, indicator_bits(conn))
            if ev.locks:
                ev.locks = False
                self.post(self.events.x_locks, lock_state(conn, bits))
            if not self.capturing:
                continue
            now = time.monotonic()
            if (ev.damaged or full) and now >= next_frame:
                ev.damaged = False
                self._read_frame(x, damage, region, full)
                full = False
                next_frame = now + self.interval
            if ev.cursor:
                ev.cursor = False
                shape, pos = cursor.current()
                self.stats.cursor_images, self.stats.cursor_unreadable = cursor.images, cursor.unreadable
                if shape is None:
                    self.handoff.cursor_hide()
                elif shape is not KEEP:
                    self.handoff.cursor_set(shape)
            else:
                p = conn.core.QueryPointer(x.root).reply()
                pos = (p.root_x, p.root_y)
            if pos != last_pos:
                last_pos, last_move = pos, now
                self.handoff.cursor_move(*pos)
            self.stats.cpu_s = time.thread_time()

    def _drain(self, conn: Any, p: _Pending) -> None:
        """Every event waiting (on the socket or in xcb's queue), in one go, into `p`."""
        while True:
            try:
                ev = conn.poll_for_event()
            except xcffib.Error:
                continue  # an X error for an earlier request: nothing waits on it
            if ev is None:
                return
            if isinstance(ev, xcffib.damage.NotifyEvent):
                p.damaged = True
                self.stats.damage_events += 1
            elif isinstance(ev, xcffib.xfixes.CursorNotifyEvent):
                p.cursor = True
            elif isinstance(ev, xcffib.xproto.ConfigureNotifyEvent | xcffib.randr.ScreenChangeNotifyEvent):
                p.size = True
            elif isinstance(ev, xcffib.xproto.MappingNotifyEvent):
                p.keymap = p.keymap or ev.request == xcffib.xproto.Mapping.Keyboard
            elif isinstance(ev, xcffib.xkb.NewKeyboardNotifyEvent):  # every XKB event parses as this one
                if ev.xkbType == XKB_INDICATOR_STATE:
                    p.locks = True
                elif ev.xkbType in (XKB_NEW_KEYBOARD, XKB_MAP):
                    p.keymap = True

    def _fit(self, width: int, height: int) -> tuple[int, int]:
        """What of a width x height screen is served: all of it within --max-surface; past
        it, its top-left part at the size served until now (the source is told)."""
        if self.bound is None or self.bound.allows(width, height):
            if self._over:
                self._over = False
                self.post(self.events.x_fits)
            return width, height
        self._over = True
        size = min(width, self.size[0]), min(height, self.size[1])
        self.post(self.events.x_oversized, width, height, *size)
        return size

    def _resized(self, x: XDisplay, width: int, height: int) -> None:
        self.screen = (width, height)
        x.width, x.height = width, height
        size = self._fit(width, height)
        if size == self.size:
            return
        self.size = size
        self.stats.resizes += 1
        self.handoff.resize(*size)
        if self._shm is not None and self._shm.size < size[0] * size[1] * 4:
            self.stats.shm = self._setup_shm(x, size[0] * size[1] * 4)

    def _read_frame(self, x: XDisplay, damage: int, region: int, full: bool) -> None:
        t0 = time.perf_counter()
        damage_ext = x.conn(xcffib.damage.key)
        w, h = self.size
        screen = Rect(0, 0, w, h)
        if full:
            damage_ext.Subtract(damage, 0, 0)  # forget what was pending: all is read now
            rects = [screen]
            self.stats.full_reads += 1
        else:
            damage_ext.Subtract(damage, 0, region)
            r = x.conn(xcffib.xfixes.key).FetchRegion(region).reply()
            raw = [Rect(b.x, b.y, b.x + b.width, b.y + b.height).intersect(screen) for b in r.rectangles]
            raw = [b for b in raw if not b.empty()]
            rects = Region.from_damage(raw).simplify(MAX_READS) if len(raw) > 1 else raw
        if rects:
            if self._shm is not None:
                self._read_shm(x, rects)
            else:
                self._read_plain(x, rects)
        self.stats.frames += 1
        self.stats.rects += len(rects)
        self.stats.pixels += sum(r.area for r in rects)
        self.stats.read_s += time.perf_counter() - t0

    def _pixels(self, x: XDisplay, flat: np.ndarray, rect: Rect) -> np.ndarray:
        px = flat[: rect.area * 4].reshape(rect.height, rect.width, 4)
        return px if x.lsb_first else px[..., ::-1]  # MSB-first servers send X R G B

    def _read_shm(self, x: XDisplay, rects: list[Rect]) -> None:
        assert self._shm is not None
        shm = x.conn(xcffib.shm.key)
        seg, size = self._shm.array, self._shm.size
        batch: list[tuple[Rect, int, Any]] = []
        offset = 0
        for r in rects:
            n = r.area * 4
            if offset + n > size:
                self._publish_batch(x, seg, batch)
                batch, offset = [], 0
            cookie = shm.GetImage(x.root, r.left, r.top, r.width, r.height, ALL_PLANES, ZPIXMAP, self._shmseg, offset)
            batch.append((r, offset, cookie))
            offset += n
        self._publish_batch(x, seg, batch)

    def _publish_batch(self, x: XDisplay, seg: np.ndarray, batch: list[tuple[Rect, int, Any]]) -> None:
        for r, offset, cookie in batch:
            try:
                cookie.reply()
            except xcffib.Error:  # outside a screen that just shrank: the resize reads it all
                continue
            self.handoff.publish(r, self._pixels(x, seg[offset : offset + r.area * 4], r))

    def _read_plain(self, x: XDisplay, rects: list[Rect]) -> None:
        """GetImage without MIT-SHM: the reply's bytes are read in place (xcffib would
        otherwise turn every byte into a Python int), in bands of at most PLAIN_BAND."""
        conn = x.conn
        pending = []
        for r in rects:
            rows = max(1, PLAIN_BAND // (r.width * 4))
            for top in range(r.top, r.bottom, rows):
                band = Rect(r.left, top, r.right, min(r.bottom, top + rows))
                pending.append((band, conn.core.GetImage(ZPIXMAP, x.root, band.left, band.top, band.width, band.height, ALL_PLANES)))
        for band, cookie in pending:
            try:
                data = _reply_bytes(conn, cookie)
            except xcffib.Error:
                continue
            flat = np.frombuffer(data, dtype=np.uint8, count=band.area * 4, offset=32)
            self.handoff.publish(band, self._pixels(x, flat, band))


def _reply_bytes(conn: Any, cookie: Any) -> Any:
    """The raw reply of `cookie` (32-byte header, then data) without xcffib's parsing."""
    unpacker = conn.wait_for_reply(cookie.sequence)
    try:
        return xcffib.ffi.buffer(unpacker.cdata, unpacker.known_max)
    except AttributeError:  # another xcffib: take the parsed route
        reply = cookie.reply_type(unpacker)
        return b"\0" * 32 + bytes(reply.data.buf())

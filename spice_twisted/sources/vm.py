"""`spice://HOST:PORT`: an existing SPICE server (a QEMU, libvirt or Proxmox VM) served to many.

Stock spice-server gives its display to one client at a time. This source is that
one client, so every client of ours sees the VM: a helper process (vm_helper.py,
run by the system Python with spice-gtk) connects upstream and decodes, and writes
the primary surface into a memfd both processes map; frames on its stdin/stdout
(vm_protocol.py) carry damage, size, cursor, LEDs and our clients' input. Damage
is copied out of the memfd by a paint hook, once a frame, into our primary surface,
from where the render service encodes it once for all our clients.

When the upstream is not there yet, goes away, refuses our password, or the
helper dies, clients get a NOTIFY and a "waiting for the VM" frame, and a new
helper is started after a backoff (0.5 s doubling to `retry_max`); the log has a
line per state change, not per attempt.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import subprocess
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from twisted.internet import error, protocol
from twisted.logger import Logger

from ..inputs import LOCK_KEYS
from ..render.cursor import CursorShape, arrow_cursor
from ..render.rect import Rect
from . import vm_protocol as proto
from .base import DisplaySource, message_frame
from .vm_agent import VmAgent
from .vm_audio import VmSound

if TYPE_CHECKING:
    from ..inputs import InputOrigin
    from ..render.cursor import CursorService
    from ..render.service import RenderService

HELPER = Path(__file__).with_name("vm_helper.py")
HELPER_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi and gir1.2-spiceclientglib-2.0
FIRST_RETRY = 0.5
RETRY_MAX = 5.0
WAITING_BG = (40, 44, 52)
SHAPE_CACHE = 64
STDERR_LINES = 20
INITIAL_SIZE = (800, 600)  # the waiting frame's size until the VM tells its own
MOUSE_SERVER, MOUSE_CLIENT = 1, 2
# What the helper inherits of our environment; SPICE_TWISTED_TEST_RUN marks the processes
# of one test run (tests/conftest.py fails a run that leaves any behind).
HELPER_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR", "SPICE_TWISTED_TEST_RUN")


def parse_uri(spec: str) -> tuple[str, int, int]:
    """`spice://HOST:PORT`, `spice://HOST?port=N&tls-port=M` (remote-viewer's forms) ->
    (host, port, tls_port). Raises ValueError with a message meant for the user."""
    try:
        u = urlsplit(spec)
        port = u.port or 0
    except ValueError as exc:
        raise ValueError(f"--source {spec}: {exc}") from None
    if u.scheme != "spice" or not u.hostname:
        raise ValueError(f"--source {spec}: write spice://HOST:PORT or spice://HOST?tls-port=N")
    if u.username or u.password:
        raise ValueError(f"--source {spec}: no user or password in the URI; use --source-password-file")
    q = parse_qs(u.query, keep_blank_values=True)
    if "password" in q:
        raise ValueError(f"--source {spec}: a password on the command line can be read by anyone (ps): use --source-password-file")
    unknown = set(q) - {"port", "tls-port"}
    if unknown:
        raise ValueError(f"--source {spec}: unknown URI parameter {sorted(unknown)[0]!r} (port and tls-port are understood)")

    def number(name: str) -> int:
        values = q.get(name, [])
        if not values:
            return 0
        try:
            n = int(values[-1])
        except ValueError:
            raise ValueError(f"--source {spec}: {name}={values[-1]!r} is not a port") from None
        if not 0 < n < 65536:
            raise ValueError(f"--source {spec}: {name}={n} is not a port")
        return n

    if "port" in q:
        if port:
            raise ValueError(f"--source {spec}: the port is given twice")
        port = number("port")
    tls_port = number("tls-port")
    if not port and not tls_port:
        raise ValueError(f"--source {spec}: no port (spice://HOST:PORT, or ?tls-port=N)")
    return u.hostname, port, tls_port


def waiting_frame(width: int, height: int, upstream: str, why: str) -> np.ndarray:
    """A plain frame saying the VM is not there (yet), (h, w, 4) B G R X."""
    return message_frame(width, height, [f"waiting for the VM at {upstream}", why], WAITING_BG, min_size=10)


def check_helper_python(python: str = HELPER_PYTHON) -> None:
    """The helper's interpreter has spice-gtk; else a ValueError saying what to install."""
    probe = "import gi; gi.require_version('SpiceClientGLib', '2.0'); from gi.repository import SpiceClientGLib"
    try:
        r = subprocess.run([python, "-c", probe], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ValueError(f"--source spice:// needs {python} with spice-gtk ({exc})") from None
    if r.returncode != 0:
        raise ValueError(
            f"--source spice:// needs spice-gtk for {python}: apt-get install python3-gi gir1.2-spiceclientglib-2.0 "
            f"({r.stderr.decode(errors='replace').strip().splitlines()[-1:]})"
        )


class HelperProtocol(protocol.ProcessProtocol):
    """One helper process: frames on its stdout become source calls."""

    def __init__(self, source: VmSource) -> None:
        self.source = source
        self.decoder = proto.Decoder(proto.HELPER_TYPES)
        self.stderr: list[str] = []
        self.terminal: proto.StateChanged | None = None  # how the helper said it ended
        self._err = b""

    def connectionMade(self) -> None:
        self.source._helper_started(self)

    def send(self, msg: proto.Message | proto.AudioMessage) -> None:
        if self.transport is not None:
            self.transport.write(proto.encode(msg))

    def childDataReceived(self, fd: int, data: bytes) -> None:
        if fd == 2:
            self._err += data
            *lines, self._err = self._err.split(b"\n")
            self.stderr.extend(line.decode(errors="replace") for line in lines if line.strip())
            del self.stderr[:-STDERR_LINES]
            self._err = self._err[-4096:]
            return
        if fd != 1:
            return
        try:
            msgs = self.decoder.receive_data(data)
        except proto.ProtocolError as exc:
            self.terminal = proto.StateChanged(proto.State.FAILED, f"the helper spoke nonsense ({exc})")
            self.kill()
            return
        for msg in msgs:
            if isinstance(msg, proto.StateChanged) and msg.state in (proto.State.LOST, proto.State.REFUSED, proto.State.FAILED):
                self.terminal = msg
            self.source._message(self, msg)

    def kill(self) -> None:
        try:
            self.transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, AttributeError):
            pass

    def processEnded(self, reason: Any) -> None:
        self.source._helper_ended(self, reason.value)


class VmSource(DisplaySource):
    accepts_absolute = True  # our clients in client mode; upstream in server mode gets motion
    size_known = False  # INITIAL_SIZE until the VM's first surface
    log = Logger()

    def __init__(self, host: str, port: int = 0, tls_port: int = 0, retry_max: float = RETRY_MAX) -> None:
        self.host, self.port, self.tls_port = host, port, tls_port
        self.upstream = f"{host}:{port}" if port else f"{host} (tls-port {tls_port})"
        self.name = f"spice://{host}:{port}" if port else f"spice://{host}?tls-port={tls_port}"
        self.width, self.height = INITIAL_SIZE
        self.password = b""  # --source-password-file
        self.ca_file = ""  # --source-ca-file
        self.python = HELPER_PYTHON
        self.retry_max = retry_max
        self.state = "waiting"  # waiting (never served yet), connected, lost, refused
        self.reason = "not connected yet"
        self.upstream_mouse = MOUSE_SERVER
        self.upstream_locks = 0
        self.helper: HelperProtocol | None = None
        self.helper_pid = 0
        self.starts = 0
        self.crashes = 0
        self.connects = 0
        self.damage_rects = 0
        self.damage_frames = 0
        self.input_sent = 0
        self.input_dropped = 0
        self.released = 0
        self._stopping = False
        self._delay = FIRST_RETRY
        self._timer: Any = None
        self._shm_fd = -1
        self._shm: mmap.mmap | None = None
        self._view: np.ndarray | None = None
        self._surface: tuple[int, int] | None = None  # the VM's size while served
        self.oversized: tuple[int, int] | None = None  # the VM's size while past --max-surface
        self._pending: list[Rect] = []
        self._shapes: OrderedDict[bytes, CursorShape] = OrderedDict()
        self._held: dict[int, set[int]] = {}  # session id -> scancodes held down
        self._buttons: dict[int, int] = {}  # session id -> button mask held
        self._last_pointer = (0, 0)
        self._lock_key_typed = False
        self.agent = VmAgent(self)  # the VM's own agent, through the helper
        self.sounds = VmSound(lambda: self.helper if self.state == "connected" else None)  # vm_audio.py

    @classmethod
    def from_uri(cls, spec: str) -> VmSource:
        host, port, tls_port = parse_uri(spec)
        check_helper_python()
        return cls(host, port, tls_port)

    # --- life ------------------------------------------------------------------------------
    def start(self, render: RenderService, cursor: CursorService) -> None:
        self.render, self.cursor = render, cursor
        self.bind_bound(render)
        self.reactor = render.reactor
        render.add_paint_hook(self._paint)
        self._show_waiting()
        self._spawn()

    def stop(self) -> None:
        self._stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.helper is not None:
            try:
                self.helper.transport.closeStdin()  # the helper leaves when its stdin ends
            except Exception:
                pass
            self.reactor.callLater(2.0, self.helper.kill)

    def _spawn(self) -> None:
        self._timer = None
        if self._stopping:
            return
        self._close_shm()
        self._shm_fd = os.memfd_create("spice-twisted-vm")  # close-on-exec; dup'ed as fd 3 of the child
        self.starts += 1
        helper = HelperProtocol(self)
        env = {k: v for k, v in os.environ.items() if k in HELPER_ENV}
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # The helper dies with this process (PR_SET_PDEATHSIG follows the thread that spawned
        # it: always the reactor's, which lives as long as the process).
        argv = [self.python, "-s", str(HELPER), str(os.getpid())]
        self.reactor.spawnProcess(helper, self.python, argv, env=env, childFDs={0: "w", 1: "r", 2: "r", 3: self._shm_fd})

    def _helper_started(self, helper: HelperProtocol) -> None:
        self.helper = helper
        self.helper_pid = helper.transport.pid or 0
        password = self.password.decode("utf-8", "replace")
        bound = self.max_surface
        helper.send(proto.Connect(self.host, self.port, self.tls_port, password, self.ca_file, bound.pixels, bound.side))

    def _helper_ended(self, helper: HelperProtocol, why: BaseException) -> None:
        if helper is not self.helper:
            return
        self.helper = None
        self.helper_pid = 0
        self.sounds.upstream_gone()
        if self._stopping:
            self._close_shm()
            return
        end = helper.terminal
        if end is None:
            self.crashes += 1
            code = getattr(why, "exitCode", None)
            sig = getattr(why, "signal", None)
            how = f"signal {sig}" if sig else f"exit code {code}"
            tail = "; ".join(helper.stderr[-3:])
            end = proto.StateChanged(proto.State.FAILED, f"the spice-gtk helper ended ({how}){': ' + tail if tail else ''}")
        state = "refused" if end.state == proto.State.REFUSED else "lost"
        reason = "the VM refused our password (--source-password-file)" if state == "refused" else end.text
        self._lost(state, reason)
        self._timer = self.reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, self.retry_max)

    # --- what the helper says ------------------------------------------------------------
    def _message(self, helper: HelperProtocol, msg: proto.Message | proto.AudioMessage) -> None:
        if helper is not self.helper:
            return
        if isinstance(msg, proto.AudioMessage):
            self.sounds.message(msg)
            return
        if isinstance(msg, proto.Damage):
            self._damage(msg.rects)
        elif isinstance(msg, proto.Surface):
            self._new_surface(msg.width, msg.height)
        elif isinstance(msg, proto.Oversized):
            self._oversized(msg.width, msg.height)
        elif isinstance(msg, proto.CursorSet):
            self.cursor.set_shape(self._shape(msg))
        elif isinstance(msg, proto.CursorMove):
            self.cursor.move(msg.x, msg.y)
        elif isinstance(msg, proto.CursorHide):
            self.cursor.hide()
        elif isinstance(msg, proto.Locks):
            self.upstream_locks = msg.modifiers
            if self.report_locks is not None:
                self.report_locks(msg.modifiers)
        elif isinstance(msg, proto.AgentState | proto.VmClipboard):
            self.agent.message(msg)
        elif isinstance(msg, proto.MouseMode):
            self.upstream_mouse = msg.mode

    def _new_surface(self, width: int, height: int) -> None:
        if not self.max_surface.allows(width, height):  # the helper checks too; this is not its call
            self._oversized(width, height)
            return
        self.oversized = None
        size = width * height * 4
        if self._shm is None or len(self._shm) < size:
            self._drop_view()
            if self._shm is not None:
                self._shm.close()
            self._shm = mmap.mmap(self._shm_fd, size, prot=mmap.PROT_READ)
        self._view = np.frombuffer(self._shm, dtype=np.uint8, count=size).reshape(height, width, 4)
        self._surface = (width, height)
        if (width, height) != (self.render.width, self.render.height):
            self.render.resize(width, height)
        self._pending = [Rect(0, 0, width, height)]
        self.render.damage(self.render.primary.rect)
        if self.state != "connected":
            self.connects += 1
            back = self.state in ("lost", "refused", "oversized")
            self.log.info(
                "VM at {up}: {how}, {w}x{h}, through spice-gtk",
                up=self.upstream,
                how="back, serving it again" if back else "connected",
                w=width,
                h=height,
            )
            if back and self.notify_clients is not None:
                self.notify_clients(f"the VM at {self.upstream} is back")
            self.state, self.reason, self.notice = "connected", "", None
        self._delay = FIRST_RETRY

    def _oversized(self, width: int, height: int) -> None:
        """The VM's screen is past --max-surface: nothing of it is mapped or copied; clients keep
        the surface they have, showing why, until the VM's screen fits again (a Surface)."""
        self._surface = None
        self._pending = []
        self._drop_view()
        why = self.max_surface.refusal(f"the VM's screen at {self.upstream}", width, height)
        self.state, self.reason = "oversized", why
        if self.oversized == (width, height):
            return
        self.oversized = (width, height)
        w, h = self.render.width, self.render.height
        self.log.warn("{why}: not shown; clients keep a {w}x{h} screen saying so", why=why, w=w, h=h)
        self.notice = f"{why}: not shown until it fits"
        if self.notify_clients is not None:
            self.notify_clients(self.notice)
        frame = message_frame(
            w, h, [f"the VM's screen is {width}x{height}", f"over --max-surface {self.max_surface}: not shown"], WAITING_BG
        )
        self.render.primary.pixels[:] = frame
        self.render.damage(self.render.primary.rect)

    def _damage(self, rects: tuple[tuple[int, int, int, int], ...]) -> None:
        if self._surface is None:
            return
        bounds = self.render.primary.rect
        for x, y, w, h in rects:
            r = Rect(x, y, x + w, y + h).intersect(bounds)
            if not r.empty():
                self._pending.append(r)
                self.render.damage(r)
        self.damage_rects += len(rects)
        self.damage_frames += 1
        if len(self._pending) > 256:
            self._pending = [bounds]

    def _paint(self) -> None:
        """Once a frame: the damaged areas from the shared surface into ours."""
        if not self._pending or self.paused or self._view is None:
            return
        pixels, view = self.render.primary.pixels, self._view
        if pixels.shape != view.shape:
            self._pending = []
            return
        for r in self._pending:
            pixels[r.top : r.bottom, r.left : r.right] = view[r.top : r.bottom, r.left : r.right]
            self.render.damage(r)
        self._pending = []

    def _shape(self, msg: proto.CursorSet) -> CursorShape:
        """One CursorShape per distinct image, so clients draw a shape seen again from their cache."""
        if msg.width == 0:
            key = b"default"
        else:
            key = hashlib.blake2b(struct.pack("<HHHH", msg.width, msg.height, msg.hot_x, msg.hot_y) + msg.rgba).digest()
        shape = self._shapes.get(key)
        if shape is None:
            if msg.width == 0:
                shape = arrow_cursor()
            else:
                rgba = np.frombuffer(msg.rgba, dtype=np.uint8).reshape(msg.height, msg.width, 4)
                shape = CursorShape.from_rgba(rgba, msg.hot_x, msg.hot_y)
            self._shapes[key] = shape
            while len(self._shapes) > SHAPE_CACHE:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(key)
        return shape

    # --- not served ----------------------------------------------------------------------
    def _lost(self, state: str, reason: str) -> None:
        """The VM is not served (any more): tell clients and the log once per change."""
        self.agent.gone()
        self._surface = None
        self._pending = []
        self._drop_view()
        if state == self.state:  # another failed attempt: no news for the log or the clients
            self.reason = reason
            return
        was = self.state
        self.state, self.reason = state, reason
        retry = f"retrying (backoff up to {self.retry_max:g} s)"
        if state == "refused":
            self.log.error("VM at {up}: {reason}; {retry}", up=self.upstream, reason=reason, retry=retry)
        elif was in ("connected", "oversized"):
            self.log.warn(
                "VM at {up} was lost: {reason}; clients see a 'waiting for the VM' frame; {retry}",
                up=self.upstream,
                reason=reason,
                retry=retry,
            )
        else:
            self.log.warn("VM at {up} is not there: {reason}; {retry}", up=self.upstream, reason=reason, retry=retry)
        if state == "refused":
            self.notice = f"the VM at {self.upstream} refused spice-twisted's password; waiting for the VM"
        else:
            self.notice = f"the VM at {self.upstream} is unavailable ({reason}); waiting for the VM"
        if self.notify_clients is not None:
            self.notify_clients(self.notice)
        self._show_waiting()

    def _show_waiting(self) -> None:
        why = {"waiting": "connecting...", "refused": "it refused our password"}.get(self.state, self.reason)
        frame = waiting_frame(self.render.width, self.render.height, self.upstream, why[:120])
        self.render.primary.pixels[:] = frame
        self.render.damage(self.render.primary.rect)

    def _drop_view(self) -> None:
        self._view = None

    def _close_shm(self) -> None:
        self._drop_view()
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view is still alive somewhere: the GC unmaps it later
                pass
            self._shm = None
        if self._shm_fd >= 0:
            os.close(self._shm_fd)
            self._shm_fd = -1

    def desktop_agent(self) -> VmAgent:
        return self.agent

    # --- input from clients --------------------------------------------------------------
    def _send(self, msg: proto.Message) -> bool:
        if self.helper is None or self.state != "connected":
            self.input_dropped += 1
            return False
        self.helper.send(msg)
        self.input_sent += 1
        return True

    def pointer(self, origin: InputOrigin, x: int, y: int, buttons: int) -> None:
        if self.upstream_mouse == MOUSE_CLIENT:
            self._send(proto.Position(x, y, buttons & 7))
        else:
            lx, ly = self._last_pointer
            if (x, y) != (lx, ly):
                self._send(proto.Motion(x - lx, y - ly, buttons & 7))
        self._last_pointer = (x, y)

    def button(self, origin: InputOrigin, button: int, pressed: bool, x: int, y: int, buttons: int) -> None:
        if not 1 <= button <= 5:
            return
        if button <= 3:
            bit = 1 << (button - 1)
            held = self._buttons.get(origin.session_id, 0)
            self._buttons[origin.session_id] = held | bit if pressed else held & ~bit
        self._send(proto.Button(button, pressed, buttons & 7))

    def key(self, origin: InputOrigin, key: int, pressed: bool) -> None:
        if not 0 < key <= 0x1FF:
            return
        held = self._held.setdefault(origin.session_id, set())
        if pressed:
            held.add(key)
        else:
            held.discard(key)
        # The router follows a lock key with locks(new LEDs): the key itself toggles the VM's.
        self._lock_key_typed = pressed and key in LOCK_KEYS
        self._send(proto.Key(key, pressed))

    def locks(self, modifiers: int) -> None:
        typed, self._lock_key_typed = self._lock_key_typed, False
        if typed or modifiers & 7 == self.upstream_locks:
            return
        if self._send(proto.SetLocks(modifiers & 7)):
            self.upstream_locks = modifiers & 7

    def client_gone(self, origin: InputOrigin) -> None:
        """Release what the departed client held (a key another client holds stays down)."""
        keys = self._held.pop(origin.session_id, set())
        others = set().union(*self._held.values()) if self._held else set()
        n = 0
        for k in sorted(keys - others):
            n += self._send(proto.Key(k, False))
        mask = self._buttons.pop(origin.session_id, 0)
        other_mask = 0
        for m in self._buttons.values():
            other_mask |= m
        for b in (1, 2, 3):
            if mask & (1 << (b - 1)) and not other_mask & (1 << (b - 1)):
                n += self._send(proto.Button(b, False, other_mask & 7))
        if n:
            self.released += n
            self.log.info("released {n} keys/buttons held by client {sid:#x}, which left", n=n, sid=origin.session_id)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "upstream": self.upstream,
            "state": self.state,
            "reason": self.reason,
            "available": self.state == "connected",
            "size": list(self._surface) if self._surface else None,
            "oversized": list(self.oversized) if self.oversized else None,
            "helper_pid": self.helper_pid,
            "helper_starts": self.starts,
            "helper_crashes": self.crashes,
            "connects": self.connects,
            "damage_rects": self.damage_rects,
            "damage_frames": self.damage_frames,
            "upstream_mouse_mode": self.upstream_mouse,
            "upstream_locks": self.upstream_locks,
            "input": {"sent": self.input_sent, "dropped": self.input_dropped},
            "released_for_departed": self.released,
            "cursor_shapes": len(self._shapes),
            "agent": self.agent.describe(),
        }

"""Real processes for integration tests: `twistd -n spice` and spice-gtk clients."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GTK_CLIENT = Path(__file__).with_name("gtk_client_main.py")
HARNESS = Path(__file__).with_name("server_harness.py")
SYSTEM_PYTHON = "/usr/bin/python3"


def worker_index() -> int:
    """This pytest-xdist worker's number (0 without xdist): each worker takes X displays
    (xvfb.py) and ports (free_port) from its own range, so two never race for one."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else 0


# free_port's ports: below Linux's ephemeral range (32768-60999 by default), where the
# kernel never hands one out for a bind to port 0 or an outgoing connection; a range of
# PORTS_PER_WORKER for each of up to 6 workers.
PORT_BASE, PORTS_PER_WORKER = 20000, 2000
_ports: Iterator[int] | None = None


def free_port() -> int:
    """A 127.0.0.1 port free now, for a server a test starts soon. A port the kernel picks
    (a bind to port 0) may be handed to someone else (another worker's tap, an outgoing
    connection) before the server binds it; these come from this worker's own range,
    taken in turn (from a random start: another pytest run beside this one), and a port is
    skipped while anything holds it."""
    global _ports
    if _ports is None:
        base = PORT_BASE + worker_index() % 6 * PORTS_PER_WORKER
        start = random.randrange(PORTS_PER_WORKER)
        _ports = (base + (start + i) % PORTS_PER_WORKER for i in itertools.count())
    return next(p for p in _ports if _bindable(p))


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class RefusingPort:
    """A 127.0.0.1 port bound but not listening: a connection to it is refused (nothing is
    there yet), and it stays ours until `release()`, which a test calls just before what
    will listen there starts. A port from free_port() left unbound for seconds could be
    taken meanwhile by anything else on the machine."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", free_port()))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        self._sock.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The checkout's code and its twisted/plugins/ (Twisted scans sys.path for plugin folders).
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def terminate(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM (the server stops cleanly), then SIGKILL after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ServerProcess:
    """`twistd -n spice ...` on free ports; ready once every listener logged that it started."""

    def __init__(self, *args: str, tmp: Path, port: int | None = None, tls_port: int | None = None) -> None:
        self.port = free_port() if port is None else port
        self.tls_port = tls_port or 0
        self.admin_port = int(args[list(args).index("--admin-port") + 1]) if "--admin-port" in args else 0
        argv = [sys.executable, "-m", "twisted", "--log-format=text", "spice", "--port", str(self.port)]
        if self.tls_port:
            argv += ["--tls-port", str(self.tls_port)]
        argv += list(args)
        if "--admin-port" not in args:
            argv += ["--admin-port", "0"]  # tests run servers side by side: no fixed admin port
        if "--ping-interval" not in args:
            argv += ["--ping-interval", "600"]  # one ping at start: progress must never wait for a ping
        self.argv = argv
        self.log_path = tmp / f"server-{self.port}-{self.tls_port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=_env(), cwd=str(tmp))
        self._wait_ready()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _wait_ready(self, timeout: float = 30.0) -> None:
        want = [p for p in (self.port, self.tls_port, self.admin_port) if p]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            text = self.log()
            if all(f"starting on {p}" in text for p in want) and "serving " in text:
                return
            time.sleep(0.05)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log()}")

    def stop(self) -> None:
        terminate(self.proc)
        self._log.close()


class JsonLinesProcess:
    """A child process that prints JSON lines and takes commands on stdin."""

    def __init__(self, argv: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.stderr_path = tmp / f"{Path(argv[1]).stem}-{free_port()}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1, env=env
        )
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events[start:]:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no matching event; got {self.events[-20:]}; stderr: {self.stderr()[-3000:]}")
                self._cond.wait(min(left, 0.2))

    def wait_event(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        return self.wait_for(lambda e: e.get("event") == event and all(e.get(k) == v for k, v in match.items()), timeout)

    def command(self, line: str, reply: str, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdin is not None
        start = len(self.events)
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.wait_for(lambda e: e.get("reply") == reply, timeout, start=start)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.command("quit", "quit", timeout=5)
                self.proc.wait(5)
            except (OSError, TimeoutError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


class HarnessServer(JsonLinesProcess):
    """The real server with a control line (tests/support/server_harness.py)."""

    def __init__(self, *args: str, tmp: Path, paused: bool = False) -> None:
        self.port = free_port()
        admin = [] if "--admin-port" in args else ["--admin-port", "0"]
        admin += [] if "--ping-interval" in args else ["--ping-interval", "600"]
        argv = [sys.executable, str(HARNESS), *(["--paused"] if paused else []), "--", "--port", str(self.port), *admin, *args]
        super().__init__(argv, tmp, env=_env())
        self.wait_event("ready", timeout=30)
        self._dumps = 0

    def stats(self) -> dict[str, Any]:
        return self.command("stats", "stats")["stats"]

    def framebuffer(self) -> np.ndarray:
        self._dumps += 1
        path = self.tmp / f"server-{self.port}-{self._dumps}.raw"
        r = self.command(f"dump {path}", "dump")
        return np.fromfile(path, dtype=np.uint8).reshape(r["height"], r["width"], 4)

    def paste(self, px: np.ndarray, x: int, y: int) -> None:
        """Draw `px` ((h, w, 4) B, G, R, X) on the served screen at x, y (through a .npy file)."""
        self._dumps += 1
        path = self.tmp / f"paste-{self.port}-{self._dumps}.npy"
        np.save(path, px)
        self.command(f"paste {path} {x} {y}", "paste")

    def pause(self) -> None:
        self.command("pause", "pause")

    def resume(self) -> None:
        self.command("resume", "resume")

    def allow_multiple_clients(self, allow: bool) -> None:
        self.command(f"allow_multiple_clients {int(allow)}", "allow_multiple_clients")

    def view_only(self, session_id: int, on: bool) -> None:
        self.command(f"view_only {session_id} {int(on)}", "view_only")

    def display_channels(self) -> list[dict[str, Any]]:
        return [ch for c in self.stats()["clients"] for ch in c["channels"] if ch["channel"] == "display"]


class GtkClient(JsonLinesProcess):
    """A spice-gtk client process (tests/support/gtk_client_main.py)."""

    def __init__(self, *args: str, tmp: Path) -> None:
        super().__init__([SYSTEM_PYTHON, str(GTK_CLIENT), *args], tmp)
        self._dumps = 0

    def channel_events(self, channel: str) -> list[str]:
        return [e["what"] for e in self.events if e.get("event") == "channel" and e.get("channel") == channel]

    def framebuffer(self) -> np.ndarray:
        """The client's decoded primary surface as (h, w, 4) B, G, R, X."""
        self._dumps += 1
        path = self.tmp / f"client-{self.proc.pid}-{self._dumps}.raw"
        r = self.command(f"dump {path}", "dump")
        if not r.get("ok"):
            raise AssertionError(f"dump failed: {r}")
        raw = np.fromfile(path, dtype=np.uint8)
        return raw.reshape(r["height"], r["stride"] // 4, 4)[:, : r["width"]]

    def shape_now(self) -> tuple[int, int] | None:
        """(height, width) of the client's primary surface, or None while it has none (between
        a resize's SURFACE_DESTROY and SURFACE_CREATE): for polling across a resize."""
        try:
            return self.framebuffer().shape[:2]
        except AssertionError:
            return None

    def stats(self) -> dict[str, Any]:
        return self.command("stats", "stats")

    def send(self, line: str) -> dict[str, Any]:
        """An input command (position, press, key, ...); raises if the client refused it."""
        r = self.command(line, line.split()[0])
        if not r.get("ok"):
            raise AssertionError(f"{line}: {r}")
        return r

    def wait_quiet(self, quiet: float = 0.5, timeout: float = 20.0) -> None:
        """Wait until no display update arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.stats()
            if s["quiet_for"] is not None and s["quiet_for"] >= quiet:
                return
            time.sleep(0.1)
        raise TimeoutError("display never went quiet")


def as_rgb(fb: np.ndarray) -> np.ndarray:
    """Client framebuffer (B, G, R, X) -> RGB, to compare with a source picture."""
    return fb[..., [2, 1, 0]]


def wait_until(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll pred until it returns something truthy (returned), or fail after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout}s")


def assert_clients_match(server: HarnessServer, clients: list[GtkClient], timeout: float = 10.0) -> np.ndarray:
    """Once every client is quiet (the source paused), each client's decoded surface equals
    the server's framebuffer, pixel for pixel; returns that framebuffer as RGB. Polled for
    up to `timeout` after the quiet: a client quiet since before the last change (still on
    its way on a loaded machine) passes the quiet wait at once."""
    for c in clients:
        c.wait_quiet(0.4)
    return wait_match(lambda: as_rgb(server.framebuffer()), clients, "the server's framebuffer", timeout=timeout)


def mismatch(client: GtkClient, reference: np.ndarray) -> int | str:
    """Pixels of the client's surface that differ from an RGB reference (or why not comparable)."""
    try:
        got = as_rgb(client.framebuffer())
    except AssertionError as exc:  # no primary surface (yet)
        return str(exc)
    if got.shape != reference.shape:
        return f"shape {got.shape} != {reference.shape}"
    return int(np.any(got != reference, axis=2).sum())


def wait_match(
    reference: Callable[[], np.ndarray], clients: list[GtkClient], what: str, timeout: float = 25.0, every: float = 0.2
) -> np.ndarray:
    """Until every client shows exactly `reference()` (re-read each time) at once; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        ref = reference()
        bad = {i: m for i, c in enumerate(clients) if (m := mismatch(c, ref)) != 0}
        if not bad:
            return ref
        if time.monotonic() > deadline:
            where = {i: _where(clients[i], ref) for i in bad}
            raise AssertionError(f"clients differ from {what}: {bad}; where (x0, y0, x1, y1): {where}")
        time.sleep(every)


def _where(client: GtkClient, reference: np.ndarray) -> tuple[int, int, int, int] | str:
    """The box around the pixels of the client's surface that differ (for a failure's message)."""
    try:
        got = as_rgb(client.framebuffer())
    except AssertionError as exc:
        return str(exc)
    if got.shape != reference.shape:
        return "shape"
    ys, xs = np.nonzero(np.any(got != reference, axis=2))
    if not len(xs):
        return "none now"
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def connect_clients(spawn: Any, server: Any, n: int = 2) -> list[GtkClient]:
    """n spice-gtk clients, one after the other (the server's client list is then in this
    order), each shown its first screen and with its inputs channel open."""
    clients = []
    for _ in range(n):
        c = spawn.client("--port", str(server.port))
        c.wait_event("mark", timeout=30)
        c.wait_event("channel", channel="inputs", what="opened", timeout=30)
        clients.append(c)
    return clients

"""No process outlives the test run that started it.

Every process a run starts (servers, their VM helpers, spice-gtk clients, QEMU, Xvfb,
browsers) inherits SPICE_TWISTED_TEST_RUN=<pid of this pytest> from the environment
(the VM source passes it on to its helper). At the end of the session any process
still carrying this run's mark, orphans included, fails the run: it is listed, then
killed by its pid. Other test runs on the same machine carry other marks and are left
alone. Used as a pytest plugin: tests/conftest.py imports these hooks.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

MARK = "SPICE_TWISTED_TEST_RUN"
GRACE = float(os.environ.get("SPICE_TWISTED_LEFTOVER_GRACE", "5"))  # a server's helper leaves ~2 s after it


def mark_this_run() -> str:
    os.environ[MARK] = str(os.getpid())
    return os.environ[MARK]


def marked(run: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process but this one whose environment has MARK=run."""
    want = f"{MARK}={run}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if want not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stat = (entry / "stat").read_text()
            if stat[stat.rindex(")") + 2] in "ZX":  # dead, waiting to be reaped
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found.append((int(entry.name), cmdline))
    return found


def left_behind(run: str, grace: float = GRACE) -> list[tuple[int, str]]:
    """The marked processes still there after `grace` seconds (those ending now may finish)."""
    deadline = time.monotonic() + grace
    while True:
        left = marked(run)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def pytest_configure(config: pytest.Config) -> None:
    mark_this_run()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    left = left_behind(os.environ[MARK])
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(left)} process(es) of this test run left behind (killed now):"]
    lines += [f"  pid {pid}: {cmd[:300]}" for pid, cmd in left]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True, bold=True)
    else:
        print("\n".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED

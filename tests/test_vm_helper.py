"""The VM source's helper process (spice_twisted/sources/vm_helper.py) over its life.

Its memory stays flat however long the upstream draws (measured from /proc while a
scripted upstream, tests/support/spice_peer.py, sends draws the test counts), and it
never outlives its server, whether the server is killed while serving a real QEMU or
while the helper is still starting. Also: the session-end check that fails a run that
leaves processes behind (tests/support/leftovers.py) catches a leftover.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.hostile import rss_kb
from support.processes import RefusingPort, connect_clients, free_port, wait_until
from support.qemu import Qemu, have_qemu
from support.spice_peer import SpicePeer

DRAWS = 20_000  # python3-gi 3.42 leaked ~110 bytes a flush (GLib.idle_add): ~2.2 MB here
MAX_BYTES_PER_FLUSH = 25  # what RSS may grow by, per flush, before it counts as a leak


@pytest.fixture
def peer():
    p = SpicePeer(640, 480)
    yield p
    p.close()


def served(server) -> dict:
    return wait_until(
        lambda: (s := server.stats()["source_state"])["state"] == "connected" and s["size"] and s,
        30,
        "the upstream served",
    )


def settled(read, quiet: float = 0.5, timeout: float = 60.0) -> int:
    """`read()` once it stopped changing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read()
        if now == last:
            return now
        last = now
    raise AssertionError("never settled")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def test_helper_memory_is_flat_per_flush(spawn, peer):
    """Every draw of the upstream is flushed on its own (so the helper's per-flush cost is
    what is measured): RSS growth over DRAWS flushes stays under a bound the leak exceeded 4x."""
    server = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--disable-ticketing")
    pid = served(server)["helper_pid"]

    def frames() -> int:
        return server.stats()["source_state"]["damage_frames"]

    peer.copy_bits(2_000)  # warm up: spice-gtk's and the helper's buffers reach their size
    wait_until(lambda: frames() >= 1_000, 30, "the warm-up draws")
    start_frames, start_rss = settled(frames), rss_kb(pid)
    peer.copy_bits(DRAWS)
    wait_until(lambda: frames() >= start_frames + DRAWS // 2, 60, "the draws flushed")
    flushes = settled(frames) - start_frames
    grown = (rss_kb(pid) - start_rss) * 1024
    assert flushes >= DRAWS // 2, flushes  # the premise: most draws were flushed alone
    assert grown <= flushes * MAX_BYTES_PER_FLUSH, f"helper RSS grew {grown} bytes over {flushes} flushes"


SOAK_SECONDS = 120


@pytest.mark.soak
def test_helper_rss_bounded_under_continuous_damage(spawn, peer):
    """SOAK_SECONDS of continuous damage from the upstream, re-served to a spice-gtk client:
    the helper's RSS after a warm-up minute stays within 2 MB (the leak: ~2.5 MB/s)."""
    server = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--disable-ticketing")
    pid = served(server)["helper_pid"]
    connect_clients(spawn, server, 1)
    samples = []
    end = time.monotonic() + SOAK_SECONDS
    while time.monotonic() < end:
        peer.copy_bits(500)
        samples.append(rss_kb(pid))
        time.sleep(0.05)
    warm = samples[len(samples) // 2]
    assert server.stats()["source_state"]["damage_frames"] > 10_000
    assert max(samples[len(samples) // 2 :]) - warm < 2048, samples[:: max(1, len(samples) // 20)]


@pytest.fixture
def qemu(tmp_path: Path):
    if not have_qemu():
        pytest.fail("qemu-system-x86_64 is missing: run scripts/setup.sh --test")
    vm = Qemu(tmp_path, free_port())
    yield vm
    vm.stop()


def test_helper_leaves_when_its_server_is_killed(spawn, qemu):
    """kill -9 of a server serving a real QEMU: its helper is gone within seconds, and the
    VM's one SPICE seat is free again for a new server."""
    qemu.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{qemu.port}", "--disable-ticketing")
    pid = served(server)["helper_pid"]
    server.proc.kill()
    server.proc.wait()
    wait_until(lambda: not alive(pid), 5, "the helper gone after its server")
    again = spawn.harness("--source", f"spice://127.0.0.1:{qemu.port}", "--disable-ticketing")
    assert served(again)["size"] == [720, 400]


def test_helper_leaves_when_its_server_dies_while_it_starts(spawn):
    """The server dies before its new helper ran a line (held stopped here): the helper,
    let go, finds its server gone and leaves (before the fix it lived on, an orphan)."""
    nothing = RefusingPort()
    server = spawn.harness(
        "--source", f"spice://127.0.0.1:{nothing.port}", "--disable-ticketing"
    )  # nothing there: a new helper every ~0.5-5 s
    first = wait_until(lambda: server.stats()["source_state"]["helper_pid"], 10, "a helper")
    pid = wait_until(lambda: (p := server.stats()["source_state"]["helper_pid"]) not in (0, first) and p, 20, "the next helper")
    os.kill(pid, signal.SIGSTOP)  # still importing gi (hundreds of ms): it has not read its stdin yet
    try:
        assert b"vm_helper.py" in Path(f"/proc/{pid}/cmdline").read_bytes()
        server.proc.kill()
        server.proc.wait()
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: not alive(pid), 5, "the helper gone after its server")


def test_a_run_that_leaves_a_process_behind_fails(tmp_path):
    """The session-end check (tests/support/leftovers.py) in a pytest run of its own: a test
    that leaves a process fails the run, which names and kills it; a tidy run passes."""
    (tmp_path / "test_leave.py").write_text(
        "import subprocess, sys\n"
        "kept = []\n"
        "def test_tidy():\n"
        "    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "    p.kill(); p.wait()\n"
        "def test_leaves():\n"
        "    kept.append(subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)  # LEFT-BEHIND']))\n"
        "    print('PID', kept[-1].pid)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), SPICE_TWISTED_LEFTOVER_GRACE="1")

    def run(*select: str) -> subprocess.CompletedProcess:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "support.leftovers", "-s", "test_leave.py", *select]
        return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    tidy = run("-k", "tidy")
    assert tidy.returncode == 0, tidy.stdout[-2000:]
    messy = run("-k", "leaves")
    out = messy.stdout
    assert messy.returncode == 1, out[-2000:]
    assert "1 process(es) of this test run left behind" in out and "LEFT-BEHIND" in out, out[-2000:]
    pid = int(out.split("PID ", 1)[1].split()[0])
    wait_until(lambda: not alive(pid), 5, "the leftover killed")

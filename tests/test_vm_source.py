"""`--source spice://`: a real QEMU (stock single-client SPICE) re-served to real spice-gtk clients.

The guest is a boot sector written by tests/support/qemu.py: a text screen full of
colours that echoes typed keys. What our clients decode is compared with QEMU's own
framebuffer read through QMP `screendump`, never with the server under test. A
second spice-twisted (the demo source) stands in as the upstream where QEMU's VGA
has nothing to show: a cursor shape and pointer input.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from support.processes import as_rgb, free_port, wait_until
from support.qemu import ECHO_ROW_Y, Qemu, have_qemu

from spice_twisted.sources.vm import WAITING_BG


@pytest.fixture
def qemu_factory(tmp_path: Path):
    if not have_qemu():
        pytest.fail("qemu-system-x86_64 is missing: run scripts/setup.sh --test")
    started: list[Qemu] = []

    def make(port: int | None = None, password: str | None = None) -> Qemu:
        q = Qemu(tmp_path, port or free_port(), password)
        started.append(q)
        return q

    yield make
    for q in started:
        q.stop()


def mismatch(client, shot: np.ndarray) -> int | str:
    try:
        got = as_rgb(client.framebuffer())
    except AssertionError as exc:  # no primary surface (yet)
        return str(exc)
    if got.shape != shot.shape:
        return f"shape {got.shape} != {shot.shape}"
    return int(np.any(got != shot, axis=2).sum())


def wait_match(vm: Qemu, clients, timeout: float = 25.0) -> np.ndarray:
    """Until every client shows exactly QEMU's framebuffer at once; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        shot = vm.screendump()
        bad = {i: m for i, c in enumerate(clients) if (m := mismatch(c, shot)) != 0}
        if not bad:
            return shot
        if time.monotonic() > deadline:
            raise AssertionError(f"clients differ from QEMU's screendump: {bad}")
        time.sleep(0.2)


def waiting_shown(client) -> bool:
    try:
        fb = as_rgb(client.framebuffer())
    except AssertionError:
        return False
    return bool((fb[3, 3] == WAITING_BG).all() and (fb[-3, -3] == WAITING_BG).all())


def connect_clients(spawn, server, n: int):
    clients = []
    for _ in range(n):
        c = spawn.client("--port", str(server.port))
        c.wait_event("mark", timeout=30)
        c.wait_event("channel", channel="inputs", what="opened", timeout=30)
        clients.append(c)
    return clients


def test_three_clients_see_the_vm_and_one_types_into_it(spawn, qemu_factory):
    vm = qemu_factory()
    before = vm.wait_booted()
    server = spawn.harness("--source", f"spice://127.0.0.1:{vm.port}")
    clients = connect_clients(spawn, server, 3)
    shot = wait_match(vm, clients)
    assert np.array_equal(shot[:ECHO_ROW_Y], before[:ECHO_ROW_Y])
    # keys typed by one client reach the guest, which draws them: every client sees it
    for sc in (0x23, 0x17):  # h, i
        clients[1].send(f"key {sc:#x}")
    wait_until(lambda: not np.array_equal(vm.screendump()[ECHO_ROW_Y:, :18], before[ECHO_ROW_Y:, :18]), 15, "the keys on the guest")
    shot = wait_match(vm, clients)
    echo = shot[ECHO_ROW_Y:, :18]
    assert (echo == (0x00, 0x00, 0xA8)).any(axis=2).any() and (echo == (0xFF, 0xFF, 0xFF)).all(axis=2).any()  # white on blue
    assert not np.array_equal(shot[ECHO_ROW_Y:, :9], shot[ECHO_ROW_Y:, 9:18])  # two different letters
    state = server.stats()["source_state"]
    assert state["state"] == "connected" and state["size"] == [720, 400], state
    assert state["input"]["sent"] >= 4

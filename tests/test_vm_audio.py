"""The VM's sound through `--source spice://`: a real QEMU whose PC speaker beeps, heard by
every client of ours.

The guest is a boot sector written here as bytes: it programs the PIT's channel 2 for a
square wave of 1193182/1193 Hz (about 1000.15 Hz), gates it to the speaker through port
0x61 and halts. QEMU plays its PC speaker through `-audiodev spice`, so the sound comes
out of QEMU's spice-server playback channel, to our VM helper, to our clients.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from support.processes import free_port, wait_until
from support.qemu import Qemu, have_qemu

PIT_HZ = 1193182
DIVISOR = 1193
BEEP_HZ = PIT_HZ / DIVISOR

BEEP_CODE = [
    ("FA", "cli"),
    ("B0B6", "mov al, 0xB6     ; PIT channel 2, low then high byte, mode 3 (square wave)"),
    ("E643", "out 0x43, al"),
    ("B8" + DIVISOR.to_bytes(2, "little").hex(), "mov ax, DIVISOR"),
    ("E642", "out 0x42, al"),
    ("88E0", "mov al, ah"),
    ("E642", "out 0x42, al"),
    ("E461", "in al, 0x61"),
    ("0C03", "or al, 3         ; gate channel 2, speaker on"),
    ("E661", "out 0x61, al"),
    ("F4", "halt: hlt"),
    ("EBFD", "jmp halt"),
]


class BeepingQemu(Qemu):
    """tests/support/qemu.py's QEMU, booting the beeping guest, its PC speaker on SPICE."""

    def argv(self) -> list[str]:
        beep = self.tmp / "beep.img"
        code = b"".join(bytes.fromhex(h) for h, _ in BEEP_CODE)
        beep.write_bytes(code + bytes(510 - len(code)) + b"\x55\xaa")
        args = super().argv()
        args[args.index("pc")] = "pc,pcspk-audiodev=snd0"
        args[args.index(f"file={self.image},format=raw,if=ide")] = f"file={beep},format=raw,if=ide"
        return [*args[:-2], "-audiodev", "spice,id=snd0", *args[-2:]]


@pytest.fixture
def beeping_vm(tmp_path: Path):
    if not have_qemu():
        pytest.fail("qemu-system-x86_64 is missing: run scripts/setup.sh --test")
    vm = BeepingQemu(tmp_path, free_port())
    yield vm
    vm.stop()


def heard(client, tmp: Path) -> np.ndarray:
    path = tmp / f"heard-{client.proc.pid}-{time.monotonic_ns()}.raw"
    client.command(f"audio_dump {path}", "audio_dump")
    return np.frombuffer(path.read_bytes(), dtype="<i2").reshape(-1, 2)


def dominant_hz(mono: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    return float(np.argmax(spectrum) * rate / len(mono))


def test_every_client_hears_the_vms_pc_speaker(spawn, beeping_vm, tmp_path: Path) -> None:
    server = spawn.harness("--source", f"spice://127.0.0.1:{beeping_vm.port}", "--disable-ticketing")
    opus = spawn.client("--port", str(server.port), "--audio")  # spice-gtk offers Opus: it gets Opus
    raw = spawn.client("--port", str(server.port), "--audio", "--no-opus")
    clients = [opus, raw]
    for c in clients:
        start = c.wait_event("playback-start", timeout=60)
        assert (start["format"], start["channels"], start["rate"]) == (1, 2, 48000)
    wait_until(lambda: min(c.command("audio", "audio")["frames"] for c in clients) >= 200, timeout=60, what="2 s of the VM's beep")
    stats = server.stats()
    assert sorted(c["playback"]["mode"] for c in stats["clients"]) == ["opus", "raw"]
    src = stats["audio"]["source"]
    assert src["name"] == "vm" and src["format"] == {"channels": 2, "rate": 48000} and src["frames"] >= 200
    for c in clients:
        pcm = heard(c, tmp_path)[-48000:].astype(np.float64)  # the last second
        assert np.abs(pcm).max() > 5000, "the beep is not loud"
        assert abs(dominant_hz(pcm[:, 0]) - BEEP_HZ) < 3, dominant_hz(pcm[:, 0])
    # The VM goes away: its stream ends for every client (STOP), the server goes on.
    beeping_vm.kill()
    for c in clients:
        c.wait_event("playback-stop", timeout=30)
    assert server.stats()["audio"]["playing"] is False

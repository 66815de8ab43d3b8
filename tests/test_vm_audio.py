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


# A guest that records: it waits for a key (the test presses one once a client of ours is
# there), finds QEMU's AC97 (put at PCI 00:05.0) through the PCI configuration ports,
# turns on its I/O and bus mastering, unmutes the record gain, gives the PCM-in engine 32
# buffer descriptors one after the other from REC_BUF (REC_SECONDS in all) and starts it.
# QEMU's AC97 then records from `-audiodev spice` into guest memory, which the test reads
# back through QMP `pmemsave`: the samples our primary client sent arrive there.
REC_BUF = 0x100000
CHUNK_SAMPLES = 0xFFF0  # 16-bit samples a descriptor
CHUNK_BYTES = CHUNK_SAMPLES * 2
REC_BYTES = 32 * CHUNK_BYTES
REC_SECONDS = REC_BYTES / (48000 * 4)  # about 21.8 s
AC97_CONFIG = 0x80000000 | (5 << 11)  # bus 0, device 5, function 0
RECORD_CODE = [
    ("FA", "cli                ; the BIOS takes no key: the test's stays in the i8042"),
    ("31C0", "xor ax, ax"),
    ("8ED8", "mov ds, ax"),
    ("BF0006", "mov di, 0x600      ; 32 buffer descriptors"),
    ("66B8" + REC_BUF.to_bytes(4, "little").hex(), "mov eax, REC_BUF"),
    ("B92000", "mov cx, 32"),
    ("668905", "desc: mov [di], eax"),
    ("66C74504" + CHUNK_SAMPLES.to_bytes(4, "little").hex(), "mov dword [di+4], CHUNK_SAMPLES"),
    ("6605" + CHUNK_BYTES.to_bytes(4, "little").hex(), "add eax, CHUNK_BYTES"),
    ("83C708", "add di, 8"),
    ("E2EA", "loop desc"),
    ("E464", "key: in al, 0x64"),
    ("A801", "test al, 1         ; a byte from the keyboard?"),
    ("74FA", "jz key"),
    ("E460", "in al, 0x60"),
    ("BAF80C", "mov dx, 0xCF8"),
    ("66B8" + (AC97_CONFIG | 0x04).to_bytes(4, "little").hex(), "mov eax, command register"),
    ("66EF", "out dx, eax"),
    ("BAFC0C", "mov dx, 0xCFC"),
    ("ED", "in ax, dx"),
    ("83C805", "or ax, 5           ; I/O space, bus master"),
    ("EF", "out dx, ax"),
    ("BAF80C", "mov dx, 0xCF8"),
    ("66B8" + (AC97_CONFIG | 0x10).to_bytes(4, "little").hex(), "mov eax, BAR0 (the mixer)"),
    ("66EF", "out dx, eax"),
    ("BAFC0C", "mov dx, 0xCFC"),
    ("66ED", "in eax, dx"),
    ("25FEFF", "and ax, 0xFFFE"),
    ("89C2", "mov dx, ax"),
    ("83C21C", "add dx, 0x1C       ; record gain"),
    ("31C0", "xor ax, ax         ; 0 dB, not muted"),
    ("EF", "out dx, ax"),
    ("BAF80C", "mov dx, 0xCF8"),
    ("66B8" + (AC97_CONFIG | 0x14).to_bytes(4, "little").hex(), "mov eax, BAR1 (bus master)"),
    ("66EF", "out dx, eax"),
    ("BAFC0C", "mov dx, 0xCFC"),
    ("66ED", "in eax, dx"),
    ("25FEFF", "and ax, 0xFFFE"),
    ("89C3", "mov bx, ax"),
    ("89DA", "mov dx, bx         ; PCM in: descriptor list base"),
    ("66B800060000", "mov eax, 0x600"),
    ("66EF", "out dx, eax"),
    ("89DA", "mov dx, bx"),
    ("83C205", "add dx, 5          ; last valid index: 31"),
    ("B01F", "mov al, 31"),
    ("EE", "out dx, al"),
    ("89DA", "mov dx, bx"),
    ("83C20B", "add dx, 0x0B       ; control: run"),
    ("B001", "mov al, 1"),
    ("EE", "out dx, al"),
    ("F4", "halt: hlt"),
    ("EBFD", "jmp halt"),
]


class RecordingQemu(Qemu):
    """QEMU with an AC97 on `-audiodev spice`, booting the recording guest."""

    def argv(self) -> list[str]:
        image = self.tmp / "record.img"
        code = b"".join(bytes.fromhex(h) for h, _ in RECORD_CODE)
        image.write_bytes(code + bytes(510 - len(code)) + b"\x55\xaa")
        args = super().argv()
        args[args.index(f"file={self.image},format=raw,if=ide")] = f"file={image},format=raw,if=ide"
        return [*args[:-2], "-audiodev", "spice,id=snd0", "-device", "AC97,addr=05.0,audiodev=snd0", *args[-2:]]

    def recorded(self) -> np.ndarray:
        """The guest's record buffer, (n, 2) int16."""
        path = self.tmp / f"recorded-{time.monotonic_ns()}.raw"
        self.qmp("pmemsave", val=REC_BUF, size=REC_BYTES, filename=str(path))
        return np.frombuffer(path.read_bytes(), dtype="<i2").reshape(-1, 2)


@pytest.fixture
def recording_vm(tmp_path: Path):
    if not have_qemu():
        pytest.fail("qemu-system-x86_64 is missing: run scripts/setup.sh --test")
    vm = RecordingQemu(tmp_path, free_port())
    yield vm
    vm.stop()


def test_the_primary_clients_microphone_reaches_the_vm(spawn, recording_vm, tmp_path: Path) -> None:
    server = spawn.harness("--source", f"spice://127.0.0.1:{recording_vm.port}", "--disable-ticketing")
    primary = spawn.client("--port", str(server.port), "--audio")
    primary.wait_for(lambda e: e.get("event") == "channel" and e.get("channel") == "record" and e.get("what") == "opened", timeout=60)
    assert primary.command("audio", "audio")["record_starts"] == 0  # the VM does not record yet
    # A key starts the guest's recording: our primary client is asked to record (and only it).
    recording_vm.qmp("send-key", keys=[{"type": "qcode", "data": "spc"}])
    primary.wait_event("record-start", timeout=60)
    # The AC97's mixer starts muted (its reset value): the VM's MUTE reaches our clients too.
    wait_until(lambda: primary.command("audio", "audio")["mute"] is True, timeout=30, what="the VM's mute passed on")
    assert server.stats()["audio"]["mute"] is True
    assert len(server.stats()["audio"]["volume"]) == 2  # the VM's levels, one per channel
    other = spawn.client("--port", str(server.port), "--audio")
    other.wait_for(lambda e: e.get("event") == "channel" and e.get("channel") == "record" and e.get("what") == "opened", timeout=30)
    t = np.arange(48000) / 48000
    tone = np.round(12000 * np.sin(2 * np.pi * 750 * t)).astype("<i2")
    noise = np.random.default_rng(5).integers(-12000, 12000, size=48000).astype("<i2")
    (tmp_path / "tone.raw").write_bytes(np.repeat(tone[:, None], 2, axis=1).tobytes())
    (tmp_path / "noise.raw").write_bytes(np.stack([noise, noise], axis=1).tobytes())
    assert other.command(f"record_send {tmp_path / 'noise.raw'} 20", "record_send", timeout=30)["ok"]  # not heard
    assert primary.command(f"record_send {tmp_path / 'tone.raw'} 20", "record_send", timeout=30)["ok"]

    def span() -> np.ndarray:
        """The guest's samples from the first loud one to the last (QEMU fills the moments the
        samples came late with zeros: gaps in the tone, never other samples)."""
        rec = recording_vm.recorded()[:, 0].astype(np.float64)
        loud = np.flatnonzero(np.abs(rec) > 1000)
        return rec[loud[0] : loud[-1] + 1] if len(loud) else rec[:0]

    wait_until(lambda: len(span()) >= 40000, timeout=60, what="most of the second of tone in the guest's memory")
    rec = span()
    # The longest stretch without a gap (8 zeros in a row), 750 Hz and sample for sample the tone
    gaps = np.flatnonzero(np.convolve(rec == 0, np.ones(8), "valid") == 8)
    edges = [0, *[int(g) for g in gaps], len(rec)]
    a, b = max(zip(edges, edges[1:], strict=False), key=lambda e: e[1] - e[0])
    part = rec[a + 8 : b]
    assert len(part) >= 4800, f"no 100 ms of the tone without a gap ({len(part)} samples)"
    assert abs(dominant_hz(part) - 750) < 8, dominant_hz(part)
    ref = tone[: 4800 + 64].astype(np.float64)  # a period of 750 Hz is 64 samples
    best = max(np.corrcoef(part[:4800], ref[k : k + 4800])[0, 1] for k in range(64))
    assert best > 0.99, f"the guest's samples correlate {best:.3f} with the tone sent"
    assert other.command("audio", "audio")["record_starts"] == 0
    src = server.stats()["audio"]
    assert src["source"]["recording"] and src["source"]["record_bytes_sent"] >= 48000 * 4 * 0.5

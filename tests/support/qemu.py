"""A real QEMU serving SPICE (stock single-client spice-server), with a guest made here.

The guest is one 512-byte boot sector whose machine code is written out below as
bytes (16-bit real mode, no assembler needed). It hides the text cursor (so frames
compare exactly, with no blink), fills the 80x25 text screen with every character in
many colours, then echoes each typed key (BIOS int 16h) on the bottom row, white on
blue; it polls for keys from a `hlt` loop, so the BIOS updates the keyboard LEDs
(Caps Lock typed lights the LED, which QEMU reports back through SPICE). QEMU's own framebuffer is read back through QMP `screendump`, not through the
SPICE path under test.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np

QEMU = "qemu-system-x86_64"

# (machine code, what it does); offsets are from 0x7C00, jumps are relative.
BOOT_CODE = [
    ("FA", "cli"),
    ("31C0", "xor ax, ax"),
    ("8ED8", "mov ds, ax"),
    ("8ED0", "mov ss, ax"),
    ("BC007C", "mov sp, 0x7C00"),
    ("FB", "sti"),
    ("B401", "mov ah, 1          ; int 10h 01: cursor shape"),
    ("B90020", "mov cx, 0x2000     ; bit 5 of the start line: no cursor"),
    ("CD10", "int 0x10"),
    ("B800B8", "mov ax, 0xB800     ; text memory"),
    ("8EC0", "mov es, ax"),
    ("31FF", "xor di, di"),
    ("31DB", "xor bx, bx         ; cell number"),
    ("89D8", "fill: mov ax, bx   ; character = cell number"),
    ("88DC", "mov ah, bl"),
    ("80E47F", "and ah, 0x7F       ; colour = cell number, never blinking"),
    ("AB", "stosw"),
    ("43", "inc bx"),
    ("81FBD007", "cmp bx, 2000"),
    ("72F1", "jb fill"),
    ("BF000F", "mov di, 24*160     ; the bottom row"),
    ("F4", "key: hlt          ; sleep until an interrupt (the timer, a key)"),
    ("B401", "mov ah, 1          ; int 16h 01: a key waiting? (SeaBIOS sets the LEDs here too)"),
    ("CD16", "int 0x16"),
    ("74F9", "jz key"),
    ("31C0", "xor ax, ax"),
    ("CD16", "int 0x16           ; read it: al = its character"),
    ("B41F", "mov ah, 0x1F       ; white on blue"),
    ("AB", "stosw"),
    ("81FFA00F", "cmp di, 25*160"),
    ("72EC", "jb key"),
    ("BF000F", "mov di, 24*160     ; wrap to the row's start"),
    ("EBE7", "jmp key"),
]
TEXT_SIZE = (720, 400)  # 80x25 cells of 9x16 pixels
ECHO_ROW_Y = 24 * 16  # the top of the row typed keys appear on


def boot_image(path: Path) -> Path:
    code = b"".join(bytes.fromhex(h) for h, _ in BOOT_CODE)
    assert len(code) <= 510
    path.write_bytes(code + bytes(510 - len(code)) + b"\x55\xaa")
    return path


def have_qemu() -> bool:
    return shutil.which(QEMU) is not None


def read_ppm(path: Path) -> np.ndarray:
    """A binary PPM (P6, maxval 255) as (h, w, 3) RGB."""
    data = path.read_bytes()
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    assert fields[0] == b"P6" and fields[3] == b"255", fields
    w, h = int(fields[1]), int(fields[2])
    return np.frombuffer(data, dtype=np.uint8, count=w * h * 3, offset=pos + 1).reshape(h, w, 3)


class Qemu:
    """`qemu-system-x86_64` with the boot sector, SPICE on 127.0.0.1:port, QMP on a unix socket.

    `password`: the SPICE ticket through `-object secret` (never on the command line)."""

    def __init__(self, tmp: Path, port: int, password: str | None = None, tablet: bool = False, x509_dir: Path | None = None) -> None:
        """`x509_dir` (ca-cert.pem, server-cert.pem, server-key.pem): SPICE on TLS port `port` only."""
        self.tmp, self.port, self.password, self.tablet, self.x509_dir = tmp, port, password, tablet, x509_dir
        self.image = boot_image(tmp / "boot.img")
        self.qmp_path = tmp / f"qmp-{port}.sock"
        self.proc: subprocess.Popen | None = None
        self._qmp: socket.socket | None = None
        self._qmp_file = None
        self._shots = 0
        self.starts = 0
        self.start()

    def argv(self) -> list[str]:
        where = f"tls-port={self.port},x509-dir={self.x509_dir}" if self.x509_dir else f"port={self.port}"
        spice = f"{where},addr=127.0.0.1,streaming-video=off,jpeg-wan-compression=never,zlib-glz-wan-compression=never"
        args = [QEMU, "-nodefaults", "-machine", "pc", "-m", "16", "-vga", "std", "-display", "none"]
        args += ["-drive", f"file={self.image},format=raw,if=ide", "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        # QEMU's own record of the input it got (and of the LEDs the guest set), in its log
        args += ["-trace", "enable=input_event_*", "-trace", "enable=ps2_set_ledstate"]
        if self.tablet:  # an absolute pointer: spice-server then offers client mouse mode
            args += ["-usb", "-device", "usb-tablet"]
        if self.password is not None:
            secret = self.tmp / f"spice-secret-{self.port}"
            secret.write_text(self.password)
            secret.chmod(0o600)
            args += ["-object", f"secret,id=spicepw,file={secret}"]
            spice += ",password-secret=spicepw"
        else:
            spice += ",disable-ticketing=on"
        return [*args, "-spice", spice]

    def start(self) -> None:
        self.starts += 1
        self.log_path = self.tmp / f"qemu-{self.port}-{self.starts}.log"
        self.qmp_path.unlink(missing_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"qemu exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(str(self.qmp_path))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise RuntimeError("qemu's QMP socket never appeared") from None
                time.sleep(0.05)
        self._qmp = s
        self._qmp_file = s.makefile("rw")
        json.loads(self._qmp_file.readline())  # the greeting
        self.qmp("qmp_capabilities")

    def qmp(self, command: str, **arguments: object) -> object:
        assert self._qmp_file is not None
        msg: dict[str, object] = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self._qmp_file.write(json.dumps(msg) + "\n")
        self._qmp_file.flush()
        while True:
            reply = json.loads(self._qmp_file.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            return reply.get("return")

    def screendump(self) -> np.ndarray:
        """QEMU's own framebuffer as (h, w, 3) RGB."""
        self._shots += 1
        path = self.tmp / f"screendump-{self.port}-{self._shots}.ppm"
        self.qmp("screendump", filename=str(path))
        return read_ppm(path)

    def wait_booted(self, timeout: float = 30.0) -> np.ndarray:
        """Until the guest shows its pattern (cell 0 is a black blank, cell 1 blue on black)."""
        deadline = time.monotonic() + timeout
        while True:
            shot = self.screendump()
            if shot.shape[:2] == TEXT_SIZE[::-1] and self.pattern_shown(shot):
                return shot
            if time.monotonic() > deadline:
                raise TimeoutError("the guest never drew its pattern")
            time.sleep(0.1)

    @staticmethod
    def pattern_shown(shot: np.ndarray) -> bool:
        # cell 80 (row 1, column 0): attribute 0x50 = magenta background
        return bool((shot[16 + 8, 0] == (0xA8, 0x00, 0xA8)).all())

    def trace(self) -> str:
        """This run's log: QEMU's input trace events (input_event_key_number, _btn, _rel, _abs)."""
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        self.kill()

"""Files a client drops on its viewer window, saved under --file-xfer-dir (the agent's
FILE_XFER_START / DATA / STATUS).

Off unless a directory is given. A name is the client's word only for the last part of a
path: it is cut to its final component, stripped of control characters and leading dots
(no `..`, no hidden files), and never overwrites: `name (1).ext` and so on. Bytes go to a
private `.part` file first (0600, created exclusively) and are linked to the final name
only when all have arrived, so a reader of the directory never sees half a file; a
cancelled, failed or abandoned transfer (its client left) removes the part file. Each file
is bounded by --file-xfer-max-size, each client by MAX_ACTIVE transfers at once.

The writes are small (at most one AGENT_DATA message, 64 KiB from spice-gtk) and go to a
local directory; they run on the reactor thread.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .wire.enums import FILE_XFER_ERROR_GLIB_IO, G_IO_ERROR_INVALID_FILENAME, FileXferStatus

DEFAULT_MAX_SIZE = 100 * 1024 * 1024
MAX_ACTIVE = 8  # transfers one client may have open at once
MAX_NAME_BYTES = 200
GROUP = "vdagent-file-xfer"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


# VDAgentFileXferStatusError for a name we cannot use: spice-gtk says "Invalid filename".
BAD_NAME = bytes([FILE_XFER_ERROR_GLIB_IO]) + G_IO_ERROR_INVALID_FILENAME.to_bytes(4, "little")


class XferRefused(Exception):
    """A transfer the server does not take, with the STATUS to answer and extra data."""

    def __init__(self, status: FileXferStatus, reason: str, detail: bytes = b"") -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


def parse_start(text: bytes) -> tuple[str, int]:
    """(name, size) from FILE_XFER_START's key file text (GKeyFile: `[vdagent-file-xfer]`,
    `name=`, `size=`, string values escaped)."""
    group, values = None, {}
    for line in text.split(b"\0", 1)[0].decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1]
        elif group == GROUP and "=" in line:
            key, value = line.split("=", 1)
            values[key.strip()] = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), value.strip())
    try:
        return values["name"], int(values["size"])
    except (KeyError, ValueError):
        raise XferRefused(FileXferStatus.ERROR, "no name or size in FILE_XFER_START", BAD_NAME) from None


def safe_name(name: str) -> str:
    """The last path component of `name` (either slash), without control characters or
    leading dots, at most MAX_NAME_BYTES of UTF-8; "file" if nothing is left."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _CONTROL.sub("", base).strip().lstrip(".").strip()
    while len(base.encode()) > MAX_NAME_BYTES:
        stem, dot, ext = base.rpartition(".")
        base = (stem[:-1] + dot + ext) if dot and len(ext) < 16 and stem else base[:-1]
    return base or "file"


def numbered(name: str, n: int) -> str:
    if n == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem} ({n}).{ext}" if dot and stem else f"{name} ({n})"


@dataclass
class Transfer:
    id: int
    name: str  # the client's name, sanitised
    size: int
    part: Path
    fd: int
    received: int = 0


class FileReceiver:
    """The --file-xfer-dir policy and the transfers of one client."""

    def __init__(self, directory: str | Path | None, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self.directory = Path(directory) if directory else None
        self.max_size = max_size
        self.active: dict[int, Transfer] = {}
        self.received = 0  # files saved
        self.refused = 0

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def start(self, xfer_id: int, text: bytes, allowed: bool) -> Transfer:
        """A new transfer (raises XferRefused with the status to answer)."""
        if self.directory is None:
            raise XferRefused(FileXferStatus.DISABLED, "file transfer is off (no --file-xfer-dir)")
        if not allowed:
            raise XferRefused(FileXferStatus.DISABLED, "view-only clients may not send files")
        if xfer_id in self.active:
            raise XferRefused(FileXferStatus.ERROR, f"transfer id {xfer_id} is in use")
        if len(self.active) >= MAX_ACTIVE:
            raise XferRefused(FileXferStatus.ERROR, f"{MAX_ACTIVE} transfers open already")
        name, size = parse_start(text)
        if size < 0 or size > self.max_size:
            raise XferRefused(
                FileXferStatus.NOT_ENOUGH_SPACE,
                f"{size} bytes is over --file-xfer-max-size {self.max_size}",
                self.max_size.to_bytes(8, "little"),
            )
        try:
            free = shutil.disk_usage(self.directory).free
        except OSError as exc:
            raise XferRefused(FileXferStatus.ERROR, f"{self.directory}: {exc.strerror}") from None
        if size > free:
            raise XferRefused(FileXferStatus.NOT_ENOUGH_SPACE, f"{size} bytes, {free} free", free.to_bytes(8, "little"))
        part = self.directory / f".{secrets.token_hex(8)}.part"
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            raise XferRefused(FileXferStatus.ERROR, f"{self.directory}: {exc.strerror}") from None
        t = Transfer(xfer_id, safe_name(name), size, part, fd)
        self.active[xfer_id] = t
        return t

    def data(self, xfer_id: int, data: bytes) -> tuple[Transfer, Path | None] | None:
        """Bytes for a transfer: (it, the saved file once complete, else None); None for an id
        that is not open (spice-gtk may send an empty last piece after our SUCCESS).
        Raises XferRefused (the transfer is dropped) on too many bytes or a write error."""
        t = self.active.get(xfer_id)
        if t is None:
            return None
        if t.received + len(data) > t.size:
            self.drop(xfer_id)
            raise XferRefused(FileXferStatus.ERROR, f"more than the {t.size} bytes announced")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(t.fd, view) :]
        except OSError as exc:
            self.drop(xfer_id)
            raise XferRefused(FileXferStatus.ERROR, f"write failed: {exc.strerror}") from None
        t.received += len(data)
        if t.received < t.size:
            return t, None
        return t, self._finish(t)

    def finish_empty(self, t: Transfer) -> Path | None:
        """A zero-byte file is complete at its start."""
        return self._finish(t) if t.size == 0 else None

    def _finish(self, t: Transfer) -> Path:
        del self.active[t.id]
        os.close(t.fd)
        assert self.directory is not None
        try:
            for n in range(10000):
                final = self.directory / numbered(t.name, n)
                try:
                    os.link(t.part, final)  # fails if the name exists: never overwrites
                except FileExistsError:
                    continue
                self.received += 1
                return final
            raise XferRefused(FileXferStatus.ERROR, f"no free name for {t.name}", BAD_NAME)
        except OSError as exc:
            raise XferRefused(FileXferStatus.ERROR, f"saving failed: {exc.strerror}") from None
        finally:
            _unlink(t.part)

    def drop(self, xfer_id: int) -> Transfer | None:
        """Cancel a transfer: its part file goes."""
        t = self.active.pop(xfer_id, None)
        if t is not None:
            os.close(t.fd)
            _unlink(t.part)
        return t

    def drop_all(self) -> list[Transfer]:
        return [t for t in (self.drop(i) for i in list(self.active)) if t is not None]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass

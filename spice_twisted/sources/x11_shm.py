"""A System V shared memory segment the X server writes screen pixels into (MIT-SHM).

Python has no SysV shm binding in the standard library, so the four libc calls go
through ctypes: shmget (create a private segment), shmat (map it here), shmctl
IPC_RMID (mark it for removal once every process detached: a crash cannot leak it)
and shmdt. The segment is read as a numpy array over the mapped address: what the X
server wrote by ShmGetImage is visible without a copy.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_RMID = 0

_libc: ctypes.CDLL | None = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
        lib.shmget.restype = ctypes.c_int
        lib.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        lib.shmat.restype = ctypes.c_void_p
        lib.shmdt.argtypes = [ctypes.c_void_p]
        lib.shmdt.restype = ctypes.c_int
        lib.shmctl.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
        lib.shmctl.restype = ctypes.c_int
        _libc = lib
    return _libc


class ShmSegment:
    """`size` bytes of private shared memory, mapped here; `array` is a uint8 view of it."""

    def __init__(self, size: int) -> None:
        lib = _lib()
        self.size = size
        self.shmid = lib.shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
        if self.shmid < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"shmget({size}): {os.strerror(err)}")
        addr = lib.shmat(self.shmid, None, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            err = ctypes.get_errno()
            lib.shmctl(self.shmid, IPC_RMID, None)
            raise OSError(err, f"shmat: {os.strerror(err)}")
        self.addr: int | None = addr
        self._removed = False
        self.array = np.frombuffer((ctypes.c_uint8 * size).from_address(addr), dtype=np.uint8)

    def mark_removed(self) -> None:
        """Once the X server attached it too: the segment goes when both detach (or die)."""
        if not self._removed:
            self._removed = True
            _lib().shmctl(self.shmid, IPC_RMID, None)

    def close(self) -> None:
        self.mark_removed()
        if self.addr is not None:
            self.array = np.zeros(0, dtype=np.uint8)  # no view may outlive the mapping
            _lib().shmdt(ctypes.c_void_p(self.addr))
            self.addr = None

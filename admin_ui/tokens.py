"""The admin token (from a file, or generated into a 0600 file) and browser sessions with CSRF."""

from __future__ import annotations

import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass

SESSION_COOKIE = "spice_admin_session"
LOGIN_COOKIE = "spice_admin_login"
SESSION_LIFETIME = 12 * 3600.0


def read_token_file(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if len(token) < 16:
        raise ValueError(f"the token in {path} is shorter than 16 characters")
    return token


def generate_token_file(port: int, directory: str | None = None) -> tuple[str, str]:
    """A fresh token written to a file only its owner can read; returns (token, path)."""
    token = secrets.token_urlsafe(32)
    directory = directory or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    # The pid keeps a second server (that will fail to listen) from replacing our file.
    path = os.path.join(directory, f"spice-twisted-admin-{port}-{os.getpid()}.token")
    if os.path.lexists(path):
        os.unlink(path)  # never write through a link someone else left there
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token, path


@dataclass
class Session:
    csrf: str
    expires: float
    number: int = 0  # what the log calls it ("admin session 3"): the cookie itself is a secret


class Sessions:
    """Browser sessions after a login with the token; each carries its CSRF token."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._sessions: dict[str, Session] = {}
        self._made = 0

    def token_ok(self, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    def create(self) -> tuple[str, Session]:
        self._expire()
        sid = secrets.token_urlsafe(32)
        self._made += 1
        s = Session(secrets.token_urlsafe(32), time.time() + SESSION_LIFETIME, self._made)
        self._sessions[sid] = s
        return sid, s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None or s.expires < time.time():
            self._sessions.pop(sid, None)
            return None
        return s

    def drop(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    def _expire(self) -> None:
        now = time.time()
        for sid in [k for k, v in self._sessions.items() if v.expires < now]:
            del self._sessions[sid]

"""A small client for the admin REST API (urllib, so no extra dependency)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

TOKEN = "admin-token-for-tests-0123456789"  # what the `admin` fixture puts in its token file


def write_token(path: os.PathLike, token: str = TOKEN) -> os.PathLike:
    """A token file as it must be: readable by its owner only (the server refuses others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


class Api:
    def __init__(self, port: int, token: str | None) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None, token: str | None = "default") -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = self.token if token == "default" else token
        if tok:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                status = r.status
                ctype = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            text, status, ctype = e.read(), e.code, e.headers.get("Content-Type", "")
        return status, (json.loads(text) if "json" in ctype else text.decode())

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, out = self.call(method, path, body)
        assert status == 200, (status, out)
        return out

"""The audit log: who connected, how their link ended, failed tickets, disconnects with their
reason, and every admin action with the admin session that did it.

Events travel through twisted.logger like every other log event, in the namespace
`spice_twisted.audit` and without a format string, so the ordinary text log skips them.
`AuditFileObserver` (installed for --audit-log FILE) writes each one as one JSON line:
`{"time": "2026-05-09T10:00:00.123456Z", "event": "link", ...fields}`. Nothing secret is
ever a field: no password, no admin token, no session cookie.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import IO, Any

from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher
from zope.interface import implementer

NAMESPACE = "spice_twisted.audit"


class Audit:
    def __init__(self) -> None:
        self._log = Logger(namespace=NAMESPACE)

    def __call__(self, event: str, **fields: Any) -> None:
        self._log.emit(LogLevel.info, None, audit_event=event, audit_fields=fields)


audit = Audit()


def audit_record(event: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON object for one log event, or None if it is not an audit event."""
    if event.get("log_namespace") != NAMESPACE or "audit_event" not in event:
        return None
    when = datetime.datetime.fromtimestamp(event.get("log_time") or 0, datetime.UTC)
    record = {"time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "event": event["audit_event"]}
    for k, v in event.get("audit_fields", {}).items():
        record[k] = v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
    return record


@implementer(ILogObserver)
class AuditFileObserver:
    """Appends audit events to a file as JSON lines (the file is made 0600)."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.file: IO[str] = os.fdopen(fd, "a", encoding="utf-8", buffering=1)
        self.path = path

    def __call__(self, event: dict[str, Any]) -> None:
        record = audit_record(event)
        if record is None:
            return
        try:
            self.file.write(json.dumps(record, sort_keys=False) + "\n")
        except (OSError, ValueError):  # a full disk must not stop the server
            pass

    def start(self) -> None:
        globalLogPublisher.addObserver(self)

    def stop(self) -> None:
        globalLogPublisher.removeObserver(self)
        self.file.close()

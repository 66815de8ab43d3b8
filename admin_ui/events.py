"""The dashboard's events list: the last audit events (spice_twisted/audit.py) kept in memory.

The audit log already records every connect, disconnect with its reason, failed ticket and
admin action as log events; `RecentEvents` listens to the same events (whether or not
--audit-log writes them to a file) and keeps the last `keep` of those a person watching
the dashboard wants, numbered so a poller asks only for the new ones. The per-channel
lines (`connect`, `disconnect`, `link` OK: four to six per client) stay in the file only.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.logger import globalLogPublisher

from spice_twisted.audit import audit_record

KEEP = 200
# Audit events shown: a client's session beginning and end (with its reason), failed tickets,
# refused links and connections, and the admin's actions (logins included).
SHOWN = frozenset({"session_start", "session_end", "auth_failure", "admin", "admin_login_refused", "refused", "refused_summary"})


def _reactor_later(fn: Callable[..., Any], *args: Any) -> None:
    from twisted.internet import reactor

    reactor.callFromThread(fn, *args)  # type: ignore[attr-defined]


def shown(record: dict[str, Any]) -> bool:
    if record["event"] == "link":
        return record.get("result") != "OK"  # a refused link; the OK ones are per channel
    return record["event"] in SHOWN


class RecentEvents:
    """A bounded, numbered tail of the audit events. It observes the global log publisher
    through a weak reference, so an AdminApp that is dropped takes its observer with it."""

    def __init__(self, keep: int = KEEP, publisher: Any = globalLogPublisher, later: Callable[..., Any] | None = None) -> None:
        self.events: deque[dict[str, Any]] = deque(maxlen=keep)
        self.seq = 0
        self._publisher = publisher
        me = weakref.ref(self)
        # Never off the publisher while it loops over its observers (the next one would miss
        # the event): from the reactor's next turn. callFromThread: events come from any thread.
        later = later or _reactor_later
        gone: list[bool] = []

        def observer(event: dict[str, Any]) -> None:
            tail = me()
            if tail is not None:
                tail.observe(event)
            elif not gone:
                gone.append(True)
                later(publisher.removeObserver, observer)

        self._observer = observer
        publisher.addObserver(observer)

    def observe(self, event: dict[str, Any]) -> None:
        record = audit_record(event)
        if record is None or not shown(record):
            return
        self.seq += 1
        record["seq"] = self.seq
        record["unix_time"] = event.get("log_time")
        self.events.append(record)

    def since(self, seq: int) -> list[dict[str, Any]]:
        """The kept events numbered above `seq`, oldest first."""
        return [e for e in self.events if e["seq"] > seq]

    def close(self) -> None:
        self._publisher.removeObserver(self._observer)

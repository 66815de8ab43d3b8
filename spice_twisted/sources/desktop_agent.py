"""What a source does for the server's built-in agent: the desktop's clipboard and size.

The SPICE agent protocol (wire/agent.py, channels/agent.py) and the multi-client policy
(who may paste, who may resize) live in the server; a source only knows its desktop. The
clipboard is eager: whoever owns a selection hands over its contents at once (text and
images both bounded by MAX_CLIPBOARD), so the server can serve every client and the
desktop without routing a paste back to a client that may have left.

Selections are "CLIPBOARD" and "PRIMARY"; contents are keyed by MIME type
("text/plain;charset=utf-8", "image/png").
"""

from __future__ import annotations

from typing import Protocol

TEXT = "text/plain;charset=utf-8"
PNG = "image/png"
SELECTIONS = ("CLIPBOARD", "PRIMARY")
MAX_CLIPBOARD = 16 * 1024 * 1024  # bytes of one selection's contents, all types together

Contents = dict[str, bytes]


class AgentSink(Protocol):
    """What a source calls when its desktop's clipboard changes (set by the server)."""

    def desktop_clipboard(self, selection: str, contents: Contents | None) -> None:
        """The desktop's `selection` now holds `contents` (None: it was cleared or released)."""

    def desktop_changed(self) -> None:
        """What the desktop can do changed (`clipboard_types`, `can_resize`: a VM whose own
        agent connected or left): every client is told the agent's capabilities again."""


class DesktopAgent:
    """The defaults: no clipboard, no resize. A source that can do more overrides them and
    returns itself (or a helper object) from `DisplaySource.desktop_agent()`."""

    clipboard_types: frozenset[str] = frozenset()  # MIME types the desktop takes and gives
    can_resize: bool = False

    def start_agent(self, sink: AgentSink) -> None:
        """Called once by the server before any other agent call."""

    def set_clipboard(self, selection: str, contents: Contents | None) -> None:
        """A client's copy, allowed by the policy: the desktop's `selection` becomes
        `contents` (None releases it). Must not call back desktop_clipboard for it."""

    def resize(self, width: int, height: int) -> None:
        """The controlling client asks for this desktop size (its first monitor); the
        source resizes its surface when (and if) the desktop follows."""

"""The VM source's side of the built-in agent: a pass-through to the VM's own agent.

Our clients talk to the server's built-in agent; the VM's agent (spice-vdagent in the
guest) talks to the one spice-gtk client the helper runs. This object joins the two: a
client's copy (allowed by the server's policy) goes to the helper, which grabs the VM's
selection with it and answers the VM's requests; a copy in the VM comes back whole from
the helper (it asks for every type we take at once) and goes to the sink. A resize becomes
spice-gtk's monitor config. While the VM has no agent (none installed, not started yet,
the VM away) this offers nothing: no clipboard types, no resize.
"""

from __future__ import annotations

from typing import Protocol

from twisted.logger import Logger

from ..render.surface import SurfaceBound
from . import vm_protocol as proto
from .desktop_agent import PNG, SELECTIONS, TEXT, AgentSink, Contents, DesktopAgent


class HelperLink(Protocol):
    def send(self, msg: proto.SetClipboard | proto.SetDisplaySize) -> None: ...


class AgentHost(Protocol):
    """What the agent needs of the VM source (not the source itself: no import cycle)."""

    max_surface: SurfaceBound

    @property
    def helper(self) -> HelperLink | None: ...


F = proto.AgentFlags


class VmAgent(DesktopAgent):
    log = Logger()

    def __init__(self, source: AgentHost) -> None:
        self.source = source
        self.sink: AgentSink | None = None
        self.flags = 0  # what the VM's agent can do (vm_protocol.AgentFlags), 0 without one
        self.held: set[str] = set()  # selections the VM holds, as told to the sink
        self.to_vm = 0
        self.from_vm = 0
        self.resizes = 0

    @property  # type: ignore[override]
    def clipboard_types(self) -> frozenset[str]:
        return frozenset({TEXT, PNG}) if self.flags & F.CLIPBOARD else frozenset()

    @property  # type: ignore[override]
    def can_resize(self) -> bool:
        return bool(self.flags & F.MONITORS)

    def selections(self) -> tuple[str, ...]:
        """The selections the VM's agent knows (PRIMARY only with its selection capability)."""
        if not self.flags & F.CLIPBOARD:
            return ()
        return SELECTIONS if self.flags & F.PRIMARY else ("CLIPBOARD",)

    # --- the server's calls -----------------------------------------------------------------
    def start_agent(self, sink: AgentSink) -> None:
        self.sink = sink

    def set_clipboard(self, selection: str, contents: Contents | None) -> None:
        if selection not in self.selections():
            return
        kept = {k: v for k, v in (contents or {}).items() if k in (TEXT, PNG)}
        if sum(map(len, kept.values())) > proto.MAX_CLIPBOARD:
            return
        self.held.discard(selection)  # the VM holds the client's copy now, not its own
        if self._send(proto.SetClipboard(selection, kept)):
            self.to_vm += 1

    def resize(self, width: int, height: int) -> None:
        if not self.can_resize:
            return
        bound = self.source.max_surface
        if not (0 < width <= proto.MAX_SURFACE_SIDE and 0 < height <= proto.MAX_SURFACE_SIDE and bound.allows(width, height)):
            self.log.info("a resize of the VM to {w}x{h} was refused: past --max-surface", w=width, h=height)
            return
        if self._send(proto.SetDisplaySize(width, height)):
            self.resizes += 1

    def _send(self, msg: proto.SetClipboard | proto.SetDisplaySize) -> bool:
        helper = self.source.helper  # the VM's agent may come before its first picture
        if helper is None or not self.flags:
            return False
        helper.send(msg)
        return True

    # --- the helper's frames ----------------------------------------------------------------
    def message(self, msg: proto.AgentState | proto.VmClipboard) -> None:
        if isinstance(msg, proto.AgentState):
            changed = msg.flags != self.flags
            if changed:
                self.log.info("the VM's agent: {what}", what=describe_flags(msg.flags))
            self.flags = msg.flags
            if not self.flags & F.CLIPBOARD:
                self._clear()
            if changed and self.sink is not None:
                self.sink.desktop_changed()  # clients learn the agent came, went or changed
        elif msg.selection in self.selections():
            self.from_vm += 1
            if msg.contents:
                self.held.add(msg.selection)
            else:
                self.held.discard(msg.selection)
            if self.sink is not None:
                self.sink.desktop_clipboard(msg.selection, msg.contents or None)

    def gone(self) -> None:
        """The helper or the VM went away: no agent until it says otherwise. (A helper that
        dies has no last AgentState to send: the clients must hear it from here.)"""
        had, self.flags = self.flags, 0
        self._clear()
        if had and self.sink is not None:
            self.log.info("the VM's agent: none (the VM is not served)")
            self.sink.desktop_changed()

    def _clear(self) -> None:
        """What the VM held is gone with its agent."""
        held, self.held = self.held, set()
        if self.sink is not None:
            for selection in sorted(held):
                self.sink.desktop_clipboard(selection, None)

    def describe(self) -> dict[str, object]:
        return {"vm_agent": describe_flags(self.flags), "to_vm": self.to_vm, "from_vm": self.from_vm, "resizes": self.resizes}


def describe_flags(flags: int) -> str:
    if not flags & F.CONNECTED:
        return "none"
    can = [name for bit, name in ((F.CLIPBOARD, "clipboard"), (F.PRIMARY, "primary"), (F.MONITORS, "resize")) if flags & bit]
    return "connected" + (f" ({', '.join(can)})" if can else "")

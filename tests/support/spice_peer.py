"""An upstream SPICE server scripted by a test: a stand-in for a VM that QEMU cannot be
made to be (one that announces a 16384x16384 primary surface: QEMU's std VGA stops at
16000 pixels a side and 256 MiB of video memory) or that draws faster than a test can
make a guest draw.

It is a peer of the server under test (whose VM source connects to it through spice-gtk),
not a stand-in for any of our own components. It speaks just enough SPICE for spice-gtk:
the link (any ticket is accepted), a main channel that lists one display channel, and
on that display channel a primary surface and what the test sends (COPY_BITS, MARK).
Built from the project's sans-IO wire modules; one thread per connection.

With `agent=True` it also plays a VM's agent (spice-vdagent in a guest) on the main
channel: agent_connected in MAIN_INIT, AGENT_DATA both ways carrying VDAgent messages
(chunked at 2048 bytes, reassembled), tokens, ANNOUNCE_CAPABILITIES, the clipboard with
selections (it answers every CLIPBOARD_REQUEST from what it was told to copy) and
MONITORS_CONFIG (recorded, answered with a REPLY). The VDAgent framing and layouts are
the project's sans-IO ones (spice_twisted/wire/agent.py), the SPICE framing wire/framer.py.
"""

from __future__ import annotations

import socket
import threading
import time

from spice_twisted.wire import agent as vd
from spice_twisted.wire.enums import (
    AgentCap,
    AgentMsg,
    AgentReply,
    ChannelType,
    ClipboardType,
    ClipType,
    CommonCap,
    LinkError,
    MsgcMain,
    SurfaceFlags,
    SurfaceFormat,
)
from spice_twisted.wire.framer import Framer, HeaderWriter
from spice_twisted.wire.link import LinkDone, LinkFailed, LinkRequested, ServerLink, TicketReceived
from spice_twisted.wire.messages import encode_body, message
from spice_twisted.wire.ticket import LinkKey

SESSION_ID = 0x5EED

# The VDAgent names the tests use (spice_twisted/wire/enums.py has them all)
VD_MONITORS_CONFIG, VD_CLIPBOARD = AgentMsg.MONITORS_CONFIG, AgentMsg.CLIPBOARD
VD_CLIPBOARD_GRAB, VD_CLIPBOARD_REQUEST = AgentMsg.CLIPBOARD_GRAB, AgentMsg.CLIPBOARD_REQUEST
VD_UTF8_TEXT, VD_PNG = ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG
AGENT_CAPS = frozenset({AgentCap.MONITORS_CONFIG, AgentCap.REPLY, AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.CLIPBOARD_SELECTION})
MAX_CLIPBOARD = 32 * 1024 * 1024  # what the peer's agent takes in one CLIPBOARD


class _Conn:
    def __init__(self, sock: socket.socket, mini: bool) -> None:
        self.sock = sock
        self.headers = HeaderWriter(mini)
        self.mini = mini
        self.lock = threading.Lock()

    def send(self, channel: ChannelType | None, name: str, fields: dict | None = None) -> None:
        msg = message(channel, name)
        body = encode_body(msg, fields or {})
        with self.lock:
            self.sock.sendall(self.headers.frame(msg.id, body))

    def send_raw(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def frame(self, channel: ChannelType | None, name: str, fields: dict | None = None) -> bytes:
        msg = message(channel, name)
        return self.headers.frame(msg.id, encode_body(msg, fields or {}))

    def read_messages(self, leftover: bytes):
        """(type, body) of each client message until the connection ends."""
        framer = Framer(self.mini)
        data = leftover
        while True:
            yield from framer.feed(data)
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return


class SpicePeer:
    """Listens on 127.0.0.1 (`port`); the display channel, once linked, is `display`."""

    def __init__(self, width: int, height: int, agent: bool = False) -> None:
        self.width, self.height = width, height
        self.agent = agent
        self.main: _Conn | None = None
        self.agent_messages: list[tuple[int, bytes]] = []  # (VDAgent type, body) from the client
        self.agent_started = threading.Event()
        self.copied: dict[int, dict[int, bytes]] = {}  # selection -> VDAgent type -> bytes ("in the VM")
        self._agent_stream = vd.AgentStream(MAX_CLIPBOARD)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.display: _Conn | None = None
        self.display_linked = threading.Event()
        self.links: list[str] = []
        self.errors: list[str] = []
        self._socks: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _link(self, sock: socket.socket) -> tuple[int, LinkDone] | None:
        link, key = ServerLink(), LinkKey()
        channel = 0
        while True:
            data = sock.recv(65536)
            if not data:
                self.errors.append(f"link: closed in state {link.state.value}")
                return None
            events = link.receive_data(data)
            while events:
                ev = events.pop(0)
                if isinstance(ev, LinkRequested):
                    channel = ev.request.channel_type
                    reply, more = link.accept(
                        key.public_der, frozenset({CommonCap.AUTH_SELECTION, CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER}), frozenset()
                    )
                    sock.sendall(reply)
                    events += more
                elif isinstance(ev, TicketReceived):
                    result, done = link.result(LinkError.OK)
                    sock.sendall(result)
                    assert done is not None
                    return channel, done
                elif isinstance(ev, LinkFailed):
                    self.errors.append(f"link failed: {ev.reason}")
                    sock.sendall(ev.reply)
                    return None

    def _serve(self, sock: socket.socket) -> None:
        try:
            linked = self._link(sock)
            if linked is None:
                return
            channel, done = linked
            conn = _Conn(sock, done.mini_header)
            self.links.append(ChannelType(channel).name.lower())
            if channel == ChannelType.MAIN:
                self._main(conn, done.leftover)
            elif channel == ChannelType.DISPLAY:
                self._display(conn, done.leftover)
        except OSError:
            pass
        except Exception as exc:  # a bug in the peer: shown by the test that uses it
            self.errors.append(repr(exc))
        finally:
            sock.close()

    def _main(self, conn: _Conn, leftover: bytes) -> None:
        init = {
            "session_id": SESSION_ID,
            "display_channels_hint": 1,
            "supported_mouse_modes": 1,
            "current_mouse_mode": 1,
            "agent_connected": int(self.agent),
            "agent_tokens": 16 if self.agent else 0,
            "multi_media_time": 0,
            "ram_hint": 0,
        }
        conn.send(ChannelType.MAIN, "INIT", init)
        self.main = conn
        for msg_type, body in conn.read_messages(leftover):
            if msg_type == MsgcMain.ATTACH_CHANNELS:
                conn.send(ChannelType.MAIN, "CHANNELS_LIST", {"channels": [{"type": ChannelType.DISPLAY, "id": 0}]})
            elif msg_type == MsgcMain.AGENT_START and self.agent:
                self.agent_started.set()
            elif msg_type == MsgcMain.AGENT_DATA and self.agent:
                conn.send(ChannelType.MAIN, "AGENT_TOKEN", {"num_tokens": 1})  # one back per message
                self._agent_data(body)

    # --- the agent ------------------------------------------------------------------------
    def _agent_data(self, chunk: bytes) -> None:
        """Chunks of VDAgent messages from the client: whole messages are handled."""
        for msg in self._agent_stream.feed(chunk):
            self.agent_messages.append((msg.type, msg.data))
            self._agent_message(msg.type, msg.data)

    def _agent_message(self, kind: int, body: bytes) -> None:
        if kind == AgentMsg.ANNOUNCE_CAPABILITIES:
            if vd.decode_message(kind, body, selection=True)["request"]:
                self.agent_send(AgentMsg.ANNOUNCE_CAPABILITIES, vd.caps_message(AGENT_CAPS, request=False))
        elif kind == AgentMsg.MONITORS_CONFIG:
            reply = {"type": AgentMsg.MONITORS_CONFIG, "error": AgentReply.SUCCESS}
            self.agent_send(AgentMsg.REPLY, vd.encode_message(AgentMsg.REPLY, reply))
        elif kind == AgentMsg.CLIPBOARD_REQUEST:
            req = vd.decode_message(kind, body, selection=True)
            sel, want = req["selection"], req["clip_type"]
            data = self.copied.get(sel, {}).get(want)
            if data is not None:
                self.agent_send(AgentMsg.CLIPBOARD, clipboard_body(AgentMsg.CLIPBOARD, sel, clip_type=want, data=data))

    def agent_send(self, kind: int, body: bytes) -> None:
        """One VDAgent message to the client, in AGENT_DATA chunks of at most 2048 bytes."""
        assert self.main is not None
        for piece in vd.chunks(kind, body):
            self.main.send(ChannelType.MAIN, "AGENT_DATA", {"data": piece})

    def copy(self, selection: int, contents: dict[int, bytes]) -> None:
        """The guest copies: its agent grabs `selection` with these types."""
        self.copied[selection] = contents
        self.agent_send(AgentMsg.CLIPBOARD_GRAB, clipboard_body(AgentMsg.CLIPBOARD_GRAB, selection, types=list(contents)))

    def release(self, selection: int) -> None:
        self.copied.pop(selection, None)
        self.agent_send(AgentMsg.CLIPBOARD_RELEASE, clipboard_body(AgentMsg.CLIPBOARD_RELEASE, selection))

    def agent_disconnect(self) -> None:
        assert self.main is not None
        self.main.send(ChannelType.MAIN, "AGENT_DISCONNECTED", {"error_code": 0})

    def wait_agent(self, kind: int, pred=lambda body: True, timeout: float = 20.0, start: int = 0) -> bytes:
        """The body of the first VDAgent message of `kind` (from index `start`) that `pred` likes."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for k, body in self.agent_messages[start:]:
                if k == kind and pred(body):
                    return body
            time.sleep(0.05)
        raise AssertionError(f"no VDAgent message {kind} from the client; got {[k for k, _ in self.agent_messages]}")

    def _display(self, conn: _Conn, leftover: bytes) -> None:
        self.surface(conn, self.width, self.height)
        self.display = conn
        self.display_linked.set()
        for _ in conn.read_messages(leftover):
            pass  # DISPLAY_INIT, preferences: nothing to answer

    def surface(self, conn: _Conn, width: int, height: int) -> None:
        """A new primary surface of this size (the old one destroyed first), then a MARK."""
        if self.display is not None:
            conn.send(ChannelType.DISPLAY, "SURFACE_DESTROY", {"surface_id": 0})
        fields = {"surface_id": 0, "width": width, "height": height, "format": SurfaceFormat.FMT_32_xRGB, "flags": SurfaceFlags.PRIMARY}
        conn.send(ChannelType.DISPLAY, "SURFACE_CREATE", fields)
        conn.send(ChannelType.DISPLAY, "MARK")

    def resize(self, width: int, height: int) -> None:
        assert self.display is not None
        self.surface(self.display, width, height)

    def copy_bits(self, n: int, side: int = 8) -> None:
        """n COPY_BITS, each its own write (so each reaches spice-gtk on its own): a small
        square moved by one pixel, n draws the client has to show."""
        conn = self.display
        assert conn is not None
        for i in range(n):
            x = 1 + (i * side) % max(side, self.width_shown - 2 * side)
            box = {"top": 0, "left": x, "bottom": side, "right": x + side}
            fields = {"surface_id": 0, "box": box, "clip_type": ClipType.NONE, "src_pos": {"x": x - 1, "y": 1}}
            conn.send(ChannelType.DISPLAY, "COPY_BITS", fields)

    width_shown = 640  # COPY_BITS stay inside this many columns of the surface

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        for s in self._socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def clipboard_body(kind: AgentMsg, selection: int, **fields: object) -> bytes:
    """A clipboard message's body with the selection prefix (the peer's agent has the cap)."""
    return vd.encode_message(kind, {"selection": selection, **fields}, selection=True)


def clipboard_fields(kind: AgentMsg, body: bytes) -> dict:
    """The fields of a clipboard message from the client (selection, clip_type, types, data)."""
    return vd.decode_message(kind, body, selection=True)

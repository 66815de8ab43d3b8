"""A main channel of our own on the wire that speaks the agent protocol byte by byte: for
what spice-gtk never sends (path names with `../`, lies, floods, tokens never returned)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from spice_twisted.wire.agent import AgentStream, caps_message, chunks, decode_message, encode_message
from spice_twisted.wire.enums import AgentMsg, MsgcCommon, MsgcMain, MsgCommon, MsgMain
from support.rawclient import _main_session, recv_exact


class RawAgent:
    """Links a main channel, answers PINGs, reassembles the server's agent messages (with
    `selection` prefixes if asked) and counts its AGENT_TOKENs."""

    def __init__(self, port: int, selection: bool = False) -> None:
        self.sock, self.session_id = _main_session(port)
        self.selection = selection
        self.stream = AgentStream(max_clipboard=64 << 20)
        self.messages: list[tuple[int, dict[str, Any]]] = []
        self.tokens_returned = 0
        self.closed = False
        self._cond = threading.Condition()
        self.sock.settimeout(None)
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            while True:
                msg_type, size = struct.unpack("<HI", recv_exact(self.sock, 6))
                body = recv_exact(self.sock, size)
                if msg_type == MsgCommon.PING:
                    ping_id, ts = struct.unpack_from("<IQ", body)
                    self.sock.sendall(struct.pack("<HI", MsgcCommon.PONG, 12) + struct.pack("<IQ", ping_id, ts))
                elif msg_type == MsgMain.AGENT_TOKEN:
                    with self._cond:
                        self.tokens_returned += struct.unpack("<I", body)[0]
                        self._cond.notify_all()
                elif msg_type == MsgMain.AGENT_DATA:
                    for m in self.stream.feed(body):
                        fields = decode_message(m.type, m.data, self.selection) if m.type in AgentMsg._value2member_map_ else {}
                        with self._cond:
                            self.messages.append((m.type, fields))
                            self._cond.notify_all()
        except (OSError, ConnectionError):
            pass
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def raw(self, msg_type: int, body: bytes) -> None:
        self.sock.sendall(struct.pack("<HI", msg_type, len(body)) + body)

    def start(self, tokens: int = 0xFFFFFFFF, caps: frozenset[int] = frozenset()) -> None:
        self.raw(MsgcMain.AGENT_START, struct.pack("<I", tokens))
        self.send(AgentMsg.ANNOUNCE_CAPABILITIES, caps_message(caps, request=False))

    def send(self, kind: AgentMsg, data: bytes) -> None:
        for piece in chunks(kind, data):
            self.raw(MsgcMain.AGENT_DATA, piece)

    def send_fields(self, kind: AgentMsg, **fields: Any) -> None:
        self.send(kind, encode_message(kind, fields, self.selection))

    def wait(self, kind: AgentMsg, timeout: float = 20.0, start: int = 0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for t, f in self.messages[start:]:
                    if t == kind and all(f.get(k) == v for k, v in match.items()):
                        return f
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError(f"no {kind.name} {match}; got {[(AgentMsg(t).name, f) for t, f in self.messages[-10:]]}")
                self._cond.wait(min(left, 0.2))

    def wait_closed(self, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self.closed and time.monotonic() < deadline:
                self._cond.wait(0.2)
            return self.closed

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

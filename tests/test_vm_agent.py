"""The VM source's desktop agent: a pass-through to the upstream's own agent.

The upstream is tests/support/spice_peer.py playing a VM whose agent is running (QEMU with
spice-vdagent in a guest cannot run here). The server under test is real, its spice-gtk
helper is real; the test drives the source's desktop agent through the harness (the
server's own agent protocol to clients lands separately) and watches the VDAgent messages
the helper's spice-gtk sends upstream, and the sink's calls for what the "VM" copies.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.processes import wait_until
from support.spice_peer import (
    VD_CLIPBOARD,
    VD_CLIPBOARD_GRAB,
    VD_CLIPBOARD_REQUEST,
    VD_MONITORS_CONFIG,
    VD_PNG,
    VD_UTF8_TEXT,
    SpicePeer,
    clipboard_body,
    clipboard_fields,
)

from spice_twisted.sources import vm_protocol as proto
from spice_twisted.sources.desktop_agent import PNG, TEXT
from spice_twisted.wire import agent as vd

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # opaque bytes: passed, not parsed


@pytest.fixture
def peer():
    p = SpicePeer(640, 480, agent=True)
    yield p
    p.close()


def set_clipboard(server, tmp_path, selection: str, contents: dict[str, bytes] | None) -> None:
    path = "-"
    if contents is not None:
        f = tmp_path / f"clip-{selection}.json"
        f.write_text(json.dumps({k: base64.b64encode(v).decode() for k, v in contents.items()}))
        path = str(f)
    r = server.command(f"agent_set_clipboard {selection} {path}", "agent_set_clipboard")
    assert "error" not in r, r


def calls(server) -> list:
    out = []
    for sel, contents in server.command("agent_calls", "agent_calls")["calls"]:
        out.append((sel, None if contents is None else {k: base64.b64decode(v) for k, v in contents.items()}))
    return out


def clip(body: bytes) -> tuple[int, int, bytes]:
    """(selection, type, data) of a VDAgent CLIPBOARD with the selection prefix."""
    f = clipboard_fields(VD_CLIPBOARD, body)
    return f["selection"], f["clip_type"], f["data"]


def grab(body: bytes) -> tuple[int, list[int]]:
    """(selection, types) of a VDAgent CLIPBOARD_GRAB with the selection prefix."""
    f = clipboard_fields(VD_CLIPBOARD_GRAB, body)
    return f["selection"], f["types"]


def request(selection: int, kind: int) -> bytes:
    return clipboard_body(VD_CLIPBOARD_REQUEST, selection, clip_type=kind)


def test_clipboard_and_resize_pass_through_to_the_vms_agent(spawn, peer, tmp_path):
    server = spawn.harness("--source", f"spice://127.0.0.1:{peer.port}", "--disable-ticketing")
    server.command("agent_record", "agent_record")
    state = lambda: server.command("agent_state", "agent_state")  # noqa: E731
    wait_until(lambda: state()["can_resize"], 30, "the upstream's agent seen")
    assert state()["clipboard_types"] == sorted([PNG, TEXT])
    assert peer.agent_started.is_set()

    # a client's copy reaches the VM, which pastes it
    text = "Grüße aus dem Client ✓".encode()
    mark = len(peer.agent_messages)
    set_clipboard(server, tmp_path, "CLIPBOARD", {TEXT: text})
    assert grab(peer.wait_agent(VD_CLIPBOARD_GRAB, start=mark)) == (0, [VD_UTF8_TEXT])
    peer.agent_send(VD_CLIPBOARD_REQUEST, request(0, VD_UTF8_TEXT))
    assert clip(peer.wait_agent(VD_CLIPBOARD, start=mark)) == (0, VD_UTF8_TEXT, text)

    # PRIMARY with a PNG and text, both asked for by the VM
    big = ("line of text\n" * 8000).encode()  # ~100 kB: many AGENT_DATA chunks each way
    mark = len(peer.agent_messages)
    set_clipboard(server, tmp_path, "PRIMARY", {TEXT: big, PNG: PNG_BYTES})
    sel, types = grab(peer.wait_agent(VD_CLIPBOARD_GRAB, lambda b: grab(b)[0] == 1, start=mark))
    assert sorted(types) == [VD_UTF8_TEXT, VD_PNG]
    for kind, data in ((VD_PNG, PNG_BYTES), (VD_UTF8_TEXT, big)):
        peer.agent_send(VD_CLIPBOARD_REQUEST, request(1, kind))
        got = peer.wait_agent(VD_CLIPBOARD, lambda b, kind=kind: clip(b)[:2] == (1, kind), start=mark)
        assert clip(got)[2] == data
    assert calls(server) == []  # nothing of ours came back as the VM's

    # the VM copies: every type we take reaches the sink at once, then its release
    vm_text = b"copied in the guest"
    peer.copy(0, {VD_UTF8_TEXT: vm_text, VD_PNG: PNG_BYTES, 99: b"a type we do not take"})
    wait_until(lambda: calls(server), 20, "the VM's copy reported")
    assert calls(server) == [("CLIPBOARD", {TEXT: vm_text, PNG: PNG_BYTES})]
    peer.release(0)
    wait_until(lambda: len(calls(server)) == 2, 20, "the VM's release reported")
    assert calls(server)[1] == ("CLIPBOARD", None)

    # a resize becomes the VM's monitor config
    mark = len(peer.agent_messages)
    r = server.command("agent_resize 1024 768", "agent_resize")
    assert "error" not in r, r
    config = vd.decode_message(VD_MONITORS_CONFIG, peer.wait_agent(VD_MONITORS_CONFIG, start=mark), selection=True)
    first = config["monitors"][0]
    assert config["num_of_monitors"] >= 1 and (first["width"], first["height"]) == (1024, 768)
    assert server.stats()["source_state"]["agent"]["resizes"] == 1

    # the VM's agent goes: nothing offered, nothing sent
    peer.copy(1, {VD_UTF8_TEXT: b"held by the VM"})
    wait_until(lambda: len(calls(server)) == 3, 20, "the VM's PRIMARY reported")
    changes = server.command("agent_calls", "agent_calls")["changes"]
    peer.agent_disconnect()
    wait_until(lambda: not state()["can_resize"], 20, "the agent's loss seen")
    assert server.command("agent_calls", "agent_calls")["changes"] == changes + 1  # the clients are told
    assert state()["clipboard_types"] == []
    assert calls(server)[3] == ("PRIMARY", None)  # what the VM held is gone with its agent
    mark = len(peer.agent_messages)
    set_clipboard(server, tmp_path, "CLIPBOARD", {TEXT: b"nobody to take it"})
    server.command("agent_resize 800 600", "agent_resize")
    assert server.stats()["source_state"]["agent"]["to_vm"] == 2
    assert peer.agent_messages[mark:] == []
    assert not peer.errors


def test_agent_frames_round_trip_and_bounds():
    msgs = [
        proto.AgentState(proto.AgentFlags.CONNECTED | proto.AgentFlags.CLIPBOARD),
        proto.VmClipboard("PRIMARY", {TEXT: b"x", PNG: b"\x89PNG"}),
        proto.VmClipboard("CLIPBOARD"),
    ]
    assert proto.Decoder(proto.HELPER_TYPES).receive_data(b"".join(map(proto.encode, msgs))) == msgs
    out = [proto.SetClipboard("CLIPBOARD", {TEXT: b"y" * 3_000_000}), proto.SetDisplaySize(1001, 667)]
    assert proto.Decoder(proto.SOURCE_TYPES).receive_data(b"".join(map(proto.encode, out))) == out
    # the helper may not send what only the source sends, and the reverse
    with pytest.raises(proto.ProtocolError):
        proto.Decoder(proto.HELPER_TYPES).receive_data(proto.encode(out[1]))

    def frame(kind: int, payload: bytes) -> bytes:
        return proto.HEADER.pack(kind, len(payload)) + payload

    item = struct.pack("<BI", 1, 1) + b"z"  # UTF-8 text, one byte
    bad = [
        frame(proto.VmClipboard.TYPE, bytes([2, 0])),  # selection 2
        frame(proto.VmClipboard.TYPE, bytes([0, 1]) + struct.pack("<BI", 7, 1) + b"z"),  # kind 7
        frame(proto.VmClipboard.TYPE, bytes([0, 1]) + struct.pack("<BI", 1, 5) + b"z"),  # 5 bytes said, 1 there
        frame(proto.VmClipboard.TYPE, bytes([0, 2]) + item + item),  # the same kind twice
        frame(proto.VmClipboard.TYPE, bytes([0, 1]) + item + b"!"),  # a byte after the last item
        frame(proto.VmClipboard.TYPE, bytes([0, 3])),  # more items than kinds
        proto.HEADER.pack(proto.VmClipboard.TYPE, proto.MAX_CLIPBOARD + 65),  # too long: refused at the header
        frame(proto.AgentState.TYPE, bytes([16])),
    ]
    for frame in bad:
        with pytest.raises(proto.ProtocolError):
            proto.Decoder(proto.HELPER_TYPES).receive_data(frame)
    with pytest.raises(proto.ProtocolError):
        proto.Decoder(proto.SOURCE_TYPES).receive_data(proto.HEADER.pack(proto.SetDisplaySize.TYPE, 8) + struct.pack("<II", 0, 5))
    with pytest.raises(ValueError):
        proto.encode(proto.SetClipboard("CLIPBOARD", {TEXT: b"z" * (proto.MAX_CLIPBOARD + 1)}))


@given(
    st.sampled_from(proto.CLIP_SELECTIONS),
    st.dictionaries(st.sampled_from(sorted(proto.CLIP_KINDS.values())), st.binary(max_size=3000), max_size=2),
    st.lists(st.integers(0, 400), max_size=10),
)
@settings(max_examples=150, deadline=None)
def test_clipboard_frames_round_trip_split_anywhere(selection, contents, cuts):
    msgs = [proto.VmClipboard(selection, contents), proto.AgentState(proto.AgentFlags.CONNECTED)]
    data = b"".join(map(proto.encode, msgs))
    dec, got, at = proto.Decoder(proto.HELPER_TYPES), [], 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        got += dec.receive_data(data[at:cut])
        at = max(at, cut)
    assert got == msgs
    assert proto.Decoder(proto.SOURCE_TYPES).receive_data(proto.encode(proto.SetClipboard(selection, contents))) == [
        proto.SetClipboard(selection, contents)
    ]

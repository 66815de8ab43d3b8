"""The agent against clients of our own on the wire (tests/support/raw_agent.py), through a
real server: names that try to leave --file-xfer-dir, cancelled and abandoned transfers,
and hostile agent streams, which cost only the client that sends them."""

from __future__ import annotations

import time

from support.processes import wait_until
from support.raw_agent import RawAgent

from spice_twisted.wire.agent import header
from spice_twisted.wire.enums import AgentCap, AgentMsg, ClipboardType, FileXferStatus, MsgcMain


def start_text(name: str, size: int) -> bytes:
    return f"[vdagent-file-xfer]\nname={name}\nsize={size}\n".encode() + b"\0"


def send_whole_file(agent: RawAgent, xid: int, name: str, data: bytes) -> dict:
    agent.send_fields(AgentMsg.FILE_XFER_START, id=xid, data=start_text(name, len(data)))
    status = agent.wait(AgentMsg.FILE_XFER_STATUS, id=xid)
    if status["result"] != FileXferStatus.CAN_SEND_DATA:
        return status
    agent.send_fields(AgentMsg.FILE_XFER_DATA, id=xid, size=len(data), data=data)
    return agent.wait(AgentMsg.FILE_XFER_STATUS, id=xid, result=FileXferStatus.SUCCESS)


def parts(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".part")]


def test_names_never_leave_the_directory(spawn, tmp_path):
    drop = tmp_path / "drop" / "inner"
    drop.mkdir(parents=True)
    server = spawn.server("--file-xfer-dir", str(drop))
    agent = RawAgent(server.port)
    agent.start(caps=frozenset({AgentCap.FILE_XFER_DETAILED_ERRORS}))
    names = {
        "../escape.txt": "escape.txt",
        "../../escape2.txt": "escape2.txt",
        "..\\..\\win.txt": "win.txt",
        "/etc/passwd": "passwd",
        "..": "file",
        ".hidden": "hidden",
        "a/../../b.txt": "b.txt",
        "bell\x07\x1b[31m.txt": "bell[31m.txt",
    }
    for i, name in enumerate(names, 1):
        status = send_whole_file(agent, i, name, name.encode() * 3)
        assert status["result"] == FileXferStatus.SUCCESS, (name, status)
    assert sorted(p.name for p in drop.iterdir()) == sorted(names.values())
    for name, saved in names.items():
        assert (drop / saved).read_bytes() == name.encode() * 3
    assert sorted(p.name for p in (tmp_path / "drop").iterdir()) == ["inner"]
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "escape2.txt").exists()
    agent.close()


def test_cancelled_and_abandoned_transfers_leave_nothing(spawn, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    server = spawn.server("--file-xfer-dir", str(drop))
    agent = RawAgent(server.port)
    agent.start()
    agent.send_fields(AgentMsg.FILE_XFER_START, id=1, data=start_text("half.bin", 100))
    agent.wait(AgentMsg.FILE_XFER_STATUS, id=1, result=FileXferStatus.CAN_SEND_DATA)
    agent.send_fields(AgentMsg.FILE_XFER_DATA, id=1, size=10, data=bytes(10))
    wait_until(lambda: parts(drop), what="a part file")
    agent.send_fields(AgentMsg.FILE_XFER_STATUS, id=1, result=FileXferStatus.CANCELLED, data=b"")
    wait_until(lambda: not list(drop.iterdir()), what="the cancelled part file removed")
    # More bytes than announced: an error status, and the part file goes.
    agent.send_fields(AgentMsg.FILE_XFER_START, id=2, data=start_text("liar.bin", 5))
    agent.wait(AgentMsg.FILE_XFER_STATUS, id=2, result=FileXferStatus.CAN_SEND_DATA)
    agent.send_fields(AgentMsg.FILE_XFER_DATA, id=2, size=6, data=bytes(6))
    agent.wait(AgentMsg.FILE_XFER_STATUS, id=2, result=FileXferStatus.ERROR)
    assert not list(drop.iterdir())
    # The client goes mid-transfer: its part file goes too.
    agent.send_fields(AgentMsg.FILE_XFER_START, id=3, data=start_text("gone.bin", 100))
    agent.wait(AgentMsg.FILE_XFER_STATUS, id=3, result=FileXferStatus.CAN_SEND_DATA)
    agent.send_fields(AgentMsg.FILE_XFER_DATA, id=3, size=10, data=bytes(10))
    wait_until(lambda: parts(drop), what="a part file")
    agent.close()
    wait_until(lambda: not list(drop.iterdir()), what="the abandoned part file removed")


def test_hostile_agent_streams_cost_only_their_client(spawn):
    server = spawn.server()
    good = spawn.client("--port", str(server.port))
    good.wait_event("mark", timeout=30)
    good.wait_event("agent", connected=True)
    wait_until(lambda: good.command("agent", "agent")["caps0"], what="caps")

    early = RawAgent(server.port)  # AGENT_DATA before AGENT_START: dropped, as upstream does
    early.raw(MsgcMain.AGENT_DATA, header(AgentMsg.CLIPBOARD, 100) + bytes(30))
    early.start()  # the agent starts clean (nothing of the dropped message was kept)
    early.wait(AgentMsg.ANNOUNCE_CAPABILITIES)
    early.send_fields(AgentMsg.REPLY, type=1, error=1)
    early.raw(MsgcMain.AGENT_DATA, header(AgentMsg.CLIPBOARD, 100 << 20))  # a lie after the start closes it
    assert early.wait_closed()

    liar = RawAgent(server.port)  # a header claiming a 100 MiB clipboard: refused before buffering
    liar.start()
    liar.raw(MsgcMain.AGENT_DATA, header(AgentMsg.CLIPBOARD, 100 << 20) + bytes(100))
    assert liar.wait_closed()

    big = RawAgent(server.port)  # an AGENT_DATA over 2048 bytes
    big.start()
    big.raw(MsgcMain.AGENT_DATA, header(AgentMsg.CLIPBOARD, 3000) + bytes(3000))
    assert big.wait_closed()

    greedy = RawAgent(server.port)  # asks for a 2 MiB clipboard again and again, returns no token
    greedy.start(tokens=2, caps=frozenset({AgentCap.CLIPBOARD_BY_DEMAND}))  # (our caps, then one GRAB)
    greedy.wait(AgentMsg.ANNOUNCE_CAPABILITIES)
    good.command(f"clip_copy 0 {'x' * (2 << 20)}", "clip_copy", timeout=60)
    greedy.wait(AgentMsg.CLIPBOARD_GRAB, timeout=60)  # the server holds the good client's copy now
    t0 = time.monotonic()
    for _ in range(40):
        try:
            greedy.send_fields(AgentMsg.CLIPBOARD_REQUEST, clip_type=ClipboardType.UTF8_TEXT)
        except (BrokenPipeError, ConnectionResetError):
            break  # already closed by the server (quick on an idle machine, or under load)
    assert greedy.wait_closed(), "a client that returns no tokens is disconnected"
    assert time.monotonic() - t0 < 20
    log = server.log()
    for why in ("of 104857600 bytes", "AGENT_DATA of 3020 bytes", "wait for the client's tokens"):
        assert why in log, why
    # The well-behaved client never noticed: still connected, its agent still answers.
    assert not [e for e in good.events if e.get("event") == "channel" and e.get("what") != "opened"]
    start = len(good.events)
    good.command("clip_copy 0 still here", "clip_copy")
    good.wait_for(lambda e: e.get("event") == "clip-request" and e["answered"], start=start)

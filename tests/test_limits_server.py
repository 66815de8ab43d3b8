"""Each limit against a real server process: clients, channels per client, message size per
type, the unfinished-message deadline, a client that reads none of its replies."""

from __future__ import annotations

import socket
import struct

from support.hostile import closed_within, connect, link, main_session
from support.processes import wait_until
from support.rawclient import read_reply

from spice_twisted.wire.client_link import link_message
from spice_twisted.wire.enums import ChannelType, LinkError, MsgcInputs, MsgcMain


def test_max_clients(spawn):
    srv = spawn.server("--max-clients", "2")
    a, _ = main_session(srv.port)
    b, _ = main_session(srv.port)
    s = connect(srv.port)
    s.sendall(link_message(ChannelType.MAIN, 0))
    assert read_reply(s)["error"] == LinkError.ERROR  # refused before an RSA key
    s.close()
    a.close()
    wait_until(lambda: link(srv.port)[1] == LinkError.OK, timeout=10, what="room for a client again")
    assert "--max-clients" in srv.log()


def test_max_channels_per_client(spawn):
    srv = spawn.server("--max-channels-per-client", "2")
    main, sid = main_session(srv.port)
    d, result = link(srv.port, channel=ChannelType.DISPLAY, connection_id=sid)
    assert result == LinkError.OK
    i, result = link(srv.port, channel=ChannelType.INPUTS, connection_id=sid)
    assert result == LinkError.ERROR
    assert "--max-channels-per-client" in srv.log()


def test_message_size_per_type(spawn):
    srv = spawn.server("--max-message", "inputs:KEY_DOWN=2")
    main, sid = main_session(srv.port)
    inputs, result = link(srv.port, channel=ChannelType.INPUTS, connection_id=sid)
    assert result == LinkError.OK
    inputs.sendall(struct.pack("<HII", MsgcInputs.KEY_UP, 4, 0x9E))  # another type: fine
    inputs.sendall(struct.pack("<HII", MsgcInputs.KEY_DOWN, 4, 0x1E))
    assert closed_within(inputs, 10)
    assert "message type 101 claims 4 bytes (limit 2)" in srv.log()
    assert not closed_within(main, 0.5)  # its other channels are untouched


def test_unfinished_message_deadline(spawn):
    srv = spawn.server("--message-timeout", "1")
    main, _ = main_session(srv.port)
    main.sendall(struct.pack("<HI", MsgcMain.MOUSE_MODE_REQUEST, 2) + b"\x02")  # one byte of two
    assert closed_within(main, 15)
    assert "a message left unfinished for 1s" in srv.log()


def test_a_client_that_sends_requests_and_reads_nothing_is_closed(spawn):
    """Every ATTACH_CHANNELS is answered with a CHANNELS_LIST; a client that never reads them
    fills its socket, then its pipe, which stops at 1024 unread messages."""
    srv = spawn.server("--stall-timeout", "600")
    main, _ = main_session(srv.port)
    main.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = struct.pack("<HI", MsgcMain.ATTACH_CHANNELS, 0) * 10_000
    try:
        for _ in range(100):
            main.sendall(request)
    except OSError:
        pass
    wait_until(lambda: "messages unread (the client sends but does not read)" in srv.log(), timeout=20, what="the backlog limit")
    assert closed_within(main, 20)

"""The link estimate with real spice-gtk clients, each through a wire tap that shapes its link.

The shaping is the input the test controls (a rate in bytes/s and a one-way delay on the
tap's server -> client direction), and the server's verdict is read back from the harness
`stats` or the admin REST API, so each verdict is checked against a known link. The tap
also shows the network test on the wire: the probe PING with its 250 KiB of padding and
the client's PONG for it.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from support.admin import TOKEN, Api, write_token
from support.processes import free_port, wait_until
from support.rawclient import link, recv_exact
from support.tap import TapConnection, WireTap

from spice_twisted.link_estimate import LAN_ABOVE, NET_TEST_BYTES, WAN_BELOW
from spice_twisted.wire.channel import PROBE_IDS
from spice_twisted.wire.enums import ChannelType, MsgcCommon, MsgCommon
from spice_twisted.wire.messages import decode_body, message

PING = message(None, "PING")
PONG = message(None, "PONG", from_server=False)
SLOW = 250_000  # bytes/s: 2 Mbit/s
DELAY = 0.05  # seconds, server -> client


def client_link(server, session_id: int) -> dict:
    for c in server.stats()["clients"]:
        if c["id"] == session_id:
            return c["link"]
    raise AssertionError(f"no client {session_id:#x} in the server stats")


def main_conn(tap: WireTap) -> TapConnection:
    return wait_until(lambda: next((c for c in tap.channels(ChannelType.MAIN) if c.link_result == 0), None), what="main channel")


def probe_pings(conn: TapConnection) -> list[dict]:
    return [decode_body(PING, body) for t, body in conn.snapshot() if t == MsgCommon.PING and decode_body(PING, body)["id"] >= PROBE_IDS]


def assert_no_server_errors(server) -> None:
    log = server.stderr()
    for bad in ("Traceback", "Unhandled"):
        assert bad not in log, log[max(0, log.index(bad) - 2000) : log.index(bad) + 3000]


def test_unshaped_client_is_lan_and_the_probe_is_on_the_wire(spawn):
    server = spawn.harness()
    with WireTap(server.port) as tap:
        client = spawn.client("--port", str(tap.port))
        client.wait_event("mark")
        main, sid = main_conn(tap), tap.display().connection_id
        est = wait_until(lambda: (lk := client_link(server, sid))["probes"] and lk, what="a network test result")
        assert not est["wan"] and est["source"] == "probe"
        assert est["bandwidth_bps"] > LAN_ABOVE, est
        # On the wire: upstream's three PINGs, two bare and one with NET_TEST_BYTES of padding,
        # each answered by spice-gtk with a PONG of the same id and timestamp.
        pings = probe_pings(main)
        assert [len(p["data"]) for p in pings] == [0, 0, NET_TEST_BYTES], [len(p["data"]) for p in pings]
        assert pings[2]["data"] == bytes(NET_TEST_BYTES)
        pongs = main.wait_for(
            lambda k: (got := [decode_body(PONG, b) for t, b in k.client_messages if t == MsgcCommon.PONG]) and len(got) >= 4 and got,
            what="PONGs",
        )
        answered = {(p["id"], p["timestamp"]) for p in pongs}
        assert all((p["id"], p["timestamp"]) in answered for p in pings)
    assert_no_server_errors(server)


def test_shaped_client_is_wan_by_the_connect_time_probe_seen_through_the_admin_api(spawn, tmp_path):
    write_token(tmp_path / "admin-token", TOKEN)
    admin_port = free_port()
    server = spawn.harness("--admin-port", str(admin_port), "--admin-token-file", str(tmp_path / "admin-token"))
    api = Api(admin_port, TOKEN)
    with WireTap(server.port) as fast, WireTap(server.port) as slow:
        slow.shape(rate=SLOW, delay=DELAY)
        lan_client = spawn.client("--port", str(fast.port))
        wan_client = spawn.client("--port", str(slow.port))
        lan_client.wait_event("mark")
        wan_client.wait_event("mark", timeout=60)
        lan_sid, wan_sid = fast.display().connection_id, slow.display().connection_id

        def links() -> dict[int, dict]:
            return {c["id"]: c["link"] for c in api.ok("GET", "/api/clients")}

        got = wait_until(lambda: (ls := links()) and all(ls[s]["probes"] for s in (lan_sid, wan_sid)) and ls, timeout=30, what="probes")
        wan, lan = got[wan_sid], got[lan_sid]
        assert wan["wan"] and wan["source"] == "probe", wan
        # The shaped link carries 2 Mbit/s after a 50 ms delay: the probe saw that link (it
        # shares it with the display's first frame, so it may see less, never much more).
        assert 0.1 * SLOW * 8 < wan["probe_bitrate_bps"] < 1.25 * SLOW * 8, wan
        assert wan["probe_latency_ms"] >= DELAY * 1000, wan
        assert not lan["wan"] and lan["bandwidth_bps"] > LAN_ABOVE, lan
        one = api.ok("GET", f"/api/clients/{wan_sid}")
        assert one["link"]["wan"] is True
        assert len(probe_pings(main_conn(slow))[2]["data"]) == NET_TEST_BYTES
    assert_no_server_errors(server)


def test_reshaped_link_changes_the_verdict_while_the_display_is_busy(spawn):
    server = spawn.harness("--ping-interval", "1")
    with WireTap(server.port) as tap:
        client = spawn.client("--port", str(tap.port))
        client.wait_event("mark")
        sid = tap.display().connection_id
        wait_until(lambda: client_link(server, sid)["probes"], what="the connect-time test")
        assert not client_link(server, sid)["wan"]
        server.command("busy 300", "busy")  # 128x128 random pixels 30 times a second: ~2 MB/s
        time.sleep(3)
        assert not client_link(server, sid)["wan"]  # a busy display on a fast link stays LAN

        tap.shape(rate=SLOW, delay=DELAY)
        t0 = time.monotonic()
        wait_until(lambda: client_link(server, sid)["wan"], timeout=40, what="WAN after the link got slow")
        to_wan = time.monotonic() - t0
        est = wait_until(
            lambda: (lk := client_link(server, sid))["bandwidth_bps"] < WAN_BELOW and lk, timeout=40, what="a slow bandwidth estimate"
        )
        assert est["bandwidth_bps"] < 1.25 * SLOW * 8, est  # what the shaped link can carry

        tap.shape()
        t1 = time.monotonic()
        back = wait_until(lambda: not (lk := client_link(server, sid))["wan"] and lk, timeout=90, what="LAN after the link got fast")
        to_lan = time.monotonic() - t1
        assert back["bandwidth_bps"] > LAN_ABOVE and back["changes"] >= 2, back
        print(f"verdict: WAN {to_wan:.1f}s after the slowdown, LAN {to_lan:.1f}s after the speedup; {est} -> {back}")
        server.command("busy 0", "busy")
    assert_no_server_errors(server)


class RawMain:
    """A protocol-level main channel that answers PINGs as told (or not at all)."""

    def __init__(self, port: int) -> None:
        self.sock, result = link(port)
        assert result == 0, result
        self.pings: list[dict] = []
        self.types: list[int] = []
        self.closed = False
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        self.sock.settimeout(None)
        try:
            while True:
                msg_type, size = struct.unpack("<HI", recv_exact(self.sock, 6))
                body = recv_exact(self.sock, size)
                with self._cond:
                    self.types.append(msg_type)
                    if msg_type == MsgCommon.PING:
                        self.pings.append(decode_body(PING, body))
                    self._cond.notify_all()
        except (OSError, ConnectionError):
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def wait_probes(self) -> list[dict]:
        with self._cond:
            self._cond.wait_for(lambda: len([p for p in self.pings if p["id"] >= PROBE_IDS]) >= 3 or self.closed, 20)
            probes = [p for p in self.pings if p["id"] >= PROBE_IDS]
        assert len(probes) >= 3, self.pings
        return probes

    def pong(self, ping_id: int, stamp: int) -> None:
        self.sock.sendall(struct.pack("<HI", MsgcCommon.PONG, 12) + struct.pack("<IQ", ping_id, stamp))

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def test_hostile_pongs_and_silent_clients_do_not_break_the_probe_or_others(spawn):
    server = spawn.harness()
    liar, silent = RawMain(server.port), RawMain(server.port)
    try:
        probes = liar.wait_probes()
        asked = time.monotonic()
        silent.wait_probes()
        assert len(probes[2]["data"]) == NET_TEST_BYTES
        # PONGs for ids never sent, for the probe ids with forged timestamps, and the same
        # PONG many times: all ignored, nothing crashes, the test is still waiting.
        for i in range(200):
            liar.pong((PROBE_IDS + 1000 + i * 7919) & 0xFFFFFFFF, i)
            liar.pong(i, 0)
        for p in probes:
            liar.pong(p["id"], p["timestamp"] + 1)
        stats = server.stats()
        raw = stats["clients"]
        assert len(raw) == 2 and all(c["link"]["probes"] == 0 for c in raw), raw
        # A real client meanwhile: its own test completes and it draws.
        with WireTap(server.port) as tap:
            client = spawn.client("--port", str(tap.port))
            client.wait_event("mark")
            sid = tap.display().connection_id
            est = wait_until(lambda: (lk := client_link(server, sid))["probes"] and lk, what="the real client's test")
            assert not est["wan"]
            # The liar now answers properly, with the right stamps and at least half a second
            # late: its test completes, and says the liar is far (a round trip over WAN_RTT).
            time.sleep(max(0.0, 0.5 - (time.monotonic() - asked)))
            for p in probes[:3]:
                liar.pong(p["id"], p["timestamp"])
            liars = wait_until(
                lambda: [c["link"] for c in server.stats()["clients"] if c["id"] != sid and c["link"]["probes"]],
                what="the liar's test result",
            )
            assert liars[0]["wan"] and liars[0]["rtt_ms"] >= 500, liars

            # The silent client holds one timer (its test's timeout) while connected, the
            # liar (judged far) one for its next test; the
            # real client, done and LAN, none. Once the raw clients are gone, none is left.
            def main_timers() -> int:
                return server.command("timers", "timers")["owners"].get("MainChannelClient", 0)

            assert client_link(server, sid)["wan"] is False
            before = main_timers()
            assert before == 2, (before, server.stats()["clients"], server.command("timers", "timers"))
            silent.close()
            wait_until(lambda: len(server.stats()["clients"]) == 2, what="the silent client gone")
            assert main_timers() == 1
            liar.close()
            wait_until(lambda: len(server.stats()["clients"]) == 1, what="the liar gone")
            assert main_timers() == 0
            assert client_link(server, sid)["probes"] >= 1
    finally:
        liar.close()
        silent.close()
    assert_no_server_errors(server)

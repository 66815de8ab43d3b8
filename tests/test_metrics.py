"""/metrics on the admin site (issue 19, item 6) against a real server and two spice-gtk
clients, one of them behind a wire tap: the exposition parses with prometheus_client's own
parser, its byte counter for the tapped client's display channel agrees with the bytes the
tap saw on the wire, and the counters move when the display changes. Without a token, or
with a wrong one, /metrics answers 401; the metrics token reads /metrics and nothing else."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from support.admin import TOKEN, Api, write_token
from support.processes import free_port, wait_until

METRICS_TOKEN = "metrics-token-for-tests-0123456789"
PASSWORD = "metrics-pass"


def scrape(port: int, token: str | None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=")
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}, parsed by prometheus_client."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: dict, name: str, **labels: str) -> float:
    return got[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_follow_the_clients_traffic(spawn, tap_for, tmp_path: Path):
    write_token(tmp_path / "admin-token", TOKEN)
    write_token(tmp_path / "metrics-token", METRICS_TOKEN)
    (tmp_path / "pw").write_text(PASSWORD)
    admin_port = free_port()
    server = spawn.harness(
        "--admin-port",
        str(admin_port),
        "--admin-token-file",
        str(tmp_path / "admin-token"),
        "--metrics-token-file",
        str(tmp_path / "metrics-token"),
        "--password-file",
        str(tmp_path / "pw"),
    )
    tap, tapped = tap_for(server, "--password", PASSWORD)
    plain = spawn.client("--port", str(server.port), "--password", PASSWORD)
    for c in (tapped, plain):
        c.wait_event("mark", timeout=60)
    wrong = spawn.client("--port", str(server.port), "--password", "not-the-password")
    wrong.wait_event("channel", channel="main", what="error-auth", timeout=60)

    # The tapped client's session: its display connection carries the session id.
    display = wait_until(lambda: next((c for c in tap.connections if c.is_display and c.link_result == 0), None), timeout=30)
    sid = f"{display.connection_id:#x}"
    label = {"client": sid, "channel": "display", "channel_id": "0"}

    def wire_and_metrics_agree() -> dict | None:
        """The server's count for that channel equals the bytes the tap saw after the link
        (the link reply and its 4-byte result are on the wire but not in the channel's count)."""
        got = samples(scrape(admin_port, METRICS_TOKEN)[1])
        counted = value(got, "spice_channel_bytes_sent_total", **label)
        link = display.bytes_from_server - counted
        return got if 0 < link <= 1024 else None

    before = wait_until(wire_and_metrics_agree, timeout=60, what="metrics bytes == tapped wire bytes")
    assert value(before, "spice_clients") == 2
    assert value(before, "spice_channels", channel="display") == 2
    assert value(before, "spice_channels", channel="inputs") == 2
    assert value(before, "spice_auth_failures_total") >= 1  # the wrong password
    assert value(before, "spice_link_refusals_total", error="PERMISSION_DENIED") >= 1
    assert sum(v for (name, _), v in before.items() if name == "spice_encodes_total") >= 1
    clients = {dict(labels)["client"] for (name, labels) in before if name == "spice_client_info"}
    assert sid in clients and len(clients) == 2

    # The display changes: bytes and updates grow for both clients, and still match the wire.
    server.command("updates 300", "updates", timeout=60)
    after = wait_until(
        lambda: (
            (got := wire_and_metrics_agree())
            and value(got, "spice_channel_bytes_sent_total", **label) > value(before, "spice_channel_bytes_sent_total", **label)
            and got
        ),
        timeout=60,
        what="bytes sent grow with the display's changes",
    )
    for c in clients:
        one = {"client": c, "channel": "display", "channel_id": "0"}
        assert value(after, "spice_channel_updates_sent_total", **one) > value(before, "spice_channel_updates_sent_total", **one)
    assert value(after, "spice_frames_total") >= value(before, "spice_frames_total") + 1
    assert value(after, "spice_draws_sent_total") > value(before, "spice_draws_sent_total")

    # The admin token reads it too; none, a wrong one: 401. The metrics token reads nothing else.
    assert scrape(admin_port, TOKEN)[0] == 200
    assert scrape(admin_port, None)[0] == 401
    assert scrape(admin_port, "wrong-token-wrong-token")[0] == 401
    assert Api(admin_port, METRICS_TOKEN).call("GET", "/api/clients")[0] == 401

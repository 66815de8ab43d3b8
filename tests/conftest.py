"""Fixtures that start real servers and real spice-gtk clients, and always stop them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import leftovers
from support.admin import TOKEN, Api, write_token
from support.certs import make_ca_and_server
from support.processes import SYSTEM_PYTHON, GtkClient, HarnessServer, JsonLinesProcess, ServerProcess, free_port
from support.tap import WireTap
from support.xvfb import Xvfb
from support.xvfb import missing_tools as missing_x_tools
from support.xvnc import Xvnc
from support.xvnc import missing_tools as missing_xvnc_tools

# Every process this run starts carries its mark; the session fails if one outlives it.
leftovers.mark_this_run()
pytest_sessionfinish = leftovers.pytest_sessionfinish


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="also run the soak tests (minutes each; marked soak)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: a long run (minutes) kept out of the default suite; run with --soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def _have_spice_gtk() -> bool:
    import subprocess

    if not shutil.which(SYSTEM_PYTHON):
        return False
    probe = "import gi; gi.require_version('SpiceClientGLib', '2.0'); from gi.repository import SpiceClientGLib"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True).returncode == 0


HAVE_SPICE_GTK = _have_spice_gtk()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    """spawn.server(*args, ...) and spawn.client(*args): stopped at the end of the test."""
    started: list[ServerProcess | JsonLinesProcess] = []

    class Spawner:
        def server(self, *args: str, **kw: object) -> ServerProcess:
            s = ServerProcess(*args, tmp=tmp_path, **kw)  # type: ignore[arg-type]
            started.append(s)
            return s

        def harness(self, *args: str, paused: bool = False) -> HarnessServer:
            h = HarnessServer(*args, tmp=tmp_path, paused=paused)
            started.append(h)
            return h

        def client(self, *args: str) -> GtkClient:
            if not HAVE_SPICE_GTK:
                pytest.fail("spice-gtk (python3-gi, gir1.2-spiceclientglib-2.0) is not installed: run the README test command")
            c = GtkClient(*args, tmp=tmp_path)
            started.append(c)
            return c

    yield Spawner()
    for p in reversed(started):
        if isinstance(p, JsonLinesProcess):
            p.close()
        else:
            p.stop()


@pytest.fixture
def tap_for(spawn):
    """tap_for(server, *client_args) -> (tap, client): a spice-gtk client through its own tap."""
    taps: list[WireTap] = []

    def make(server, *client_args: str) -> tuple[WireTap, object]:
        tap = WireTap(server.port)
        taps.append(tap)
        return tap, spawn.client("--port", str(tap.port), *client_args)

    yield make
    for t in taps:
        t.close()


@pytest.fixture
def random_image(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A noisy 333x217 PNG (odd sizes, every byte value): any pixel error shows."""
    rng = np.random.default_rng(2024)
    rgb = rng.integers(0, 256, (217, 333, 3), dtype=np.uint8)
    path = tmp_path / "random.png"
    Image.fromarray(rgb, "RGB").save(path)
    return path, rgb


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, Path]:
    return make_ca_and_server(tmp_path)


@pytest.fixture
def admin(spawn, tmp_path):
    """A server with the admin site on a free port (token TOKEN) and two spice-gtk clients."""
    write_token(tmp_path / "admin-token", TOKEN)
    port = free_port()
    srv = spawn.server("--admin-port", str(port), "--admin-token-file", str(tmp_path / "admin-token"))
    clients = []
    for _ in range(2):
        c = spawn.client("--port", str(srv.port))
        c.wait_event("mark")
        c.wait_event("channel", channel="inputs", what="opened")
        clients.append(c)
    return srv, Api(port, TOKEN), clients


@pytest.fixture
def xvfb_factory(tmp_path: Path) -> Iterator[object]:
    """xvfb_factory(solid=None, **Xvfb's keywords) -> a started Xvfb (its root filled with the
    colour `solid`, if given); all stopped at the end. Missing X tools fail the test."""
    missing = missing_x_tools()
    if missing:
        pytest.fail(f"X tools missing ({', '.join(missing)}): run scripts/setup.sh --test")
    started: list[Xvfb] = []

    def make(solid: str | None = None, **kw) -> Xvfb:
        started.append(Xvfb(tmp_path, **kw))
        if solid is not None:
            started[-1].run("xsetroot", "-solid", solid)
        return started[-1]

    yield make
    for x in started:
        x.stop()


@pytest.fixture
def xvnc(tmp_path: Path) -> Iterator[Xvnc]:
    """A started 800x600 Xvnc: an X server whose size RandR can change (Xvfb's cannot grow);
    its root black. Missing tools fail the test."""
    missing = missing_xvnc_tools()
    if missing:
        pytest.fail(f"X tools missing ({', '.join(missing)}): run scripts/setup.sh --test")
    x = Xvnc(tmp_path)
    yield x
    x.stop()

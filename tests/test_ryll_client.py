"""ryll (a Rust SPICE client, PyPI `ryll`, headless) against a real server, watched on the wire.

ryll advertises DISPLAY_CAP_PREF_COMPRESSION, a server cap that the Go client also sends;
it decodes LZ4, which a server that took every PREF_COMPRESSION client for the Go client
never sent it (issue 16 item 10). Here it links through a tap, and the images it is sent
are read from the bytes that crossed the wire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from support.processes import as_rgb, wait_until
from support.ryll import INSTALL_HINT, RyllClient, ryll_binary
from support.tap import WireTap

from spice_twisted.wire.enums import DisplayCap, ImageType


@pytest.fixture
def ryll(tmp_path: Path) -> Iterator[Callable[..., RyllClient]]:
    """ryll(port, *args) -> a headless ryll connected to 127.0.0.1:port; all closed at the end."""
    if ryll_binary() is None:
        pytest.fail(INSTALL_HINT)
    clients: list[RyllClient] = []

    def start(port: int, *args: str) -> RyllClient:
        clients.append(RyllClient(port, tmp_path, *args))
        return clients[-1]

    yield start
    for c in clients:
        c.close()


@pytest.mark.parametrize("preferred, image_type", [("lz4", ImageType.LZ4), ("auto-glz", ImageType.GLZ_RGB)])
def test_ryll_gets_lz4_though_it_advertises_pref_compression(spawn, ryll, preferred, image_type):
    """Asking for LZ4 it gets LZ4; with its default (auto_glz) it gets GLZ, which it decodes
    too (its DISPLAY_INIT gives a GLZ window), from a dictionary generation of its own."""
    server = spawn.server("--source", "demo")
    with WireTap(server.port) as tap:
        client = ryll(tap.port, "--preferred-compression", preferred)
        conn = tap.display(timeout=30)
        assert DisplayCap.PREF_COMPRESSION in conn.client_channel_caps and DisplayCap.LZ4_COMPRESSION in conn.client_channel_caps
        # The demo draws every second (its clock, the ball): images keep coming.
        wait_until(lambda: conn.image_types().get(image_type, 0) >= 3, timeout=30, what=f"{image_type.name} images to ryll")
        types = conn.image_types()
        assert ImageType.BITMAP not in types, types
        assert client.proc.poll() is None  # still connected: it took every image it was sent


def test_ryll_decodes_the_shared_glz_dictionary_exactly_on_the_live_demo(spawn, ryll):
    """Two ryll clients with their default preference (auto_glz) start together, so they share
    one GLZ generation; after the demo ran, each one's decoded surface (its control socket's
    screenshot) equals the server's framebuffer."""
    server = spawn.harness("--jpeg-wan-compression", "never", paused=True)
    clients = [ryll(server.port) for _ in range(2)]
    wait_until(lambda: all(c.rgb() is not None for c in clients), 30, "both ryll clients showing the screen")
    server.resume()
    wait_until(lambda: server.stats()["render"]["glz"]["generations"], 15, "a GLZ generation")
    gens = server.stats()["render"]["glz"]["generations"]
    assert len(gens) == 1 and gens[0]["members"] == 2, gens
    wait_until(lambda: server.stats()["render"]["glz"]["generations"][0]["images"] > 30, 30, "30 GLZ images")
    server.pause()
    want = as_rgb(server.framebuffer())

    def exact() -> bool:
        return all((got := c.rgb()) is not None and got.shape == want.shape and bool(np.array_equal(got, want)) for c in clients)

    wait_until(exact, 30, "both ryll surfaces equal to the server's framebuffer")


def test_a_late_ryll_joins_the_glz_generation_exactly(spawn, ryll):
    """Two ryll clients start a GLZ generation; a third connects while the demo runs and
    enters it (its ids counted from its first image, one encode per image for all three);
    after the demo ran on, all three decoded surfaces equal the server's framebuffer."""
    server = spawn.harness("--jpeg-wan-compression", "never", paused=True)
    clients = [ryll(server.port) for _ in range(2)]
    wait_until(lambda: all(c.rgb() is not None for c in clients), 30, "both ryll clients showing the screen")
    server.resume()

    def generations() -> list:
        return server.stats()["render"]["glz"]["generations"]

    wait_until(lambda: generations() and generations()[0]["images"] > 20, 30, "20 GLZ images")
    clients.append(ryll(server.port))
    wait_until(lambda: generations()[0]["joined"] == 1, 30, "the late ryll entering the generation")
    joined_at = generations()[0]["images"]
    wait_until(lambda: generations()[0]["images"] > joined_at + 30, 30, "30 GLZ images more")
    gens = generations()
    assert len(gens) == 1 and gens[0]["members"] == 3, gens
    server.pause()
    want = as_rgb(server.framebuffer())

    def exact() -> bool:
        return all((got := c.rgb()) is not None and got.shape == want.shape and bool(np.array_equal(got, want)) for c in clients)

    wait_until(exact, 30, "the three ryll surfaces equal to the server's framebuffer")
    assert all(c.proc.poll() is None for c in clients)

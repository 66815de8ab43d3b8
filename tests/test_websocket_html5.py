"""spice-html5 in headless Chromium straight on the server's SPICE ports (issue 19, item 1):
ws:// on the plain port, wss:// on the TLS port, no websockify. The pixels read back from
the browser's canvas equal the server's framebuffer exactly, before and after updates, while
a spice-gtk client on the plain port of the same server shows the same picture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support import html5
from support.processes import as_rgb, free_port, wait_match

PASSWORD = "html5-pass"


@pytest.fixture
def chromium_factory(tmp_path: Path) -> Iterator[Any]:
    missing = html5.missing_tools(websockify=False)
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: {html5.INSTALL_HINT}")
    drivers: list[Any] = []

    def make(trust_cert: Path | None = None) -> Any:
        drivers.append(html5.chromium(tmp_path / f"chromium-{len(drivers)}", trust_cert))
        return drivers[-1]

    yield make
    for d in drivers:
        d.quit()


@pytest.mark.parametrize("scheme", ["ws", "wss"])
def test_spice_html5_on_the_spice_port_shows_the_exact_framebuffer(spawn, random_image, certs, tmp_path, chromium_factory, scheme):
    path, rgb = random_image
    (tmp_path / "pw").write_text(PASSWORD)
    args = ["--source", f"image:{path}", "--password-file", str(tmp_path / "pw")]
    tls_port = free_port()
    if scheme == "wss":
        args += ["--tls-port", str(tls_port), "--cert", str(certs["cert"]), "--key", str(certs["key"])]
    server = spawn.harness(*args)
    gtk = spawn.client("--port", str(server.port), "--password", PASSWORD)
    gtk.wait_event("mark", timeout=60)

    driver = chromium_factory(certs["cert"] if scheme == "wss" else None)
    port = tls_port if scheme == "wss" else server.port
    with html5.serve_page(tmp_path) as base:
        # The path is what spice-html5's own page appends by default; the port ignores it.
        driver.get(html5.page_url(base, f"{scheme}://127.0.0.1:{port}/websockify", PASSWORD))
        # The image source draws once: the framebuffer holds still.
        got = html5.wait_exact(driver, lambda: as_rgb(server.framebuffer()), "the server's framebuffer", timeout=90)
        assert np.array_equal(got, rgb)  # and so the PNG the image source shows

        # Updates after the first screen travel too, to the browser and to spice-gtk.
        server.command("updates 5", "updates", timeout=60)
        framebuffer = as_rgb(server.framebuffer())
        assert not np.array_equal(framebuffer, rgb)
        html5.wait_exact(driver, lambda: framebuffer, "the framebuffer after 5 updates", timeout=90)
        wait_match(lambda: framebuffer, [gtk], "the framebuffer after 5 updates", timeout=60)

    clients = server.stats()["clients"]
    assert len(clients) == 2, clients  # the browser and spice-gtk, each a client of its own
    assert html5.errors(driver) == []

"""The wire layer is sans-IO: importing any of it must not pull in Twisted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import importlib, json, pkgutil, sys
import spice_twisted.wire as wire
names = sorted(m.name for m in pkgutil.iter_modules(wire.__path__))
for name in names:
    importlib.import_module("spice_twisted.wire." + name)
twisted = sorted(m for m in sys.modules if m == "twisted" or m.startswith("twisted."))
print(json.dumps({"modules": names, "twisted": twisted}))
"""


def test_wire_does_not_import_twisted() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"enums", "schema", "messages", "framer", "caps", "link", "ticket"} <= set(out["modules"])
    assert out["twisted"] == []


def test_probe_would_notice_twisted() -> None:
    # The same check, fed a module that does import twisted, must see it (keeps the test honest).
    probe = PROBE.replace("import spice_twisted.wire as wire", "import twisted.internet.defer\nimport spice_twisted.wire as wire")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "twisted.internet.defer" in json.loads(proc.stdout.strip().splitlines()[-1])["twisted"]

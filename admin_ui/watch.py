"""The spice-html5 files for the watch page, found on this machine at start and kept in memory.

spice-html5 is not shipped with spice-twisted and never loaded from a CDN: the Debian
package (`apt install spice-html5`) puts it in /usr/share/spice-html5, and `--html5-dir`
names another copy (for example the npm package's). Only its .js and .css files are
served, from memory, by their relative path: no path is ever looked up on disk per
request, so nothing outside the folder can be reached. The ES-module loader for old
browsers in thirdparty/ is left out (every browser in use runs modules natively).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_DIRS = ("/usr/share/spice-html5", "/usr/local/share/spice-html5")
TYPES = {".js": b"text/javascript; charset=utf-8", ".css": b"text/css; charset=utf-8"}
SKIP = ("thirdparty/browser-es-module-loader/",)
MAX_TOTAL = 8 * 1024 * 1024  # a real copy is about 350 kB; refuse to hold a surprise


@dataclass
class Html5Files:
    """The files of one spice-html5 copy, or none (`folder` None: the page says how to install)."""

    folder: str | None
    files: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    problem: str | None = None

    @property
    def available(self) -> bool:
        return "main.js" in self.files

    def get(self, path: str) -> tuple[bytes, bytes] | None:
        return self.files.get(path)


def find_html5(folder: str | None = None) -> Html5Files:
    """Load spice-html5 from `folder`, or from the first of DEFAULT_DIRS that has main.js."""
    candidates = [folder] if folder else list(DEFAULT_DIRS)
    for path in candidates:
        if os.path.isfile(os.path.join(path, "main.js")):
            return _load(path)
    if folder:
        return Html5Files(None, problem=f"no spice-html5 in {folder} (no main.js there)")
    return Html5Files(None, problem="spice-html5 is not installed (looked in " + ", ".join(DEFAULT_DIRS) + ")")


def _load(folder: str) -> Html5Files:
    out: dict[str, tuple[bytes, bytes]] = {}
    total = 0
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            ctype = TYPES.get(os.path.splitext(name)[1])
            full = os.path.join(root, name)
            rel = os.path.relpath(full, folder).replace(os.sep, "/")
            if ctype is None or rel.startswith(SKIP) or not os.path.isfile(full):
                continue
            with open(full, "rb") as f:
                data = f.read(MAX_TOTAL - total + 1)
            total += len(data)
            if total > MAX_TOTAL:
                return Html5Files(None, problem=f"{folder} holds more than {MAX_TOTAL} bytes of .js and .css: not spice-html5?")
            out[rel] = (data, ctype)
    return Html5Files(folder, out)

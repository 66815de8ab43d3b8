"""The codecs' C extensions (sources beside this file, built by setup.py).

There is no pure-Python fallback: an LZ or GLZ encoder in Python would be two orders of
magnitude too slow to serve a display. Importing a codec whose extension is not built
fails here with what to run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BUILD_HINT = "run scripts/setup.sh (or `.venv/bin/python setup.py build_ext --inplace` in the checkout)"


def load(name: str) -> ModuleType:
    """Imports the extension `name` (e.g. "_lz"), or says clearly that it is not built."""
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ImportError as e:
        raise ImportError(f"the C extension spice_twisted.codecs._native.{name} is not built: {BUILD_HINT} ({e})") from e

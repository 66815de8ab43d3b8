"""Builds the C extensions (the metadata lives in setup.cfg and pyproject.toml).

Each codec's hot loop is one Extension here: adding a codec is one line. `pip install .`
builds them for the installed package; scripts/setup.sh also builds them in place
(`setup.py build_ext --inplace`) for the tests, which import the checkout.
"""

from setuptools import Extension, setup

NATIVE = "spice_twisted/codecs/_native"
CFLAGS = ["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]


def native(name: str, *sources: str) -> Extension:
    return Extension(
        f"spice_twisted.codecs._native.{name}",
        sources=[f"{NATIVE}/{s}" for s in sources],
        depends=[f"{NATIVE}/{h}" for h in ("lz_format.h", "quic.h")],
        extra_compile_args=CFLAGS,
    )


setup(
    ext_modules=[
        native("_lz", "lz.c"),
        native("_quic", "quic.c"),
    ]
)

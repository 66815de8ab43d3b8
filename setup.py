"""Builds the package's C extension (the codecs' hot loops); metadata lives in setup.cfg."""

from setuptools import Extension, setup

ext_modules = [
    Extension(
        "spice_twisted.codecs._native._quic",
        sources=["spice_twisted/codecs/_native/quic.c"],
        depends=["spice_twisted/codecs/_native/quic.h"],
        extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    ),
]

setup(ext_modules=ext_modules)

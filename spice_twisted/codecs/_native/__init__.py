"""The codecs' C extension modules, built in place by `scripts/setup.sh` (setup.py build_ext --inplace)."""

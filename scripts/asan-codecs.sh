#!/usr/bin/env bash
# Runs the C codecs' tests (tests/test_codecs_lz.py, hypothesis included) with the extension
# built under AddressSanitizer and UndefinedBehaviorSanitizer, then rebuilds it normally.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
inc=$($py -c "import sysconfig; print(sysconfig.get_paths()['include'])")
ext=$($py -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
trap '$py setup.py -q build_ext --inplace --force' EXIT
gcc -shared -fPIC -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer \
  -I"$inc" spice_twisted/codecs/_native/lz.c -o "spice_twisted/codecs/_native/_lz$ext"
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" ASAN_OPTIONS=detect_leaks=0 \
  $py -m pytest -p no:cacheprovider --capture=sys tests/test_codecs_lz.py -q "$@"  # (a sanitizer writes to fd 2)

#!/usr/bin/env bash
# Installs what spice-twisted needs on a Debian machine into ./.venv.
#   scripts/setup.sh         the server's needs
#   scripts/setup.sh --test  also the test suite's (real spice-gtk clients, Xvfb, test tools)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_pkgs=(python3 python3-venv python3-pip python3-dev gcc libc6-dev libxcb1)  # gcc: our C codecs
extra=""
if [ "${1:-}" = "--test" ]; then
  apt_pkgs+=(python3-gi gir1.2-spiceclientglib-2.0 spice-client-gtk xvfb chromium chromium-driver
    x11-apps x11-utils x11-xserver-utils x11-xkb-utils xterm xdotool qemu-system-x86
    spice-html5 websockify  # spice-html5 in Chromium, bridged to TCP by websockify
    tigervnc-standalone-server xclip  # Xvnc: an X server RandR can resize (the agent's tests); xclip: X selections
    pulseaudio pulseaudio-utils  # a private sound server, parec/pacat (desktop-sound tests)
    gstreamer1.0-plugins-good  # vp8dec, vp9dec: spice-gtk plays VP8 and VP9 streams (tests/test_streams_clients.py)
    gstreamer1.0-plugins-bad gstreamer1.0-libav  # h264parse, avdec_h264: spice-gtk plays H.264 (tests/test_streams_codecs.py)
    ffmpeg)  # ffmpeg makes a clip, ffplay plays it in Xvfb (the X11 source's stream tests)
  extra="[test]"
fi

missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "== apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
echo "== pip install .${extra}"
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
# (grep drops pip's notes about this machine's extra package folders)
.venv/bin/pip install -q ".${extra}" 2>&1 | { grep -v "^WARNING: Location" || true; }
# The tests (and scripts/run-demo.sh from a checkout) import this checkout's code, not the
# installed copy: build the C codecs here too (spice_twisted/codecs/_native/*.so).
echo "== building the C extensions in place"
.venv/bin/python -c "import setuptools" 2>/dev/null || .venv/bin/pip install -q setuptools
.venv/bin/python setup.py -q build_ext --inplace

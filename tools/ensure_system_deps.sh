#!/bin/sh
# Debian packages the project needs, installed when missing and we may (root with apt-get):
#   libusb-1.0-0  open3d-cpu needs it at import time (mesh tools)
#   chromium      the viewer's browser test drives Debian's headless chromium through Playwright
#                 (tests/viewer; never a browser download). About 40 s and 460 MB on a fresh machine.
#   g++           builds the compiled CPU rasterizer (models/rendering/csrc) on first use
#   python3-dev   Python.h for that build, when the interpreter ships without its headers
# Usage: sh tools/ensure_system_deps.sh [PYTHON]   (PYTHON: the interpreter whose headers to check)
PY="${1:-python3}"
apt_install() {  # package, what-for
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $1 ($2)"
    (apt-get install -y -q "$1" >/dev/null 2>&1 \
      || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$1" >/dev/null 2>&1)) \
      || echo "warning: could not install $1; $2 may fail" >&2
  else
    echo "warning: $1 not found; install Debian's $1 ($2)" >&2
  fi
}
ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0' || apt_install libusb-1.0-0 "open3d, mesh tools"
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || apt_install chromium "the viewer's browser test"
command -v "${CXX:-c++}" >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
  || apt_install g++ "the compiled CPU rasterizer; without it the slower PyTorch backend renders"
if command -v "$PY" >/dev/null 2>&1; then
  inc="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])' 2>/dev/null)"
  if [ -n "$inc" ] && [ ! -f "$inc/Python.h" ]; then
    apt_install python3-dev "the compiled CPU rasterizer's build (Python.h)"
  fi
fi
exit 0

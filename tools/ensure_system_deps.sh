#!/bin/sh
# Debian packages the project needs, installed when missing and we may (root with apt-get):
#   libusb-1.0-0  open3d-cpu needs it at import time (mesh tools)
#   chromium      the viewer's browser test drives Debian's headless chromium through Playwright
#                 (tests/viewer; never a browser download). About 40 s and 460 MB on a fresh machine.
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
exit 0

#!/bin/sh
# open3d-cpu needs libusb-1.0 at import time. Install it from Debian when it is missing and we may.
if ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then exit 0; fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing libusb-1.0-0 (needed by open3d-cpu)"
  (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1)) \
    || echo "warning: could not install libusb-1.0-0; mesh tools (open3d) may fail to import" >&2
else
  echo "warning: libusb-1.0 not found; install Debian's libusb-1.0-0 for open3d (mesh tools)" >&2
fi
exit 0

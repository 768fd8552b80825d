#!/usr/bin/env bash
# Installs headless Chromium (Debian's `chromium` package) for the test that renders report.html.
# Does nothing when `chromium` is already on PATH. Needs root or sudo (apt-get).
set -euo pipefail
if command -v chromium >/dev/null; then
  echo "chromium is present ($(command -v chromium))"
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: installing chromium needs root or sudo" >&2; exit 1; }
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
echo "installed $(chromium --version 2>/dev/null || echo chromium)"

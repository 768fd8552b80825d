#!/usr/bin/env bash
# Screenshot of a run's report with headless Chromium: scripts/screenshot-report.sh RUN_DIR OUT.png
# Renders RUN_DIR/report.html (write it first with `tuneguard report RUN_DIR`) in a 1200x2400
# window. Chromium comes from Debian's package (`apt-get install chromium`); $CHROMIUM overrides it.
set -euo pipefail
if [[ $# -ne 2 ]]; then
    echo "usage: $0 RUN_DIR OUT.png" >&2
    exit 2
fi
run_dir=$1
out=$2
html="$(cd "$run_dir" && pwd)/report.html"
if [[ ! -f $html ]]; then
    echo "error: $html not found: run \`tuneguard report $run_dir\` first" >&2
    exit 2
fi
chromium=${CHROMIUM:-chromium}
command -v "$chromium" >/dev/null || { echo "error: $chromium not found (apt-get install chromium)" >&2; exit 2; }
out_abs="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
# A throw-away profile so runs do not share state; percent-encode what a file URL cannot carry.
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
url="file://$(printf '%s' "$html" | sed -e 's/%/%25/g' -e 's/ /%20/g' -e 's/#/%23/g' -e 's/?/%3F/g')"
rm -f "$out_abs"
timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --disable-dev-shm-usage --user-data-dir="$profile" --window-size=1200,2400 \
    --screenshot="$out_abs" "$url" >/dev/null 2>&1 || true
if [[ ! -s $out_abs ]]; then
    echo "error: chromium wrote no screenshot to $out_abs" >&2
    exit 1
fi
echo "$out_abs"

#!/usr/bin/env bash
# A screenshot of a run's index.html in headless Chromium (Debian's `chromium`), e.g. the
# README's picture:
#
#   cargo run --release -p experiments --bin fashion-baselines -- --quick --out out/page
#   scripts/screenshot.sh out/page docs/run-page.png
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: scripts/screenshot.sh RUN_FOLDER OUT.png" >&2; exit 2; }
page="$(cd "$1" && pwd)/index.html"
[ -f "$page" ] || { echo "$page: no such file (run a report binary into $1 first)" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,1700 \
  --screenshot="$(realpath -m "$2")" "file://$page" 2>/dev/null
echo "wrote $2"

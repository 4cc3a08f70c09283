#!/usr/bin/env bash
# Checks a run's page: DIR/index.html exists, every image it shows and every chart it links
# exists beside it (each PNG with its SVG), and, where Chromium is installed, that the page
# opened headless loads every image (the page marks its body with data-images and
# data-broken once loaded). REQUIRE_CHROMIUM=1 makes a missing Chromium a failure (CI).
# Usage: scripts/check-page.sh DIR
set -euo pipefail
dir=${1:?usage: scripts/check-page.sh DIR}
page="$dir/index.html"
[ -f "$page" ] || { echo "FAIL: $page missing"; exit 1; }
images=0
while read -r src; do
  images=$((images + 1))
  [ -f "$dir/$src" ] || { echo "FAIL: $page shows $src, which is missing"; exit 1; }
  svg="${src%.png}.svg"
  [ -f "$dir/$svg" ] || { echo "FAIL: $page shows $src without its $svg"; exit 1; }
done < <(grep -o '<img src="[^"]*"' "$page" | sed 's/<img src="//; s/"$//')
[ "$images" -gt 0 ] || { echo "FAIL: $page shows no chart"; exit 1; }
chromium=""
for c in chromium chromium-browser google-chrome; do
  [ -x "/usr/bin/$c" ] && { chromium="/usr/bin/$c"; break; }
done
if [ -z "$chromium" ]; then
  [ -z "${REQUIRE_CHROMIUM:-}" ] || { echo "FAIL: REQUIRE_CHROMIUM is set but no chromium"; exit 1; }
  echo "$page: $images images present (not opened: no chromium)"
  exit 0
fi
dom=$("$chromium" --headless --no-sandbox --disable-gpu --allow-file-access-from-files \
  --dump-dom --virtual-time-budget=10000 "file://$(realpath "$page")" 2>/dev/null)
grep -q "data-images=\"$images\"" <<<"$dom" ||
  { echo "FAIL: $page did not finish loading its $images images in chromium"; exit 1; }
grep -q 'data-broken=""' <<<"$dom" ||
  { echo "FAIL: $page has broken images: $(grep -o 'data-broken="[^"]*"' <<<"$dom")"; exit 1; }
echo "$page: $images images load in chromium"

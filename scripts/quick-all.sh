#!/usr/bin/env bash
# Runs every experiment binary with --quick and checks that each table has every row the
# report publishes: the [[published]] rows of an MLP grid file, the [[section.published]]
# rows and [[section.model]] entries of a file of Keras-style models, and that its run page
# shows every chart (scripts/check-page.sh: files present, and loaded in Chromium if installed).
# Usage: scripts/quick-all.sh [OUT_DIR]   (default: out/quick-all)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/quick-all}
mkdir -p "$out"
binaries=(iris statlog mnist fashion-mlp diabetes fashion-baselines cifar10 fashion-cnn
  fashion-talos-mlp fashion-talos-cnn fashion-cnn-variants)
cargo build --release -p experiments --bins
for b in "${binaries[@]}"; do
  start=$(date +%s)
  ./target/release/"$b" --quick --out "$out/$b" > "$out/$b.log" 2>&1 || {
    tail -30 "$out/$b.log"; echo "FAIL: $b --quick"; exit 1; }
  expected=$(grep -cE '^\[\[(published|section\.published|section\.model)\]\]' \
    "experiments/$b.toml" || true)
  rows=$(( $(wc -l < "$out/$b/table.csv") - 1 ))
  if [ "$rows" -ne "$expected" ]; then
    echo "FAIL: $b: table has $rows rows, the report has $expected"; exit 1
  fi
  if grep -qE 'not run|queued|failed' "$out/$b/table.csv"; then
    # The rows, and what the run said of each model that failed, so that a CI log tells why.
    grep -E 'not run|queued|failed' "$out/$b/table.csv"
    grep -E 'FAILED|panick' "$out/$b.log" || tail -30 "$out/$b.log"
    echo "FAIL: $b: a report row was not run or failed"; exit 1
  fi
  scripts/check-page.sh "$out/$b" >"$out/$b.page.log" || { cat "$out/$b.page.log"; exit 1; }
  echo "ok: $b --quick: $rows of $expected report rows, $(tail -1 "$out/$b.page.log" |
    sed 's/.*index.html: //'), $(( $(date +%s) - start )) s"
done

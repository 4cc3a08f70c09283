#!/usr/bin/env bash
# Commits the results of tables in experiments/results/ with the book regenerated from
# them, the background queue paused meanwhile (so trials.jsonl and BOOK.md agree, as CI's
# `book --check` requires).
#
#   scripts/commit-results.sh "message" TABLE...
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/commit-results.sh MESSAGE TABLE..." >&2; exit 2; }
message=$1; shift
paused=0
if [ -f out/queue/pid ] && kill -0 "$(cat out/queue/pid)" 2>/dev/null; then
  scripts/queue.sh pause >/dev/null && paused=1
fi
trap '[ "$paused" = 1 ] && scripts/queue.sh resume >/dev/null' EXIT
cargo build --release -q -p experiments --bin book
target/release/book
for table in "$@"; do git add "experiments/results/$table"; done
git add experiments/results/BOOK.md
git commit -q -m "$message"
git log --oneline -1

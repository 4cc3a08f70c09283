#!/usr/bin/env bash
# Commits the results of tables in experiments/results/ with the book regenerated from
# them, the background queue paused meanwhile. The book is made from a clean worktree of
# the commit (not from this working tree, where the queue may have added trials of other
# tables that are not committed), so that CI's `book --check` on a clean clone agrees.
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
tree=$(mktemp -d)
cleanup() {
  git worktree remove --force "$tree" >/dev/null 2>&1 || true
  [ "$paused" = 1 ] && scripts/queue.sh resume >/dev/null
}
trap cleanup EXIT
cargo build --release -q -p experiments --bin book
for table in "$@"; do git add "experiments/results/$table"; done
git commit -q -m "$message"
git worktree add -q --detach "$tree" HEAD
target/release/book --studies "$tree/experiments" --results "$tree/experiments/results"
cp "$tree/experiments/results/BOOK.md" experiments/results/BOOK.md
git add experiments/results/BOOK.md
git commit -q --amend --no-edit
git log --oneline -1
head -1 experiments/results/BOOK.md

#!/usr/bin/env bash
# Every report table, one after another, into experiments/results/<binary>/, then the
# results book (experiments/results/BOOK.md). Resumable: a model already in a table's
# trials.jsonl under the same configuration key is not trained again, and a model in
# training continues from its checkpoint.
#
#   scripts/reproduce-all.sh          # the rows the reports print (--rows), the default
#   scripts/reproduce-all.sh --full   # every grid in full (the report 001 CNN grids are
#                                     # GPU-scale: see the book's estimates)
#
# Report 001's MLP grids always run in full: they train stacked, in minutes, and their
# tables pick the best of the whole grid. Tables are ordered by their estimated time in
# the book, cheapest first. In the background and niced: scripts/queue.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=--rows
case "${1:-}" in
  "") ;;
  --full) rows="" ;;
  *) echo "usage: scripts/reproduce-all.sh [--full]" >&2; exit 2 ;;
esac
mlp_tables=(iris statlog diabetes fashion-mlp mnist)
model_tables=(fashion-baselines fashion-talos-mlp fashion-talos-cnn fashion-cnn-variants cifar10 fashion-cnn)
cargo build --release -p experiments --bins
for table in "${mlp_tables[@]}"; do
  target/release/"$table" --out "experiments/results/$table"
done
for table in "${model_tables[@]}"; do
  # shellcheck disable=SC2086
  target/release/"$table" --out "experiments/results/$table" $rows
done
target/release/book

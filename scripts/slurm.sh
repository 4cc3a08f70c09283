#!/usr/bin/env bash
# One report table on a Slurm cluster: a job array of N shards, then a merge job that runs
# when all of them succeeded.
#
#   scripts/slurm.sh TABLE N [FLAGS...]      e.g.  scripts/slurm.sh fashion-cnn 8 --rows
#
# Array task i runs `TABLE --shard i/N --out out/<table>-shards/i [FLAGS]`: each shard has
# its own results file (never one file shared over a network file system, where locks are
# not reliable), locked while it runs, so a task the scheduler restarts while its first
# attempt lives cannot corrupt it; a restarted task skips what its trials.jsonl has and
# continues a model from its checkpoint. The merge job runs `TABLE --merge <the N folders>
# --out experiments/results/<table> [FLAGS]` (or MERGE_OUT), which trains nothing the shards trained and
# writes the table, charts and book rows of an unsharded run. Build first (on a node with
# the same CPU family): cargo build --release -p experiments --bins (add --features wgpu
# for GPU nodes, and --gres=gpu:1 to SBATCH_FLAGS).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: scripts/slurm.sh TABLE N [FLAGS...]" >&2; exit 2; }
table=$1 n=$2
shift 2
[[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "N must be a positive number, not $n" >&2; exit 2; }
bin="$PWD/target/release/$table"
[ -x "$bin" ] || { echo "$bin is missing: build it first" >&2; exit 1; }
shards="out/$table-shards"
mkdir -p "$shards" out/slurm
flags=$(printf '%q ' "$@")
# shellcheck disable=SC2086
array=$(sbatch --parsable ${SBATCH_FLAGS:-} --array="0-$((n - 1))" --job-name="$table" \
  --output="out/slurm/%x-%a.log" \
  --wrap="$bin --shard \$SLURM_ARRAY_TASK_ID/$n --out $shards/\$SLURM_ARRAY_TASK_ID $flags")
folders=$(for i in $(seq 0 $((n - 1))); do printf '%s ' "$shards/$i"; done)
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_FLAGS:-} --dependency="afterok:$array" \
  --job-name="$table-merge" --output="out/slurm/%x.log" \
  --wrap="$bin --merge $folders --out ${MERGE_OUT:-experiments/results/$table} $flags")
echo "submitted: array $array ($n shards of $table), merge $merge (after the array succeeds)"

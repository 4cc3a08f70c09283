#!/usr/bin/env bash
# Where flex's training time goes: samples the `bench` binary's training of one model with
# `perf` (software clock, so it works in VMs without hardware counters) and prints the
# hottest functions and, for the hottest, its hottest source lines.
#
#   scripts/profile_flex.sh "report 004"        # any text of a model name in experiments/bench.toml
#   MALLOC_TOP_PAD_=0 scripts/profile_flex.sh "report 004"   # glibc's malloc settings are honoured
#
# Needs Debian's linux-perf (`apt-get install linux-perf`). Writes out/profile/<slug>.data.
# `sed -n` rather than `head`: with pipefail, a `head` that stops reading fails the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: scripts/profile_flex.sh MODEL-NAME-TEXT [SECONDS]}"
seconds="${2:-4}"
command -v perf >/dev/null || { echo "perf is required: apt-get install linux-perf" >&2; exit 1; }

# The `profiling` profile is release with source lines (release itself has no debug info).
cargo build --profile profiling -p experiments --bin bench
slug=$(echo "$model" | tr -c 'A-Za-z0-9' '-' | tr -s '-' | sed 's/-$//')
mkdir -p out/profile
data="out/profile/$slug.data"
perf record -e cpu-clock -F 999 -g -o "$data" \
  target/profiling/bench --only "$model" --device cpu --runs 2 --seconds "$seconds" \
  --out "out/profile/$slug" >/dev/null
echo "== hottest functions (self time) while training and predicting with: $model"
perf report -i "$data" --no-children --sort symbol --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | sed -n '1,25p' | cut -c1-150
top=$(perf report -i "$data" --no-children --sort symbol --stdio -g none 2>/dev/null \
  | grep -E '^ +[0-9]' | sed -nE '1{s/^ +[0-9.]+% +\[[.k]\] +//; s/( +-)* *$//; p}')
echo "== hottest source lines of: $top"
perf annotate -i "$data" --stdio -l "$top" 2>/dev/null \
  | grep -E '^ +[0-9]+\.[0-9]+ +[A-Za-z_0-9]+\.rs:[0-9]+' | sort -rn | sed -n '1,10p'

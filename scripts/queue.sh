#!/usr/bin/env bash
# The queue of full report runs on this CPU: one table after another, cheapest first, niced,
# each into experiments/results/<binary>/ (resumable: a rerun skips what trials.jsonl has
# under the same configuration key). The binaries and the study files are copied aside
# first, so rebuilding the workspace or editing a study while the queue runs changes neither
# the code nor the tables that make its figures.
#
#   scripts/queue.sh start [TABLE...]   # in the background; log in out/queue/queue.log
#   scripts/queue.sh pause | resume     # SIGSTOP / SIGCONT the queue (benchmarks need an idle CPU)
#   scripts/queue.sh stop               # end it (a model in training continues from its
#                                       # checkpoint when its table is queued again)
#   scripts/queue.sh status
#
# While it runs, do not `git stash`, `git checkout` or otherwise rewrite a results folder it
# writes: a table's trials.jsonl is held open for appending, and a file git replaces leaves
# the run appending to the deleted copy (stop the queue first; it resumes from checkpoints).
#
# A TABLE is a binary name with optional flags after a colon, as shell words:
# `cifar10:--only pooling`, "fashion-cnn:--rows --only 'Table 6'".
set -euo pipefail
cd "$(dirname "$0")/.."
dir=out/queue
mkdir -p "$dir"
default=(iris statlog diabetes fashion-mlp mnist "cifar10:--only pooling" fashion-baselines)

run_queue() {
  local bin="$dir/bin"
  rm -rf "$bin" && mkdir -p "$bin/studies"
  for table in "$@"; do
    local name="${table%%:*}"
    cp "target/release/$name" "$bin/"
    cp "experiments/$name.toml" "$bin/studies/"
  done
  echo "$(date -Is) queue of $# table(s) at $(git rev-parse --short HEAD)"
  for table in "$@"; do
    local name="${table%%:*}" flags=""
    [[ "$table" == *:* ]] && flags="${table#*:}"
    local -a args=()
    eval "args=($flags)"  # shell words: --only 'Table 6' is one value
    echo "$(date -Is) start $name $flags"
    local t0=$SECONDS rc=0
    # The table's folder unless the flags name another (a seed's: --out <table>/seed-N).
    [[ " ${args[*]} " == *" --out "* ]] || args+=(--out "experiments/results/$name")
    nice -n 19 "$bin/$name" --config "$bin/studies/$name.toml" "${args[@]}" \
      >>"$dir/$name.log" 2>&1 || rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "$(date -Is) done $name in $((SECONDS - t0)) s"
    else
      echo "$(date -Is) FAILED $name (exit $rc) after $((SECONDS - t0)) s: see $dir/$name.log"
    fi
  done
  echo "$(date -Is) queue finished"
}

case "${1:-status}" in
  start)
    shift
    [ $# -gt 0 ] || set -- "${default[@]}"
    cargo build --release -p experiments --bins
    setsid bash -c "$(declare -f run_queue); dir=$dir; run_queue $(printf '%q ' "$@")" \
      >>"$dir/queue.log" 2>&1 </dev/null &
    echo $! >"$dir/pid"
    echo "queue started (pid $(cat "$dir/pid")); log: $dir/queue.log"
    ;;
  stop)
    kill -TERM -- "-$(cat "$dir/pid")" 2>/dev/null && echo "queue stopped" || echo "no queue running"
    ;;
  pause | resume)
    sig=STOP; [ "$1" = resume ] && sig=CONT
    kill -"$sig" -- "-$(cat "$dir/pid")"
    echo "queue ${1}d"
    ;;
  status)
    tail -n 5 "$dir/queue.log" 2>/dev/null || echo "no queue has run"
    ;;
  *)
    echo "usage: scripts/queue.sh start [TABLE...] | pause | resume | stop | status" >&2
    exit 2
    ;;
esac

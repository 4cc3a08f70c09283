#!/usr/bin/env bash
# Tests scripts/slurm.sh on a real Slurm: a one-node cluster on this machine (Debian's
# slurm-wlm and munge, as root), report 001's iris table `--quick` in 3 array shards and a
# dependent merge job, whose table.csv and best.csv must equal an unsharded run's.
#
#   sudo scripts/slurm-local-test.sh     # installs slurm-wlm and munge if missing
#
# It writes /etc/slurm/slurm.conf for this host only when none exists, starts munged,
# slurmctld and slurmd if they are not running, and leaves them running (stop them with
# `pkill slurmd slurmctld munged`). Nothing outside out/slurm-test is touched in the
# repository.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "run as root: it configures and starts Slurm's daemons" >&2; exit 1; }
if ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slurm-wlm munge
fi
host=$(hostname -s)
if [ ! -f /etc/slurm/slurm.conf ]; then
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat >/etc/slurm/slurm.conf <<CONF
# One-node cluster written by scripts/slurm-local-test.sh
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
fi
[ -f /etc/munge/munge.key ] || mungekey --create
mkdir -p /run/munge && chown munge:munge /run/munge 2>/dev/null || true
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do
  sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed|alloc' && break
  sleep 1
done
sinfo

cargo build --release -p experiments --bin iris
out=out/slurm-test
rm -rf "$out" out/iris-shards
mkdir -p "$out"
./target/release/iris --quick --out "$out/unsharded" >"$out/unsharded.log" 2>&1
MERGE_OUT="$out/merged" scripts/slurm.sh iris 3 --quick | tee "$out/submitted.txt"
merge=$(grep -o 'merge [0-9]*' "$out/submitted.txt" | cut -d' ' -f2)
for _ in $(seq 600); do
  # No accounting database here: the controller keeps a finished job for MinJobAge (300 s).
  state=$(scontrol show job "$merge" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2 || true)
  case "$state" in COMPLETED | FAILED | CANCELLED* | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
  sleep 1
done
echo "merge job $merge: $state"
[ "$state" = COMPLETED ] || { tail -20 out/slurm/*.log; exit 1; }
cmp "$out/unsharded/table.csv" "$out/merged/table.csv" ||
  { echo "FAIL: table.csv of the 3 merged shards differs from the unsharded run"; exit 1; }
# best.csv's last column is each trial's training seconds, which differ between runs.
cmp <(sed 's/,[^,]*$//' "$out/unsharded/best.csv") <(sed 's/,[^,]*$//' "$out/merged/best.csv") ||
  { echo "FAIL: best.csv of the 3 merged shards differs from the unsharded run"; exit 1; }
echo "ok: Slurm ran 3 shards of iris --quick and the merge; table.csv, and best.csv but for" \
  "its seconds, equal an unsharded run's"

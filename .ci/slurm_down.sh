#!/usr/bin/env bash
# Stop the test cluster .ci/slurm_up.sh started: its jobs, then its daemons in reverse start order, each by
# the PID file slurm_up.sh kept (nothing else is touched). Quiet; safe to run when nothing is up.
set -uo pipefail
DIR=${CLDST_SLURM_DIR:-/tmp/cldst-slurm}
command -v scancel >/dev/null && scancel --user="$(id -un)" >/dev/null 2>&1
for name in slurmd slurmctld slurmdbd mariadbd munged; do
    pidfile="$DIR/$name.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
done
exit 0

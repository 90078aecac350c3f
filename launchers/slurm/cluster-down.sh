#!/usr/bin/env bash
# Stop the single-node SLURM cluster started by cluster-up.sh, by its pid files only.
#
#   launchers/slurm/cluster-down.sh            stop the daemons, keep the state (jobs, accounting)
#   launchers/slurm/cluster-down.sh --purge    stop them and delete the state directory
#
# A pid file counts only if its process is alive (not a zombie) and has the daemon's name, so a
# stale pid file can never make this signal an unrelated process that reused the pid.
set -euo pipefail

STATE=${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
RUN=$STATE/run
purge=0
case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster-down: unknown option '$1' (use --purge)" >&2; exit 2 ;;
esac

. "$(dirname "$0")/pids.sh"

# stop NAME: TERM, wait up to 15 s, then KILL; remove the pid file.
stop() {
    local name=$1 pidfile=$RUN/$1.pid pid i
    if ! pid=$(pid_of "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        pid_of "$pidfile" "$name" >/dev/null || break
        sleep 0.1
    done
    if pid_of "$pidfile" "$name" >/dev/null; then
        echo "cluster-down: $name (pid $pid) ignored TERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$pidfile"
    echo "cluster-down: stopped $name (pid $pid)"
}

if [ -d "$RUN" ]; then
    # Reverse order of start: the node, the controller, accounting, its database, then munge.
    for d in slurmd slurmctld slurmdbd mariadbd munged; do stop "$d"; done
else
    echo "cluster-down: no cluster state at $STATE"
fi
if [ "$purge" = 1 ] && [ -d "$STATE" ]; then
    rm -rf "$STATE"
    echo "cluster-down: removed $STATE"
fi

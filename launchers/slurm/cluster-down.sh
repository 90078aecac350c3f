#!/usr/bin/env bash
# Stop the SLURM cluster started by cluster-up.sh, by its pid files only; with 2+ nodes, also
# remove the nodes' network namespaces, veth pairs and bridge.
#
#   launchers/slurm/cluster-down.sh            stop the daemons, keep the state (jobs, accounting)
#   launchers/slurm/cluster-down.sh --purge    stop them and delete the state directory
#
# A pid file counts only if its process is alive (not a zombie) and has the daemon's name, so a
# stale pid file can never make this signal an unrelated process that reused the pid. Job tasks
# still running on a node are in that node's network namespace: they are stopped with it.
set -euo pipefail

STATE=${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
RUN=$STATE/run
purge=0
case "${1:-}" in
    "") ;;
    --purge) purge=1 ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster-down: unknown option '$1' (use --purge)" >&2; exit 2 ;;
esac

. "$(dirname "$0")/pids.sh"
. "$(dirname "$0")/nodes.sh"
load_layout "$STATE"

# stop PIDFILE NAME: TERM, wait up to 15 s, then KILL; remove the pid file.
stop() {
    local pidfile=$1 name=$2 pid i
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

# remove_node NODE: whatever still runs in its namespace (job steps) is killed, then the namespace
# and its veth pair go.
remove_node() {
    local n=$1 pids
    [ -e "$(netns_path "$n")" ] || return 0
    pids=$(netns_pids "$n")
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086  # a list of pids
        kill -KILL $pids 2>/dev/null || true
        echo "cluster-down: node $n: killed what still ran there (pids $(echo $pids))"
    fi
    ip netns del "$n" 2>/dev/null || true
    ip link del "$(host_veth "$n")" 2>/dev/null || true
}

if [ -d "$RUN" ]; then
    # Reverse order of start: the nodes, the controller, accounting, its database, then munge.
    for f in "$RUN"/slurmd-*.pid "$RUN"/slurmd.pid; do
        [ -e "$f" ] && stop "$f" slurmd
    done
    for d in slurmctld slurmdbd mariadbd munged; do stop "$RUN/$d.pid" "$d"; done
else
    echo "cluster-down: no cluster state at $STATE"
fi
if [ "$N_NODES" != 1 ] && command -v ip >/dev/null 2>&1; then
    for n in "${NODES[@]}"; do remove_node "$n"; done
    if ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link del "$BRIDGE" && echo "cluster-down: removed the nodes' network (${NODES[*]}, bridge $BRIDGE)"
    fi
fi
if [ "$purge" = 1 ] && [ -d "$STATE" ]; then
    rm -rf "$STATE"
    echo "cluster-down: removed $STATE"
fi

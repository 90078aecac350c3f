#!/usr/bin/env bash
# Take a node of a multi-node cluster away, as if its power failed: SIGKILL every process in its
# network namespace at once (its slurmd, the slurmstepd of each job step, the job tasks).
# slurmctld notices within SlurmdTimeout (10 s) plus a ping interval, marks the node DOWN
# ("Not responding") and requeues its batch jobs (NODE_FAIL) onto the nodes still up.
#
#   launchers/slurm/node-down.sh psn2     take node psn2 away
#   launchers/slurm/cluster-up.sh         start it again (it rejoins idle: ReturnToService=2)
set -euo pipefail

STATE=${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
case "${1:-}" in
    -h | --help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
node=${1:?usage: node-down.sh NODE (one of the nodes sinfo -N lists)}
. "$(dirname "$0")/nodes.sh"
load_layout "$STATE"

[ "$N_NODES" != 1 ] || { echo "node-down: the cluster at $STATE has one node, not running in a namespace" >&2; exit 2; }
known=0
for n in "${NODES[@]}"; do [ "$n" = "$node" ] && known=1; done
[ "$known" = 1 ] || { echo "node-down: no node '$node' in the cluster at $STATE (nodes: ${NODES[*]})" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "node-down: must run as root (the node's processes are root's and the users')" >&2; exit 1; }

pids=$(netns_pids "$node")
if [ -z "$pids" ]; then
    echo "node-down: node $node runs nothing (already down)"
    exit 0
fi
# shellcheck disable=SC2086  # a list of pids
kill -KILL $pids 2>/dev/null || true
echo "node-down: node $node is down ($(echo "$pids" | wc -w) processes killed)"

#!/usr/bin/env bash
# make test's last step: the slurm tier and, beside it, the unit tier at the lowest CPU priority.
# The slurm tier waits on its cluster about half the time (measured: 257 CPU s in 259 s on 2 cores),
# and its requeue and lost-node checks need the cores whenever their cells train; a nice-19 process
# gets about 1.5% of a core that a nice-0 one wants (the kernel's weights 15 vs 1024), so the unit
# tier only takes the CPU the cluster leaves idle. The unit tier's output is printed when both end.
# Usage: tests/slurm-and-unit.sh PYTEST WORKERS [PYTEST ARGS...]
set -uo pipefail
pytest=$1 workers=$2
shift 2
log=$(mktemp) base=$(mktemp -d)
nice -n 19 "$pytest" -n "$workers" --dist loadfile -m "not slow and not slurm and not gpu" -p no:cacheprovider --basetemp="$base" "$@" >"$log" 2>&1 &
unit=$!
trap 'kill "$unit" 2>/dev/null; exit 130' INT TERM  # a stopped make test leaves no unit run behind
"$pytest" -m slurm "$@"
slurm=$?
wait "$unit"
rc_unit=$?
echo "---- the unit tier (run beside the slurm tier at nice 19) ----"
cat "$log"
rm -rf "$log" "$base"
exit $((slurm != 0 || rc_unit != 0))

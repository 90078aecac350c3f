#!/usr/bin/env bash
# make test's pytest runs, all three at once, each at its own CPU priority:
#   slurm tier  nice 0   latency-bound: it waits on its cluster (time limits, requeues, a lost node) about half the
#                        time, and its requeue and lost-node checks need the cores whenever their cells train;
#   slow + gpu  nice 5   CPU-bound (real training): it takes what the slurm tier leaves (weight 335 vs 1024);
#   unit        nice 19  takes what both leave (weight 15), and the cores once they end.
# Run one after another they left a core idle whenever the slurm tier waited; this way the cores stay busy until
# the last test. The slurm tier prints as it runs; the other two print when all three have ended.
# Usage: tests/tiers.sh PYTEST WORKERS [PYTEST ARGS...]
set -uo pipefail
pytest=$1 workers=$2
shift 2
base=$(mktemp -d)
# Own --basetemp per run: pytest prunes older numbered temp folders, which could be another run's.
nice -n 5 "$pytest" -n "$workers" --dist loadfile -m "(slow or gpu) and not slurm" -p no:cacheprovider --basetemp="$base/slow" "$@" >"$base/slow.log" 2>&1 &
slow=$!
nice -n 19 "$pytest" -n "$workers" --dist loadfile -m "not slow and not slurm and not gpu" -p no:cacheprovider --basetemp="$base/unit" "$@" >"$base/unit.log" 2>&1 &
unit=$!
trap 'kill "$slow" "$unit" 2>/dev/null; exit 130' INT TERM  # a stopped make test leaves no run behind
"$pytest" -m slurm "$@"
rc_slurm=$?
wait "$slow"
rc_slow=$?
wait "$unit"
rc_unit=$?
for tier in slow unit; do
    echo "---- the $tier tier (run beside the slurm tier) ----"
    cat "$base/$tier.log"
done
rm -rf "$base"
# pytest's 5 is "no test selected": a tier that PYTEST ARGS (-k ...) leave empty is not a failure, unless all are.
rcs=("$rc_slurm" "$rc_slow" "$rc_unit")
[[ ${rcs[*]} == "5 5 5" ]] && { echo "tests/tiers.sh: no test selected in any tier" >&2; exit 5; }
for rc in "${rcs[@]}"; do
    [[ $rc == 0 || $rc == 5 ]] || exit 1
done

# Sourced by cluster-up.sh and cluster-down.sh: daemons are found by pid file only.
# pid_of PIDFILE NAME: print the pid if it is a live, non-zombie process called NAME
# (kill -0 sees zombies as alive, and a recycled pid would belong to another program).
pid_of() {
    local pid state comm
    [ -s "$1" ] || return 1
    pid=$(cat -- "$1" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || return 1
    state=$(awk '/^State:/ {print $2; exit}' "/proc/$pid/status" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [ "$comm" = "$2" ] || return 1
    echo "$pid"
}

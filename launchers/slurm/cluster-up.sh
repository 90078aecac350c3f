#!/usr/bin/env bash
# Start a SLURM cluster on this machine (slurmctld + one slurmd per node + slurmdbd/mariadb
# accounting + munge) whose whole state lives under one directory. Idempotent: when it is already
# up and healthy it returns at once; a node that was taken away (node-down.sh) is started again.
# See launchers/slurm/README.md.
#
#   sudo launchers/slurm/cluster-up.sh          # nodes psn1 psn2; state in ${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
#   sudo PROXYSCALE_SLURM_NODES=1 launchers/slurm/cluster-up.sh    # one node named after this host
#   export SLURM_CONF=/tmp/proxyscale-slurm/etc/slurm.conf
#   sinfo; sbatch ...; launchers/slurm/cluster-down.sh
#
# With 2 or more nodes each slurmd runs in its own network namespace, with its own hostname,
# /etc/hosts and address (see nodes.sh): jobs on different nodes are on different hosts as far as
# SLURM, Lightning and gloo can tell, and they talk over a private bridge.
#
# Environment: PROXYSCALE_SLURM_STATE (state dir), PROXYSCALE_SLURM_PORTS ("ctld d dbd mysql",
# default "6817 6818 6819 3307"), PROXYSCALE_SLURM_NODES (default 2), PROXYSCALE_SLURM_CPUS (CPUs
# each node advertises; default 8 for one node, 4 each for several), PROXYSCALE_SLURM_NET (the
# nodes' /24, default 10.213.7), PROXYSCALE_SLURM_PREFIX (node, namespace and interface names,
# default psn), PROXYSCALE_SLURM_WAIT (seconds to wait for the cluster, default 120).
# Exit status 2: a bad setting; 3: network namespaces cannot be made here (PROXYSCALE_SLURM_NODES=1 can).
set -euo pipefail

STATE=${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
read -r CTLD_PORT SLURMD_PORT DBD_PORT MYSQL_PORT <<<"${PROXYSCALE_SLURM_PORTS:-6817 6818 6819 3307}"
N_NODES=${PROXYSCALE_SLURM_NODES:-2}
PREFIX=${PROXYSCALE_SLURM_PREFIX:-psn}
NET=${PROXYSCALE_SLURM_NET:-10.213.7}
if [ "$N_NODES" = 1 ]; then CPUS=${PROXYSCALE_SLURM_CPUS:-8}; else CPUS=${PROXYSCALE_SLURM_CPUS:-4}; fi
WAIT=${PROXYSCALE_SLURM_WAIT:-120}
CLUSTER=proxyscale

say() { echo "cluster-up: $*"; }
die() { echo "cluster-up: error: $*" >&2; exit 1; }
bad() { echo "cluster-up: error: $*" >&2; exit 2; }

[[ "$N_NODES" =~ ^[1-9][0-9]?$ ]] || bad "PROXYSCALE_SLURM_NODES must be a number from 1 to 99, got '$N_NODES'"
[[ "$CPUS" =~ ^[1-9][0-9]{0,2}$ ]] || bad "PROXYSCALE_SLURM_CPUS must be a number from 1 to 999, got '$CPUS'"
[[ "$NET" =~ ^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || bad "PROXYSCALE_SLURM_NET must be the first three numbers of a /24 (e.g. 10.213.7), got '$NET'"
[[ "$PREFIX" =~ ^[a-z][a-z0-9]{0,7}$ ]] || bad "PROXYSCALE_SLURM_PREFIX must be 1-8 lowercase letters or digits, starting with a letter, got '$PREFIX'"
. "$(dirname "$0")/nodes.sh"
set_nodes
LAYOUT="$N_NODES $PREFIX $NET"

ETC=$STATE/etc RUN=$STATE/run LOG=$STATE/log MUNGE=$STATE/munge DB=$STATE/mysql SPOOL=$STATE/spool
CONF=$ETC/slurm.conf
SOCK=$MUNGE/run/munge.socket.2
export SLURM_CONF=$CONF

. "$(dirname "$0")/pids.sh"
# alive PIDFILE NAME: the pid in PIDFILE is a live (not zombie) process called NAME.
alive() { pid_of "$@" >/dev/null; }

slurmd_pidfile() { echo "$RUN/slurmd-$1.pid"; }  # SlurmdPidFile=$RUN/slurmd-%n.pid

# Every daemon up (one slurmd per node), the layout the one asked for, every node schedulable
# and accounting answering.
healthy() {
    local n
    alive "$RUN/munged.pid" munged && alive "$RUN/mariadbd.pid" mariadbd &&
        alive "$RUN/slurmdbd.pid" slurmdbd && alive "$RUN/slurmctld.pid" slurmctld || return 1
    [ "$(cat "$(layout_file "$STATE")" 2>/dev/null)" = "$LAYOUT" ] || return 1
    for n in "${NODES[@]}"; do
        alive "$(slurmd_pidfile "$n")" slurmd && node_ready "$n" || return 1
    done
    timeout 10 sacct -n -X -S now-1minute -o JobID >/dev/null 2>&1
}

node_state() { timeout 10 sinfo -h -N -n "$1" -o %T 2>/dev/null | head -n1; }
node_ready() { # the node is idle/mixed/allocated (not down, drained or still unknown)
    case "$(node_state "$1")" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

usage_note() {
    local what="single-node SLURM cluster '$CLUSTER' is up (node ${NODES[0]}"
    [ "$N_NODES" = 1 ] || what="$N_NODES-node SLURM cluster '$CLUSTER' is up (nodes ${NODES[*]}, one network namespace each on $NET.0/24"
    cat <<EOF
cluster-up: $what, $CPUS CPUs per node, partition debug)
  state:  $STATE   (logs in $LOG)
  use it: export SLURM_CONF=$CONF
          sinfo; squeue; sacct; sbatch launchers/slurm/cell.sbatch model=tiny
  stop:   launchers/slurm/cluster-down.sh   (add --purge to delete $STATE)
EOF
    if [ "$N_NODES" != 1 ]; then
        echo "  take a node away: launchers/slurm/node-down.sh ${NODES[-1]}   (cluster-up.sh starts it again)"
    fi
}

bins=(munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr scontrol)
[ "$N_NODES" = 1 ] || bins+=(ip nsenter unshare)
for bin in "${bins[@]}"; do
    command -v "$bin" >/dev/null 2>&1 || die "'$bin' not found: install the SLURM packages with tests/system-deps.sh slurm"
done

if healthy; then
    usage_note
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "slurmd must run as root: run this script with sudo (jobs still run as the submitting user)"
running=$(cat "$(layout_file "$STATE")" 2>/dev/null || true)
if [ -n "$running" ] && [ "$running" != "$LAYOUT" ] && alive "$RUN/slurmctld.pid" slurmctld; then
    bad "the cluster at $STATE runs with another layout (nodes prefix net: $running, asked for $LAYOUT): stop it first with launchers/slurm/cluster-down.sh"
fi

start_t=$SECONDS
mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$MUNGE/run" "$DB" "$SPOOL/ctld"
chmod 755 "$STATE" "$ETC" "$RUN" "$LOG" "$MUNGE/run" "$SPOOL"
chmod 711 "$MUNGE"  # job users need to traverse to the socket; nothing else in here is readable
chmod 700 "$DB"

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds, or fail with the log hint.
wait_for() {
    local limit=$1 what=$2 t0=$SECONDS
    shift 2
    until "$@"; do
        if ((SECONDS - t0 >= limit)); then die "$what not ready after ${limit}s (see $LOG)"; fi
        sleep 0.5
    done
}

# --- munge ----------------------------------------------------------------------------------------
if [ ! -s "$MUNGE/munge.key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$MUNGE/munge.key")
fi
chmod 600 "$MUNGE/munge.key"
if ! alive "$RUN/munged.pid" munged; then
    rm -f "$SOCK" "$SOCK.lock"
    munged --force --key-file="$MUNGE/munge.key" --socket="$SOCK" --pid-file="$RUN/munged.pid" \
        --log-file="$LOG/munged.log" --seed-file="$MUNGE/munged.seed" </dev/null >>"$LOG/munged.log" 2>&1 ||
        die "munged failed to start (see $LOG/munged.log)"
fi
wait_for 20 munged test -S "$SOCK"

# --- mariadb (accounting storage for slurmdbd, TCP on 127.0.0.1:$MYSQL_PORT) -------------------
MYSQL_SOCK=$DB/mysqld.sock
if [ ! -d "$DB/data/mysql" ]; then
    rm -rf "$DB/data"
    mariadb-install-db --no-defaults --datadir="$DB/data" --user=root --auth-root-authentication-method=socket \
        --skip-test-db >"$LOG/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $LOG/mariadb-install.log)"
fi
if ! alive "$RUN/mariadbd.pid" mariadbd; then
    setsid mariadbd --no-defaults --user=root --datadir="$DB/data" --socket="$MYSQL_SOCK" \
        --pid-file="$RUN/mariadbd.pid" --log-error="$LOG/mariadbd.log" --port="$MYSQL_PORT" \
        --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=64M \
        --innodb-log-file-size=64M --innodb-lock-wait-timeout=900 </dev/null >>"$LOG/mariadbd.log" 2>&1 &
fi
mysql_ok() { mariadb --no-defaults -uroot --socket="$MYSQL_SOCK" -e 'SELECT 1' >/dev/null 2>&1; }
wait_for 60 mariadbd mysql_ok
wait_for 10 "mariadbd pid file" alive "$RUN/mariadbd.pid" mariadbd
chmod 644 "$RUN/mariadbd.pid"  # (created 660) so that any user's health check can read it
DB_PASS_FILE=$DB/slurm.pass
[ -s "$DB_PASS_FILE" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$DB_PASS_FILE")
DB_PASS=$(cat "$DB_PASS_FILE")
mariadb --no-defaults -uroot --socket="$MYSQL_SOCK" <<SQL || die "could not create the accounting database"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

# --- the nodes' network (2+ nodes): a bridge, and per node a namespace with one veth end ----------
if [ "$N_NODES" != 1 ]; then
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        if ip -o -4 addr show | grep -q " inet $NET\."; then
            bad "$NET.0/24 is already used on this machine (ip -4 addr): choose another PROXYSCALE_SLURM_NET"
        fi
        if ! ip link add "$BRIDGE" type bridge 2>"$LOG/net.log"; then
            echo "cluster-up: error: cannot create the bridge $BRIDGE ($(head -n1 "$LOG/net.log")): a multi-node cluster needs network namespaces; PROXYSCALE_SLURM_NODES=1 starts a single-node one" >&2
            exit 3
        fi
    fi
    ip addr replace "$CTLD_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    for n in "${NODES[@]}"; do
        if [ ! -e "$(netns_path "$n")" ] && ! ip netns add "$n" 2>"$LOG/net.log"; then
            echo "cluster-up: error: cannot create the network namespace $n ($(head -n1 "$LOG/net.log")): PROXYSCALE_SLURM_NODES=1 starts a single-node cluster" >&2
            exit 3
        fi
        veth=$(host_veth "$n")
        if ! ip -n "$n" link show eth0 >/dev/null 2>&1; then
            ip link del "$veth" 2>/dev/null || true
            ip link add "$veth" type veth peer name eth0 netns "$n"
        fi
        ip link set "$veth" master "$BRIDGE" up
        ip -n "$n" addr replace "$(node_addr "$n")/24" dev eth0
        ip -n "$n" link set eth0 up
        ip -n "$n" link set lo up
    done
    # The nodes' /etc/hosts: this machine's, plus every node and the controller by name (Lightning
    # takes the first node's name from SLURM_NODELIST as the address of rank 0).
    {
        cat /etc/hosts
        echo "# proxyscale SLURM nodes (launchers/slurm/cluster-up.sh)"
        echo "$CTLD_ADDR $(hostname -s)-ctld"
        for n in "${NODES[@]}"; do echo "$(node_addr "$n") $n"; done
    } >"$ETC/hosts.new"
    chmod 644 "$ETC/hosts.new" && mv -f "$ETC/hosts.new" "$ETC/hosts"
fi
echo "$LAYOUT" >"$ETC/layout"

# --- configuration --------------------------------------------------------------------------------
cat >"$ETC/slurmdbd.conf.new" <<EOF
# Generated by launchers/slurm/cluster-up.sh; rewritten on every start.
AuthType=auth/munge
AuthInfo=socket=$SOCK
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$MYSQL_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$ETC/slurmdbd.conf.new" && mv -f "$ETC/slurmdbd.conf.new" "$ETC/slurmdbd.conf"

cat >"$ETC/slurm.conf.new" <<EOF
# Generated by launchers/slurm/cluster-up.sh; rewritten on every start.
# A test cluster on one machine ($N_NODES node(s)): jobs share a node by CPU only (no memory or GPU
# accounting), and go to the least loaded node (LLN) so that an array spreads over the nodes.
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)($CTLD_ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again after this many seconds (default 120).
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$SPOOL/ctld
# %n: the node's name, one spool, pid file and log per slurmd.
SlurmdSpoolDir=$SPOOL/d-%n
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd-%n.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=5
MinJobAge=300
InactiveLimit=0
$([ "$N_NODES" = 1 ] || printf '%s\n%s' "# A node whose slurmd stops answering is DOWN after 10 s (default 300) and its jobs requeued" "SlurmdTimeout=10")
# Accounting: sacct is how submitit learns that a job ended (cancelled, timed out, ...).
# AccountingStoragePass names the munge socket used to reach slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK
JobCompType=jobcomp/none
MailProg=/bin/true
# The nodes advertise more CPUs than the machine has so several small jobs run at once.
SlurmdParameters=config_overrides
$(for n in "${NODES[@]}"; do echo "NodeName=$n NodeAddr=$(node_addr "$n") CPUs=$CPUS RealMemory=1024 State=UNKNOWN"; done)
PartitionName=debug Nodes=$(
    IFS=,
    echo "${NODES[*]}"
) Default=YES MaxTime=INFINITE State=UP LLN=YES
EOF
chmod 644 "$ETC/slurm.conf.new" && mv -f "$ETC/slurm.conf.new" "$CONF"
cat >"$ETC/cgroup.conf" <<EOF
# Generated by launchers/slurm/cluster-up.sh. Unused (proctrack/linuxproc, task/none) but keeps
# the daemons from reading a system-wide cgroup.conf.
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF
chmod 644 "$ETC/cgroup.conf"

# --- slurmdbd -------------------------------------------------------------------------------------
if ! alive "$RUN/slurmdbd.pid" slurmdbd; then
    SLURM_CONF=$CONF slurmdbd </dev/null >>"$LOG/slurmdbd.log" 2>&1 || die "slurmdbd failed to start (see $LOG/slurmdbd.log)"
fi
dbd_ok() { timeout 10 sacctmgr -n -P show cluster format=cluster >/dev/null 2>&1; }
wait_for 60 slurmdbd dbd_ok
if ! timeout 10 sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
    timeout 20 sacctmgr -i add cluster "$CLUSTER" >>"$LOG/sacctmgr.log" 2>&1 || die "sacctmgr add cluster failed (see $LOG/sacctmgr.log)"
fi

# --- slurmctld + slurmd ---------------------------------------------------------------------------
if ! alive "$RUN/slurmctld.pid" slurmctld; then
    slurmctld -f "$CONF" </dev/null >>"$LOG/slurmctld.log" 2>&1 || die "slurmctld failed to start (see $LOG/slurmctld.log)"
fi
ctld_ok() { timeout 10 scontrol ping 2>/dev/null | grep -q 'is UP'; }
wait_for 60 slurmctld ctld_ok
# start_node NODE: its slurmd (on 2+ nodes inside the node's namespaces: network, and its own
# hostname and /etc/hosts). slurmd daemonizes; its children (slurmstepd, the job tasks) inherit them.
start_node() {
    local n=$1 log=$LOG/slurmd-$1.log
    if [ "$N_NODES" = 1 ]; then
        slurmd -f "$CONF" -N "$n" </dev/null >>"$log" 2>&1 || die "slurmd failed to start (see $log)"
    else
        rm -f "$(slurmd_pidfile "$n")"
        nsenter --net="$(netns_path "$n")" unshare --mount --uts -- \
            sh -c 'hostname "$1" && mount --bind "$2" /etc/hosts && exec slurmd -f "$3" -N "$1"' sh "$n" "$ETC/hosts" "$CONF" \
            </dev/null >>"$log" 2>&1 || die "slurmd of node $n failed to start (see $log)"
    fi
}
for n in "${NODES[@]}"; do
    alive "$(slurmd_pidfile "$n")" slurmd || start_node "$n"
done

# A node left down or drained by an earlier run (or taken away by node-down.sh) comes back.
t0=$SECONDS
for n in "${NODES[@]}"; do
    until node_ready "$n"; do
        st=$(node_state "$n" || true)
        case "$st" in
            down* | drain* | fail*) timeout 10 scontrol update NodeName="$n" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        ((SECONDS - t0 < WAIT)) || die "node $n not idle after ${WAIT}s (state '$st'; see $LOG/slurmd-$n.log)"
        sleep 0.5
    done
done
acct_ok() { timeout 10 sacct -n -X -S now-1minute -o JobID >/dev/null 2>&1; }
wait_for "$WAIT" "sacct" acct_ok
say "ready in $((SECONDS - start_t))s"
usage_note

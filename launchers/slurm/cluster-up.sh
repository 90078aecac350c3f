#!/usr/bin/env bash
# Start a single-node SLURM cluster (slurmctld + slurmd + slurmdbd/mariadb accounting + munge)
# whose whole state lives under one directory. Idempotent: when it is already up and healthy it
# returns at once. See launchers/slurm/README.md.
#
#   sudo launchers/slurm/cluster-up.sh          # state in ${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
#   export SLURM_CONF=/tmp/proxyscale-slurm/etc/slurm.conf
#   sinfo; sbatch ...; launchers/slurm/cluster-down.sh
#
# Environment: PROXYSCALE_SLURM_STATE (state dir), PROXYSCALE_SLURM_PORTS ("ctld d dbd mysql",
# default "6817 6818 6819 3307"), PROXYSCALE_SLURM_CPUS (CPUs the node advertises, default 8),
# PROXYSCALE_SLURM_WAIT (seconds to wait for the cluster, default 120).
set -euo pipefail

STATE=${PROXYSCALE_SLURM_STATE:-/tmp/proxyscale-slurm}
read -r CTLD_PORT SLURMD_PORT DBD_PORT MYSQL_PORT <<<"${PROXYSCALE_SLURM_PORTS:-6817 6818 6819 3307}"
CPUS=${PROXYSCALE_SLURM_CPUS:-8}
WAIT=${PROXYSCALE_SLURM_WAIT:-120}
CLUSTER=proxyscale
NODE=$(hostname -s)

ETC=$STATE/etc RUN=$STATE/run LOG=$STATE/log MUNGE=$STATE/munge DB=$STATE/mysql SPOOL=$STATE/spool
CONF=$ETC/slurm.conf
SOCK=$MUNGE/run/munge.socket.2
export SLURM_CONF=$CONF

say() { echo "cluster-up: $*"; }
die() { echo "cluster-up: error: $*" >&2; exit 1; }

. "$(dirname "$0")/pids.sh"
# alive PIDFILE NAME: the pid in PIDFILE is a live (not zombie) process called NAME.
alive() { pid_of "$@" >/dev/null; }

# Every daemon up, the node schedulable and accounting answering.
healthy() {
    alive "$RUN/munged.pid" munged && alive "$RUN/mariadbd.pid" mariadbd &&
        alive "$RUN/slurmdbd.pid" slurmdbd && alive "$RUN/slurmctld.pid" slurmctld &&
        alive "$RUN/slurmd.pid" slurmd || return 1
    node_ready && timeout 10 sacct -n -X -S now-1minute -o JobID >/dev/null 2>&1
}

node_ready() {  # the node is idle/mixed/allocated (not down, drained or still unknown)
    local st
    st=$(timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1) || return 1
    case "$st" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

usage_note() {
    cat <<EOF
cluster-up: single-node SLURM cluster '$CLUSTER' is up (node $NODE, $CPUS CPUs, partition debug)
  state:  $STATE   (logs in $LOG)
  use it: export SLURM_CONF=$CONF
          sinfo; squeue; sacct; sbatch launchers/slurm/cell.sbatch model=tiny
  stop:   launchers/slurm/cluster-down.sh   (add --purge to delete $STATE)
EOF
}

for bin in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sinfo sacct sacctmgr scontrol; do
    command -v "$bin" >/dev/null 2>&1 || die "'$bin' not found: install the SLURM packages with tests/system-deps.sh slurm"
done

if healthy; then
    usage_note
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "slurmd must run as root: run this script with sudo (jobs still run as the submitting user)"

start_t=$SECONDS
mkdir -p "$STATE" "$ETC" "$RUN" "$LOG" "$MUNGE/run" "$DB" "$SPOOL/ctld" "$SPOOL/d"
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
# A single-node test cluster: jobs share the node by CPU only (no memory or GPU accounting).
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: a requeued job may start again after this many seconds (default 120).
AuthInfo=socket=$SOCK,cred_expire=10
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
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
# Accounting: sacct is how submitit learns that a job ended (cancelled, timed out, ...).
# AccountingStoragePass names the munge socket used to reach slurmdbd.
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStoragePass=$SOCK
JobCompType=jobcomp/none
MailProg=/bin/true
# The node advertises more CPUs than the machine has so several small jobs run at once.
SlurmdParameters=config_overrides
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
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
if ! alive "$RUN/slurmd.pid" slurmd; then
    slurmd -f "$CONF" -N "$NODE" </dev/null >>"$LOG/slurmd.log" 2>&1 || die "slurmd failed to start (see $LOG/slurmd.log)"
fi

# A node left down or drained by an earlier run comes back.
t0=$SECONDS
until node_ready; do
    st=$(timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | head -n1 || true)
    case "$st" in
        down* | drain* | fail*) timeout 10 scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    ((SECONDS - t0 < WAIT)) || die "node $NODE not idle after ${WAIT}s (state '$st'; see $LOG)"
    sleep 0.5
done
acct_ok() { timeout 10 sacct -n -X -S now-1minute -o JobID >/dev/null 2>&1; }
wait_for "$WAIT" "sacct" acct_ok
say "ready in $((SECONDS - start_t))s"
usage_note

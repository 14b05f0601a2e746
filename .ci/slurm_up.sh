#!/usr/bin/env bash
# A real single-node Slurm cluster for cldst's cluster tests (tests/test_slurm.py), from Debian's packages,
# started by hand (these machines have no systemd and no usable cgroups), with accounting (MariaDB +
# slurmdbd: without it a cancelled or killed job never reads as ended). Run as root. Idempotent: a cluster
# this script already started and that answers is left as it is. Quiet: one line on success.
#
#   .ci/slurm_up.sh            install what is missing, write the configs, start the daemons, wait for the node
#   .ci/slurm_up.sh --fresh    the same after wiping the controller's state (job ids restart at 1)
#   .ci/slurm_down.sh          stop what this script started
#
# The test cluster is small on purpose: MaxArraySize=2 (so a sweep must split its arrays), partition
# `debug` (default, no time limit) and partition `short` (MaxTime=5 minutes, for the impossible-request test).
# State, spool, logs and PID files live in $CLDST_SLURM_DIR (default /tmp/cldst-slurm); the configs in
# /etc/slurm, where Slurm's commands look for them.
set -euo pipefail

DIR=${CLDST_SLURM_DIR:-/tmp/cldst-slurm}
HOST=$(hostname -s)
CPUS=$(nproc)
HERE=$(cd "$(dirname "$0")" && pwd)
FRESH=0
[ "${1:-}" = --fresh ] && FRESH=1

slurm_conf() {  # the cluster's slurm.conf, on stdout
    local mem=$(( $(free -m | awk '/^Mem:/{print $2}') * 9 / 10 ))
    cat <<CONF
# cldst's single-node test cluster, written by .ci/slurm_up.sh
ClusterName=cldst
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups on these machines
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
# cores only (no memory as a consumable): array tasks then run side by side
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=300
KillWait=5
MaxArraySize=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=ALL Default=NO MaxTime=5 State=UP
CONF
}

alive() { [ -s "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }
node_idle() { sinfo -h -N -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)$'; }

if [ $FRESH = 0 ] && alive slurmctld && alive slurmd && node_idle && slurm_conf | cmp -s - /etc/slurm/slurm.conf; then
    exit 0  # already up, as this script would start it now
fi

fail() {
    echo "slurm_up.sh: $1 (logs in $DIR/log)" >&2
    tail -n 5 "$DIR"/log/*.log >&2 2>/dev/null || true
    "$HERE/slurm_down.sh" >/dev/null 2>&1 || true
    exit 1
}
wait_for() {  # wait_for SECONDS WHAT COMMAND...: a bounded wait, then fail naming what was not ready
    local limit=$1 what=$2
    shift 2
    for _ in $(seq 1 $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    fail "$what not ready after ${limit}s"
}

start=$(date +%s)

# ------------------------------------------------------------------ packages (Debian's own)
PKGS="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    # without systemd the packages' post-install scripts cannot start anything: we start the daemons below
    { apt-get install -y -q --no-install-recommends $missing \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }; } >/dev/null 2>&1 \
        || fail "apt-get could not install:$missing"
fi

"$HERE/slurm_down.sh" >/dev/null 2>&1 || true  # a half-started cluster from an earlier try
FRESH_DB=0
if [ $FRESH = 1 ]; then rm -rf "$DIR/state"; FRESH_DB=1; fi  # and the accounting database (below)
mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log

# ------------------------------------------------------------------ munge (authentication)
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --force >/dev/null 2>&1 || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 755 /run/munge
if ! (munge -n | unmunge) >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi
wait_for 10 munged sh -c 'munge -n | unmunge'
cp /run/munge/munged.pid "$DIR/munged.pid"

# ------------------------------------------------------------------ slurm.conf
grep -qw "$HOST" /etc/hosts || echo "127.0.0.1 $HOST" >> /etc/hosts
mkdir -p /etc/slurm
slurm_conf > /etc/slurm/slurm.conf

# ------------------------------------------------------------------ accounting: MariaDB + slurmdbd
install -d -o mysql -g mysql -m 755 /run/mysqld "$DIR/log/mariadb"  # mariadbd writes as user mysql
[ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null 2>&1
if ! mariadb-admin ping >/dev/null 2>&1; then
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
        --log-error="$DIR/log/mariadb/mariadb.log" </dev/null >/dev/null 2>&1 &
fi
wait_for 60 mariadb mariadb-admin ping
wait_for 10 "mariadb pid file" test -s /run/mysqld/mysqld.pid
cp /run/mysqld/mysqld.pid "$DIR/mariadbd.pid"
# a fresh cluster forgets its jobs: sacct would otherwise show an old job under a reused id
[ $FRESH_DB = 1 ] && mariadb -e "DROP DATABASE IF EXISTS slurm_acct_db"
mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'cldst';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
DebugLevel=info
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=cldst
StorageLoc=slurm_acct_db
CONF
chmod 600 /etc/slurm/slurmdbd.conf  # slurmdbd refuses a file others can read
slurmdbd
wait_for 60 slurmdbd bash -c '</dev/tcp/127.0.0.1/6819'

# ------------------------------------------------------------------ controller and node
slurmctld
wait_for 60 slurmctld scontrol ping
slurmd
wait_for 90 "node $HOST idle" node_idle
wait_for 30 "cluster in slurmdbd" sh -c "sacctmgr -n list cluster format=cluster | grep -qw cldst"
echo "slurm up in $(( $(date +%s) - start ))s: partitions debug (default) and short (MaxTime=5), MaxArraySize=2; logs in $DIR/log"

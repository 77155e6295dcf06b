#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the real-Slurm test (`make slurm-test`).
#
#   tests/slurm/cluster.sh start STATE_DIR   # munged, slurmctld and slurmd; prints the SLURM_CONF to export
#   tests/slurm/cluster.sh stop STATE_DIR    # stops every daemon it started; leaves no process behind
#
# Everything it writes (slurm.conf, spool, state, logs, pid files, munge's socket) is under
# STATE_DIR, so it never touches a Slurm or MUNGE set-up the machine already has. It needs root
# (slurmd launches the jobs) and Debian's slurm-wlm and munge packages (`make slurm-deps`).
set -euo pipefail

command=${1:?usage: cluster.sh start|stop STATE_DIR}
state=$(realpath -m "${2:?usage: cluster.sh start|stop STATE_DIR}")
conf="$state/slurm.conf"
socket="$state/munge/munge.socket"

start() {
    mkdir -p "$state"/{munge,spool,ctld,log}
    # munged wants its socket directory its own and searchable by all (clients connect to it).
    chown munge:munge "$state/munge"
    chmod 755 "$state/munge"
    test -f /etc/munge/munge.key || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    runuser -u munge -- munged --socket="$socket" --pid-file="$state/munge/munged.pid" \
        --log-file="$state/munge/munged.log" --seed-file="$state/munge/munged.seed"

    local node cpus memory
    node=$(hostname -s)
    cpus=$(nproc)
    memory=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
    cat >"$conf" <<CONF
ClusterName=grokstack-test
SlurmctldHost=$node
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
SlurmctldPort=$((6817 + ${SLURM_TEST_PORT_OFFSET:-100}))
SlurmdPort=$((6818 + ${SLURM_TEST_PORT_OFFSET:-100}))
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
# No cgroups in a container: track a job's processes by their parent, bind nothing.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# A test polls job states right after they end; keep finished jobs visible for a while.
MinJobAge=600
KillWait=10
NodeName=$node CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=test Nodes=$node Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$conf"
    slurmctld -f "$conf"
    slurmd -f "$conf"
    # Ready when the node reports idle.
    for _ in $(seq 1 60); do
        if sinfo -h -o %T 2>/dev/null | grep -q idle; then
            echo "$conf"
            return 0
        fi
        sleep 1
    done
    echo "cluster.sh: the node did not come up; logs in $state/log" >&2
    sinfo >&2 || true
    tail -n 20 "$state"/log/*.log >&2 || true
    stop
    return 1
}

stop() {
    # Jobs first (their processes are children of slurmd), then the daemons, then munged.
    if [ -f "$conf" ]; then SLURM_CONF="$conf" scancel --full --quiet --user=root 2>/dev/null || true; fi
    local pidfile pid
    for pidfile in "$state/slurmd.pid" "$state/slurmctld.pid" "$state/munge/munged.pid"; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
    # slurmstepd of a job killed with its slurmd is the one process that can outlive it.
    pkill -9 -f "slurmstepd.*$state" 2>/dev/null || true
}

case "$command" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: cluster.sh start|stop STATE_DIR" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the workflow's SLURM profile
# (tests/test_slurm.py, profiles/local-slurm). Debian 12, run as root; no systemd needed.
#
#   bash tests/cluster/slurm.sh install   # apt-get install slurm-wlm munge (skips if installed)
#   bash tests/cluster/slurm.sh start     # munged + slurmctld + slurmd; waits for an idle node
#   bash tests/cluster/slurm.sh stop      # stops the three daemons by their pid files
#   bash tests/cluster/slurm.sh status    # sinfo, or exit 1 when the cluster is not up
#
# Every subcommand is safe to run twice: `start` leaves running daemons alone, `stop` ignores
# missing or stale pid files. The daemons are stopped by process id, never by name, so that other
# SLURM or munge processes on the machine are not touched.
# Environment: SLURM_START_TIMEOUT (seconds to wait for the node to become idle, default 60).
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
MUNGE_KEY=/etc/munge/munge.key
MUNGE_PID=/run/munge/munged.pid
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd
LOG_DIR=/var/log/slurm
NODE=$(hostname -s)
PARTITION=debug
START_TIMEOUT=${SLURM_START_TIMEOUT:-60}

log() { echo "slurm.sh: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root"
        exit 1
    fi
}

# pid from a pid file if that process is alive, else nothing
live_pid() {
    local file=$1 pid
    [ -s "$file" ] || return 1
    pid=$(tr -dc '0-9' <"$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

cmd_install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v munged >/dev/null && command -v sbatch >/dev/null; then
        log "slurm-wlm and munge already installed: $(slurmctld -V)"
        return 0
    fi
    need_root
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm munge
    log "installed $(slurmctld -V)"
}

write_conf() {
    local cpus mem_mb
    cpus=$(nproc)
    # RealMemory must not exceed what slurmd detects, else the node is drained: use 90 % of
    # MemTotal (MB)
    mem_mb=$(awk '/^MemTotal:/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    mkdir -p "$CONF_DIR"
    cat >"$CONF" <<EOF
# Written by tests/cluster/slurm.sh: a single-node test cluster (no accounting database).
ClusterName=odeflows-test
SlurmctldHost=$NODE(127.0.0.1)
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# a restarted node comes back into service on its own
ReturnToService=2
# trust this file's node description (CPUs, memory) over slurmd's detection
SlurmdParameters=config_overrides
# finished jobs stay visible to squeue for 5 minutes (the executor's squeue status check)
MinJobAge=300
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    log "wrote $CONF (CPUs=$cpus RealMemory=$mem_mb)"
}

start_munge() {
    if live_pid "$MUNGE_PID" >/dev/null; then
        log "munged already running (pid $(live_pid "$MUNGE_PID"))"
        return 0
    fi
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
    if [ ! -s "$MUNGE_KEY" ]; then
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge "$MUNGE_KEY" /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge
    chmod 400 "$MUNGE_KEY"
    chmod 755 /run/munge
    munged --force --pid-file="$MUNGE_PID"
    log "munged started (pid $(live_pid "$MUNGE_PID"))"
}

start_daemon() {
    local name=$1 pidfile=$2
    shift 2
    if live_pid "$pidfile" >/dev/null; then
        log "$name already running (pid $(live_pid "$pidfile"))"
        return 0
    fi
    "$@"
    local i
    for i in $(seq 1 50); do
        live_pid "$pidfile" >/dev/null && break
        sleep 0.2
    done
    if ! live_pid "$pidfile" >/dev/null; then
        log "$name did not start; see $LOG_DIR/$name.log"
        tail -n 20 "$LOG_DIR/$name.log" >&2 || true
        exit 1
    fi
    log "$name started (pid $(live_pid "$pidfile"))"
}

node_state() {
    sinfo --noheader --nodes="$NODE" --format=%t 2>/dev/null | head -n 1 | tr -d ' *'
}

cmd_start() {
    need_root
    if ! command -v slurmctld >/dev/null; then
        log "slurmctld not installed; run: bash $0 install"
        exit 1
    fi
    mkdir -p "$SPOOL_CTLD" "$SPOOL_D" "$LOG_DIR"
    # keep a running cluster's configuration; (re)write it only when the controller is down
    if ! live_pid "$CTLD_PID" >/dev/null; then
        write_conf
    fi
    start_munge
    start_daemon slurmctld "$CTLD_PID" slurmctld
    start_daemon slurmd "$SLURMD_PID" slurmd
    local waited=0 state=""
    while [ "$waited" -lt "$START_TIMEOUT" ]; do
        state=$(node_state || true)
        case "$state" in
            idle | mix | alloc) break ;;
            drain* | down* | fail*)
                # e.g. left over from an earlier run: put it back into service
                scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
        esac
        sleep 1
        waited=$((waited + 1))
    done
    case "$state" in
        idle | mix | alloc) ;;
        *)
            log "node $NODE not idle after ${START_TIMEOUT}s (state: '${state:-none}')"
            sinfo -N -l >&2 || true
            tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
            exit 1 ;;
    esac
    log "cluster up: node $NODE is $state in partition $PARTITION"
    sinfo
}

stop_daemon() {
    local name=$1 pidfile=$2 pid i
    if ! pid=$(live_pid "$pidfile"); then
        log "$name not running"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid"
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    log "$name stopped (pid $pid)"
}

cmd_stop() {
    need_root
    # reverse start order: the node daemon, the controller, then authentication
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
}

cmd_status() {
    live_pid "$CTLD_PID" >/dev/null && live_pid "$SLURMD_PID" >/dev/null || {
        log "cluster not running"
        return 1
    }
    sinfo
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 {install|start|stop|status}" >&2
        exit 2 ;;
esac

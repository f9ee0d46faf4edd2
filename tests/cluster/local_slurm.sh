#!/usr/bin/env bash
# local_slurm.sh - a throw-away single-node SLURM cluster on this machine, for
# the end-to-end test of `snakemake --profile slurm` (tests/test_slurm.py).
#
# Debian 12's slurm-wlm (22.05) + munge, started by hand as root: no systemd,
# no cgroups, no slurmdbd (so `sacct` does not work: the test tells the plugin
# to poll with `squeue`). Every daemon writes a PID file under $DIR, and
# `stop` signals exactly those PIDs. All traffic stays on loopback: clients
# and daemons talk to 127.0.0.1 only.
#
# Usage: tests/cluster/local_slurm.sh [up|install|configure|start|check|status|env|stop|purge]
#   up         configure + install (apt, if missing) + start + check   (default)
#   configure  write slurm.conf/gres.conf and link /etc/slurm/slurm.conf
#   install    apt-get install slurmctld slurmd slurm-client munge (if missing)
#   start      start munged, slurmctld, slurmd (each only if not running)
#   check      health check: sinfo, srun, one sbatch job (GPU gres if any)
#   status     daemons and their PIDs, sinfo, squeue -t all
#   env        print `export SLURM_CONF=...` (clients find /etc/slurm anyway)
#   stop       cancel this cluster's jobs, stop the daemons by PID file
#   purge      stop, remove $DIR and our /etc/slurm/slurm.conf symlink
#
# Environment:
#   SPARSEBASIN_SLURM_DIR    state, config, logs            [/tmp/sparsebasin-slurm]
#   SPARSEBASIN_SLURM_CPUS   CPUs the node advertises       [nproc]
#   SPARSEBASIN_SLURM_MEM_MB RealMemory of the node         [physical - 512]
#   SPARSEBASIN_SLURM_GPUS   fake GPUs: gres gpu:testgpu:N backed by /dev/null,
#                            so jobs can request --gpus without hardware   [2]
#   SPARSEBASIN_SLURM_NO_INSTALL=1  never call apt-get (fail if packages missing)
#
# Partitions: `cpu` (default) and `gpu`, both on the one node.
#
# Ordering matters (network hygiene): a Slurm client that finds no config
# falls back to a DNS SRV lookup for the controller, and the Snakemake SLURM
# plugin runs `scontrol show config` whenever it is imported (every
# `snakemake` call once slurm-client is installed). So `up` writes the config
# and the /etc/slurm/slurm.conf symlink BEFORE it installs the packages.
# The config must be at /etc/slurm/slurm.conf (not only in $SLURM_CONF):
# the plugin's job step removes every SLURM_* variable before its nested srun.
#
# While the cluster is stopped, /etc/slurm/slurm.conf points at a "parked"
# copy with MessageTimeout=1, so clients fail at once instead of waiting ~9 s
# for the dead controller (that wait would slow every `snakemake` start).
#
# Idempotent: `up` on a running, unchanged cluster only re-checks it (~1 s).
# If the rendered slurm.conf changed, the daemons are restarted.
set -euo pipefail

CMD=${1:-up}
DIR=${SPARSEBASIN_SLURM_DIR:-/tmp/sparsebasin-slurm}
NODE=$(hostname -s)
CONF=$DIR/etc/slurm.conf
PARKED=$DIR/etc/parked/slurm.conf
ETC_CONF=/etc/slurm/slurm.conf
MUNGE_SOCK=$DIR/munge/munge.socket.2
MARKER=$DIR/.sparsebasin-local-slurm
PACKAGES=(slurmctld slurmd slurm-client munge)
GPUS=${SPARSEBASIN_SLURM_GPUS:-2}

export SLURM_CONF=$CONF

log() { printf '[local_slurm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# alive PIDFILE COMM: the PID in PIDFILE runs and is COMM (not a reused PID).
alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ && -r /proc/$pid/comm ]] || return 1
    [[ $(</proc/"$pid"/comm) == "$2" ]]
}

# stop_pids PIDFILE:COMM...: TERM each listed process that is still that
# program (all at once), wait up to 15 s for them, KILL what is left.
stop_pids() {
    local spec pidfile comm pid pids=() left
    for spec in "$@"; do
        pidfile=${spec%%:*} comm=${spec#*:}
        if alive "$pidfile" "$comm"; then
            pid=$(<"$pidfile")
            log "stopping $comm (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid:$comm")
        fi
        rm -f "$pidfile"
    done
    for _ in $(seq 1 60); do
        left=0
        for spec in "${pids[@]}"; do [[ -d /proc/${spec%%:*} ]] && left=1; done
        (( left )) || return 0
        sleep 0.1
    done
    for spec in "${pids[@]}"; do
        pid=${spec%%:*} comm=${spec#*:}
        if [[ -d /proc/$pid && $(cat /proc/"$pid"/comm 2>/dev/null) == "$comm" ]]; then
            log "$comm (pid $pid) ignored SIGTERM; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

# wait_for SECONDS WHAT CMD...: run CMD every 0.2 s until it succeeds.
wait_for() {
    local limit=$1 what=$2 t0
    shift 2
    t0=$(now)
    until "$@" >/dev/null 2>&1; do
        if awk -v a="$t0" -v b="$(now)" -v t="$limit" 'BEGIN { exit !(b - a > t) }'; then
            log "timed out after ${limit}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# put PATH MODE: stdin -> PATH, replaced only if the content changed.
put() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if [[ -f $1 ]] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv -f "$tmp" "$1"; fi
}

# --------------------------------------------------------------- configure --
do_configure() {
    mkdir -p "$DIR"/{etc,state,spool,log,run,check,munge}
    : >"$MARKER"
    chmod 755 "$DIR/munge"   # munged insists on an executable socket dir

    local cpus mem host_ip comm gres_types node_gres
    cpus=${SPARSEBASIN_SLURM_CPUS:-$(nproc)}
    mem=${SPARSEBASIN_SLURM_MEM_MB:-$(( $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) - 512 ))}
    # NoCtldInAddrAny/NoInAddrAny bind the address the *hostname* resolves
    # to; use them only when that is loopback, else the daemons listen on
    # 0.0.0.0 (every connection still goes to 127.0.0.1). Read /etc/hosts
    # only: a resolver query for the hostname could leave the machine.
    host_ip=$(awk -v h="$(hostname)" -v s="$NODE" '!/^[[:space:]]*#/ {
                  for (i = 2; i <= NF; i++) if ($i == h || $i == s) { print $1; exit } }' /etc/hosts 2>/dev/null || true)
    if [[ $host_ip == 127.* ]]; then
        comm="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
    else
        comm="# hostname resolves to '${host_ip:-nothing}' (not loopback): daemons listen on 0.0.0.0"
    fi
    if (( GPUS > 0 )); then
        gres_types="GresTypes=gpu"
        node_gres=" Gres=gpu:testgpu:$GPUS"
        # Slurm drops file-less GPUs ("Removing file-less GPU"), and wants
        # character devices: one symlink to /dev/null per fake GPU. With
        # TaskPlugin=task/none nothing is bound; a job asking for
        # --gpus=testgpu:1 is scheduled, accounted and gets CUDA_VISIBLE_DEVICES.
        mkdir -p "$DIR/dev"
        local i
        for (( i = 0; i < GPUS; i++ )); do ln -sfn /dev/null "$DIR/dev/testgpu$i"; done
        put "$DIR/etc/gres.conf" 644 <<EOF
# generated by tests/cluster/local_slurm.sh: fake GPUs (/dev/null stand-ins)
AutoDetect=off
NodeName=$NODE Name=gpu Type=testgpu File=$DIR/dev/testgpu[0-$(( GPUS - 1 ))]
EOF
    else
        gres_types="# no fake GPUs (SPARSEBASIN_SLURM_GPUS=0)"
        node_gres=""
        rm -f "$DIR/etc/gres.conf"
    fi

    put "$CONF" 644 <<EOF
# generated by tests/cluster/local_slurm.sh: single-node test cluster on loopback
ClusterName=sparsebasin
SlurmctldHost=$NODE(127.0.0.1)
$comm
AuthType=auth/munge
CredType=cred/munge
# our own munged (socket under $DIR), not the system one
AuthInfo=socket=$MUNGE_SOCK
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
MpiDefault=none
# no cgroups: nothing is mounted or delegated without systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
# start batch jobs at once (default batch_sched_delay: up to 3 s)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# a job without --mem must not take the whole node
DefMemPerCPU=512
ReturnToService=2
# finished jobs stay visible to squeue/scontrol for an hour: the plugin's
# squeue status mode needs MinJobAge >= 3 * slurm-init-seconds-before-status-
# checks, and the test inspects every job of a run after it ends
MinJobAge=3600
KillWait=5
# no slurmdbd: sacct answers "accounting storage is disabled"
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmdParameters=config_overrides
$gres_types
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem$node_gres State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL Default=NO MaxTime=INFINITE State=UP
EOF

    # The "parked" copy is what clients see while the cluster is stopped:
    # MessageTimeout=1 makes them fail at once instead of retrying the dead
    # controller for ~9 s (the SLURM plugin's scontrol call on import would
    # otherwise add ~10 s to every `snakemake` start).
    mkdir -p "$DIR/etc/parked"
    { echo "# cluster stopped (tests/cluster/local_slurm.sh): fail fast"; cat "$CONF"; echo "MessageTimeout=1"; } |
        put "$PARKED" 644
    put "$DIR/env.sh" 644 <<<"export SLURM_CONF=$CONF"

    mkdir -p /etc/slurm
    if ours; then
        :
    elif [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        die "$ETC_CONF exists and is not this fixture's symlink; not touching a real Slurm setup"
    else
        link_etc "$PARKED"
    fi
    # (slurmd reads gres.conf next to the slurm.conf it is started with)
}

# ours: /etc/slurm/slurm.conf is this fixture's symlink
ours() {
    [[ -L $ETC_CONF ]] || return 1
    local t; t=$(readlink "$ETC_CONF")
    [[ $t == "$CONF" || $t == "$PARKED" ]]
}

# link_etc TARGET: point /etc/slurm/slurm.conf at TARGET (atomic rename)
link_etc() {
    [[ $(readlink "$ETC_CONF" 2>/dev/null) == "$1" ]] && return 0
    ln -sfn "$1" "$ETC_CONF.tmp$$"
    mv -fT "$ETC_CONF.tmp$$" "$ETC_CONF"
    log "$ETC_CONF -> $1"
}

# ----------------------------------------------------------------- install --
do_install() {
    local missing=() p t0
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    (( ${#missing[@]} == 0 )) && return 0
    [[ ${SPARSEBASIN_SLURM_NO_INSTALL:-0} == 1 ]] && die "missing packages: ${missing[*]} (SPARSEBASIN_SLURM_NO_INSTALL=1)"
    ours || die "configure before install: $ETC_CONF must exist first (DNS SRV fallback)"
    command -v apt-get >/dev/null || die "apt-get not available; install ${missing[*]} by hand"
    t0=$(now)
    log "apt-get install ${missing[*]}"
    # the postinst scripts try to start services; without an init system
    # they only print a notice
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "installed in $(since "$t0")s"
}

# ------------------------------------------------------------------- start --
start_munged() {
    [[ -s $DIR/munge/munge.key ]] || mungekey --create --keyfile="$DIR/munge/munge.key"
    chmod 600 "$DIR/munge/munge.key"
    alive "$DIR/munge/munged.pid" munged && return 0
    rm -f "$MUNGE_SOCK" "$MUNGE_SOCK.lock"
    munged --socket="$MUNGE_SOCK" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed" --origin=127.0.0.1 \
        </dev/null >>"$DIR/log/munged.out" 2>&1
    wait_for 10 munged sh -c "munge -n -S '$MUNGE_SOCK' | unmunge -S '$MUNGE_SOCK'"
}

start_slurm() {
    local sum
    sum=$(cat "$CONF" "$DIR/etc/gres.conf" 2>/dev/null | sha256sum | cut -d' ' -f1)
    if [[ -f $DIR/run/conf.sha256 && $(<"$DIR/run/conf.sha256") != "$sum" ]]; then
        log "configuration changed: restarting slurmctld and slurmd"
        stop_pids "$DIR/run/slurmd.pid:slurmd" "$DIR/run/slurmctld.pid:slurmctld"
    fi
    alive "$DIR/run/slurmctld.pid" slurmctld ||
        slurmctld -f "$CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1
    alive "$DIR/run/slurmd.pid" slurmd ||
        slurmd -f "$CONF" -N "$NODE" </dev/null >>"$DIR/log/slurmd.out" 2>&1
    echo "$sum" >"$DIR/run/conf.sha256"
    wait_for 30 slurmctld scontrol ping
    link_etc "$CONF"
    # a node restarted mid-job can come back DOWN; resume it
    scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
    wait_for 30 "node $NODE idle" sh -c "sinfo -h -n '$NODE' -o %T | grep -Eqx 'idle|mixed|allocated'"
}

do_start() {
    [[ -f $CONF ]] || die "no $CONF (run: $0 configure)"
    local t0
    t0=$(now)
    start_munged
    start_slurm
    log "up in $(since "$t0")s: munged $(<"$DIR/munge/munged.pid"), slurmctld $(<"$DIR/run/slurmctld.pid"), slurmd $(<"$DIR/run/slurmd.pid")"
}

# ------------------------------------------------------------------- check --
# job_done ID: the job reached a final state
job_done() {
    scontrol show job "$1" | grep -Eq 'JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)'
}

do_check() {
    local t0 jid gpu_args=()
    t0=$(now)
    [[ $(timeout 60 srun -N1 -n1 -t 1 hostname) == "$(hostname)" ]] || die "srun hostname failed"
    (( GPUS > 0 )) && gpu_args=(--partition=gpu --gpus=testgpu:1)
    jid=$(cd "$DIR/check" && sbatch --parsable --job-name=healthcheck -t 1 --mem=50 "${gpu_args[@]}" \
        --output="$DIR/check/%j.out" --wrap 'echo ok $SLURM_JOB_ID') || die "sbatch failed"
    wait_for 60 "health-check job $jid" job_done "$jid" || die "job $jid did not finish"
    scontrol show job "$jid" | grep -q 'JobState=COMPLETED' ||
        die "job $jid: $(scontrol show job "$jid" | grep -o 'JobState=[A-Z_]*')"
    grep -qx "ok $jid" "$DIR/check/$jid.out" || die "job $jid wrote no output"
    rm -f "$DIR/check/$jid.out"
    log "health check passed in $(since "$t0")s (job $jid${gpu_args:+, ${gpu_args[*]}})"
}

do_status() {
    local spec
    for spec in munge/munged.pid:munged run/slurmctld.pid:slurmctld run/slurmd.pid:slurmd; do
        if alive "$DIR/${spec%%:*}" "${spec#*:}"; then
            echo "${spec#*:}: running (pid $(<"$DIR/${spec%%:*}"))"
        else
            echo "${spec#*:}: not running"
        fi
    done
    if alive "$DIR/run/slurmctld.pid" slurmctld; then sinfo; squeue -t all; fi
}

# -------------------------------------------------------------------- stop --
do_stop() {
    local ids
    ours && link_etc "$PARKED"
    if alive "$DIR/run/slurmctld.pid" slurmctld; then
        ids=$(squeue -h -o %i 2>/dev/null || true)
        if [[ -n $ids ]]; then
            log "cancelling jobs: $(echo $ids)"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            wait_for 30 "jobs to end" sh -c '[ -z "$(squeue -h -t running,completing -o %i)" ]' || true
        fi
    fi
    stop_pids "$DIR/run/slurmd.pid:slurmd" "$DIR/run/slurmctld.pid:slurmctld" "$DIR/munge/munged.pid:munged"
    rm -f "$DIR/run/conf.sha256"
    log "stopped"
}

do_purge() {
    do_stop
    # With slurm-client installed, a missing config makes every client call
    # (and every `snakemake` start: the plugin runs scontrol on import) try a
    # DNS SRV lookup. So keep the configs and the link then; drop the rest.
    if command -v scontrol >/dev/null; then
        rm -rf "${DIR:?}"/{state,spool,log,run,check}
        log "removed state and logs; kept $DIR/etc and $ETC_CONF (slurm-client is installed)"
        return 0
    fi
    if ours; then rm -f "$ETC_CONF"; fi
    if [[ -f $MARKER ]]; then rm -rf "$DIR"; log "removed $DIR"; fi
}

case $CMD in
    up)        do_configure; do_install; do_start; do_check ;;
    configure) do_configure ;;
    install)   do_install ;;
    start)     do_start ;;
    check)     do_check ;;
    status)    do_status ;;
    env)       echo "export SLURM_CONF=$CONF" ;;
    stop|down) do_stop ;;
    purge)     do_purge ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 2 ;;
esac

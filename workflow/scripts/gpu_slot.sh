#!/usr/bin/env bash
# Run a command on one free GPU of this machine: gpu_slot.sh CMD [ARGS...]
#
# Used by the workflow's GPU rules when the config says device: cuda.
# - Inside a SLURM job (SLURM_JOB_ID set) the command runs as is: the
#   scheduler chose the GPU(s) and exported CUDA_VISIBLE_DEVICES.
# - When CUDA_VISIBLE_DEVICES lists exactly one device, likewise.
# - Otherwise (a workstation) Snakemake's `--resources gpu=N` caps the GPU
#   jobs at N and this script gives each its own GPU: the slots are the
#   devices CUDA_VISIBLE_DEVICES lists ("0,1,2,3" exported in a shell), else
#   0..G-1 with G = $SPARSEBASIN_GPUS, else the GPUs `nvidia-smi -L` lists,
#   else torch.cuda.device_count() (in a subprocess), else 1 (said loudly).
#   A job takes an exclusive lock on $SPARSEBASIN_GPU_LOCKS/gpu<id>.lock
#   (default /tmp/sparsebasin-gpu-locks-<uid>, one directory per user, so
#   another user's lock files never block ours) for the first free slot and
#   runs with CUDA_VISIBLE_DEVICES=<id>; the lock goes when the command exits
#   (also on kill), so no slot leaks. A data-parallel run (gpus_per_run)
#   sets SPARSEBASIN_GPUS_PER_JOB=N and gets N free slots at once, or none
#   (a partial set is released and tried again, so two jobs never hold half
#   each and wait for ever).
# Every variable read is checked first, in one line that names it: device ids
# are numbers (or GPU-/MIG- UUIDs), distinct and on this machine; counts are
# positive integers; an empty CUDA_VISIBLE_DEVICES means "no GPU" and is
# refused. A job that has to wait says for what (and who holds the GPUs) at
# once and every minute, and gives up after $SPARSEBASIN_GPU_WAIT seconds
# (default 86400, one day) with exit status 75 (EX_TEMPFAIL).
# CUDA_DEVICE_ORDER=PCI_BUS_ID always: the slot number is the board nvidia-smi shows.
set -euo pipefail

say() { echo "gpu_slot: $*" >&2; }
fail() {
    say "$*"
    exit 2
}
is_count() { [[ "$1" =~ ^[1-9][0-9]{0,5}$ ]]; } # a positive integer bash compares safely

if [[ $# -eq 0 ]]; then
    echo "usage: gpu_slot.sh CMD [ARGS...]" >&2
    exit 2
fi
export CUDA_DEVICE_ORDER=PCI_BUS_ID

if [[ -n "${CUDA_VISIBLE_DEVICES+set}" && -z "${CUDA_VISIBLE_DEVICES//[[:space:]]/}" ]]; then
    fail "CUDA_VISIBLE_DEVICES is set but empty, which means no GPU is visible to this job; unset it to use" \
         "this machine's GPUs, or set device: cpu"
fi
visible="${CUDA_VISIBLE_DEVICES:-}"

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    say "SLURM job ${SLURM_JOB_ID}, GPU(s) ${visible:-as allocated}"
    exec "$@"
fi
need="${SPARSEBASIN_GPUS_PER_JOB:-1}"
is_count "$need" || fail "SPARSEBASIN_GPUS_PER_JOB='$need' is not a positive integer (the GPUs one job needs)"
wait_limit="${SPARSEBASIN_GPU_WAIT:-86400}"
[[ "$wait_limit" =~ ^[0-9]{1,7}$ ]] ||
    fail "SPARSEBASIN_GPU_WAIT='$wait_limit' is not a number of seconds (how long a job may wait for a free GPU)"

machine_gpus() { # the GPUs of this machine (all boards, whatever CUDA_VISIBLE_DEVICES says), or nothing
    local n
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    if ! is_count "$n"; then
        n=$(unset CUDA_VISIBLE_DEVICES
            "${SPARSEBASIN_PYTHON:-python}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || true)
    fi
    if is_count "$n"; then echo "$n"; fi
}
machine=$(machine_gpus)

slots=()
if [[ -n "$visible" ]]; then
    IFS=',' read -r -a listed <<<"$visible," # the extra comma keeps a trailing empty entry ("0,") as one
    seen=" "
    for raw in "${listed[@]}"; do
        id="${raw//[[:space:]]/}"
        if [[ "$id" =~ ^[0-9]{1,4}$ ]]; then
            id=$((10#$id))
            if [[ -n "$machine" ]] && ((id >= machine)); then
                fail "CUDA_VISIBLE_DEVICES='$visible' lists GPU $id but this machine has $machine (0-$((machine - 1)))"
            fi
        elif [[ "$id" == -* ]]; then # CUDA stops at an invalid entry: -1 is the usual way to hide every GPU
            fail "CUDA_VISIBLE_DEVICES='$visible' hides the GPUs from entry '$raw' on; list the GPUs to use," \
                 "or set device: cpu"
        elif ! [[ "$id" =~ ^(GPU|MIG)-[A-Za-z0-9-]{1,80}$ ]]; then
            fail "CUDA_VISIBLE_DEVICES='$visible' has the entry '$raw', not a GPU number or GPU-/MIG- UUID;" \
                 "list GPUs like 0,1,2"
        fi
        [[ "$seen" != *" $id "* ]] || fail "CUDA_VISIBLE_DEVICES='$visible' lists GPU $id twice; list each GPU once"
        seen+="$id "
        slots+=("$id")
    done
    if [[ "${#slots[@]}" -eq 1 && "$need" -eq 1 ]]; then
        say "CUDA_VISIBLE_DEVICES=${slots[0]} (one device): running there"
        export CUDA_VISIBLE_DEVICES="${slots[0]}"
        exec "$@"
    fi
else
    if [[ -n "${SPARSEBASIN_GPUS+set}" ]]; then
        n="$SPARSEBASIN_GPUS"
        is_count "$n" || fail "SPARSEBASIN_GPUS='$n' is not a positive integer (the GPUs jobs may use here)"
        if [[ -n "$machine" ]] && ((n > machine)); then
            fail "SPARSEBASIN_GPUS=$n but this machine has $machine GPU(s); set at most $machine"
        fi
    elif [[ -n "$machine" ]]; then
        n="$machine"
    else
        say "WARNING: found no GPU (no nvidia-smi, torch sees none, SPARSEBASIN_GPUS unset);" \
            "assuming ONE GPU, so GPU jobs run one at a time on GPU 0"
        n=1
    fi
    ((n <= 4096)) || fail "SPARSEBASIN_GPUS=$n: no machine has that many GPUs; set the number this one has"
    for ((i = 0; i < n; i++)); do slots+=("$i"); done
fi

lockdir="${SPARSEBASIN_GPU_LOCKS:-/tmp/sparsebasin-gpu-locks-$(id -u)}"
mkdir -p -- "$lockdir" 2>/dev/null || fail "cannot create the lock directory SPARSEBASIN_GPU_LOCKS='$lockdir'"
chmod 700 "$lockdir" 2>/dev/null || true
[[ -d "$lockdir" && -w "$lockdir" ]] ||
    fail "the lock directory SPARSEBASIN_GPU_LOCKS='$lockdir' is not a writable directory; choose another"

if [[ "$need" -gt "${#slots[@]}" ]]; then
    fail "the job needs $need GPUs but this machine has ${#slots[@]} (slots ${slots[*]});" \
         "lower gpus_per_run or run it on a larger node"
fi

holders() { # who holds each slot, from the lock files (a holder writes its pid and host there)
    local id out=""
    for id in "${slots[@]}"; do
        [[ -s "$lockdir/gpu$id.lock" ]] && out+=" GPU $id: $(cat "$lockdir/gpu$id.lock" 2>/dev/null);"
    done
    echo "${out:- none recorded}"
}

start=$SECONDS
next_report=0
while true; do
    got=()
    fds=()
    for id in "${slots[@]}"; do
        exec {fd}<>"$lockdir/gpu$id.lock" # read-write, not truncated: a waiter leaves the holder's line alone
        if flock -n "$fd"; then
            got+=("$id")
            fds+=("$fd")
            [[ "${#got[@]}" -eq "$need" ]] && break
        else
            exec {fd}>&-
        fi
    done
    if [[ "${#got[@]}" -eq "$need" ]]; then
        for id in "${got[@]}"; do
            echo "pid $$ on ${HOSTNAME:-this host}" >"$lockdir/gpu$id.lock"
        done
        CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${got[*]}")
        export CUDA_VISIBLE_DEVICES
        say "running on GPU $CUDA_VISIBLE_DEVICES (slots ${slots[*]})"
        # the child inherits the locked descriptors; the locks last as long as it runs (exec keeps pid $$)
        exec "$@"
    fi
    for held in "${fds[@]}"; do
        exec {held}>&-
    done
    waited=$((SECONDS - start))
    if ((waited >= wait_limit)); then
        say "gave up after ${waited}s waiting for $need free GPU(s) among slots ${slots[*]} (held by:$(holders))" \
            "; SPARSEBASIN_GPU_WAIT=$wait_limit s is the limit: raise it, or free a GPU and rerun"
        exit 75
    fi
    if ((waited >= next_report)); then
        say "waiting for $need free GPU(s) among slots ${slots[*]}, held by:$(holders)" \
            "(waited ${waited}s; giving up after ${wait_limit}s, SPARSEBASIN_GPU_WAIT)"
        next_report=$((waited + 60))
    fi
    pause=$((1 + RANDOM % 3))
    ((pause <= wait_limit - waited)) || pause=$((wait_limit - waited))
    sleep "$pause"
done

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
# CUDA_DEVICE_ORDER=PCI_BUS_ID always: the slot number is the board nvidia-smi shows.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: gpu_slot.sh CMD [ARGS...]" >&2
    exit 2
fi
export CUDA_DEVICE_ORDER=PCI_BUS_ID
visible="${CUDA_VISIBLE_DEVICES:-}"

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
    echo "gpu_slot: SLURM job ${SLURM_JOB_ID}, GPU(s) ${visible:-as allocated}" >&2
    exec "$@"
fi
need="${SPARSEBASIN_GPUS_PER_JOB:-1}"
if ! [[ "$need" =~ ^[1-9][0-9]*$ ]]; then
    echo "gpu_slot: SPARSEBASIN_GPUS_PER_JOB=$need is not a positive integer" >&2
    exit 2
fi
if [[ -n "$visible" && "$visible" != *,* && "$need" -eq 1 ]]; then
    echo "gpu_slot: CUDA_VISIBLE_DEVICES=$visible (one device): running there" >&2
    exec "$@"
fi

slots=()
if [[ -n "$visible" ]]; then
    IFS=',' read -r -a slots <<< "$visible"
else
    n="${SPARSEBASIN_GPUS:-}"
    if [[ -z "$n" ]]; then
        n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    fi
    if ! [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]]; then
        n=$("${SPARSEBASIN_PYTHON:-python}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || true)
    fi
    if ! [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]]; then
        echo "gpu_slot: WARNING: found no GPU (no nvidia-smi, torch sees none, SPARSEBASIN_GPUS unset);" \
             "assuming ONE GPU, so GPU jobs run one at a time on GPU 0" >&2
        n=1
    fi
    for ((i = 0; i < n; i++)); do slots+=("$i"); done
fi

lockdir="${SPARSEBASIN_GPU_LOCKS:-/tmp/sparsebasin-gpu-locks-$(id -u)}"
mkdir -p "$lockdir"
chmod 700 "$lockdir" 2>/dev/null || true

if [[ "$need" -gt "${#slots[@]}" ]]; then
    echo "gpu_slot: the job needs $need GPUs but this machine has ${#slots[@]} (slots ${slots[*]});" \
         "lower gpus_per_run or run it on a larger node" >&2
    exit 2
fi

while true; do
    got=()
    fds=()
    for id in "${slots[@]}"; do
        exec {fd}>"$lockdir/gpu$id.lock"
        if flock -n "$fd"; then
            got+=("$id")
            fds+=("$fd")
            [[ "${#got[@]}" -eq "$need" ]] && break
        else
            exec {fd}>&-
        fi
    done
    if [[ "${#got[@]}" -eq "$need" ]]; then
        CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${got[*]}")
        export CUDA_VISIBLE_DEVICES
        echo "gpu_slot: running on GPU $CUDA_VISIBLE_DEVICES (slots ${slots[*]})" >&2
        # the child inherits the locked descriptors; the locks last as long as it runs
        exec "$@"
    fi
    for held in "${fds[@]}"; do
        exec {held}>&-
    done
    sleep $((1 + RANDOM % 3))
done

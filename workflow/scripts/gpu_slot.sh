#!/usr/bin/env bash
# Run a command on one free GPU of this machine: gpu_slot.sh CMD [ARGS...]
#
# Used by the workflow's GPU rules when the config says device: cuda.
# - Under SLURM (or whenever CUDA_VISIBLE_DEVICES is already set) the command
#   runs as is: the scheduler chose the GPU.
# - On a workstation, Snakemake's `--resources gpu=N` (local/config.yaml) caps
#   the number of GPU jobs at N; this script gives each of them its own GPU by
#   taking an exclusive lock on ${TMPDIR:-/tmp}/sparsebasin-gpu<i>.lock for the
#   first free i in 0..N-1 and exporting CUDA_VISIBLE_DEVICES=i. The lock is
#   released when the command exits (also on kill), so no slot leaks.
#   N is $SPARSEBASIN_GPUS, else the number of GPUs nvidia-smi lists, else 1.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: gpu_slot.sh CMD [ARGS...]" >&2
    exit 2
fi
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
    exec "$@"
fi

n="${SPARSEBASIN_GPUS:-}"
if [[ -z "$n" ]]; then
    n=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
    [[ "$n" =~ ^[0-9]+$ && "$n" -gt 0 ]] || n=1
fi
lockdir="${TMPDIR:-/tmp}"

while true; do
    for ((i = 0; i < n; i++)); do
        exec {fd}>"$lockdir/sparsebasin-gpu$i.lock"
        if flock -n "$fd"; then
            export CUDA_VISIBLE_DEVICES="$i"
            echo "gpu_slot: running on GPU $i of $n" >&2
            # the child inherits the locked descriptor; the lock lasts as long as it runs
            exec "$@"
        fi
        exec {fd}>&-
    done
    sleep 2
done

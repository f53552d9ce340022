#!/usr/bin/env bash
# One process of a multi-host data-parallel run (GPU clusters without SLURM: run this on every host).
#   COORDINATOR=host0:12345 NUM_PROCESSES=2 PROCESS_ID=0 launch/multihost.sh --config=configs/cifar10.py --workdir=/shared/run
# Every host sees the same workdir (a shared file system or gs://); the global batch is split over processes,
# each loads its own slice (jax.make_array_from_process_local_data). Arguments are passed on unchanged
# (quote them as for any command). Output goes to the terminal and to $LOG_DIR/process-<id>.log
# (LOG_DIR defaults to ./logs). LOCAL_DEVICES=N makes each process check that it sees N devices.
set -euo pipefail
: "${COORDINATOR:?set COORDINATOR=host:port of process 0}"
: "${NUM_PROCESSES:?set NUM_PROCESSES}"
: "${PROCESS_ID:?set PROCESS_ID (0..NUM_PROCESSES-1)}"
LOG_DIR=${LOG_DIR:-logs}
mkdir -p "$LOG_DIR"
export JAX_COORDINATOR_ADDRESS="$COORDINATOR" JAX_NUM_PROCESSES="$NUM_PROCESSES" JAX_PROCESS_ID="$PROCESS_ID"
if [ -n "${LOCAL_DEVICES:-}" ]; then export AT_JAX_LOCAL_DEVICES="$LOCAL_DEVICES"; fi
python -m at_jax.train "$@" 2>&1 | tee -a "$LOG_DIR/process-$PROCESS_ID.log"

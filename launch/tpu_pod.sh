#!/usr/bin/env bash
# A TPU pod slice: install at_jax on every worker, run the same command on all of them, one log per worker.
#   TPU=my-pod ZONE=us-central2-b launch/tpu_pod.sh setup
#   TPU=my-pod ZONE=us-central2-b launch/tpu_pod.sh train --config=configs/cifar100.py --workdir=gs://bucket/run \
#       --config.parallel_runs=2 --config.parallel_sweep=at_beta --config.parallel_values="(10.,100.)"
#   TPU=my-pod ZONE=us-central2-b launch/tpu_pod.sh logs          # copies every worker's log to ./tpu_logs/
# setup: this checkout (git archive of HEAD) goes to ~/$REMOTE_DIR on every worker and is installed with
#   jax[tpu] and the gs:// extra. train: the arguments reach every worker exactly as typed (each is quoted with
#   printf %q); jax.distributed.initialize() finds the pod itself (AT_JAX_DISTRIBUTED=1); each worker writes
#   ~/at_jax_logs/worker-<hostname>.log. The workdir must be a gs:// bucket all workers reach.
#   Maintenance events send SIGTERM: the job saves a checkpoint and exits 143; run `train` again to resume.
# PROJECT=... adds --project; REMOTE_DIR (default at_jax) is where the code lives on the workers.
set -euo pipefail
: "${TPU:?set TPU=name of the TPU VM}"; : "${ZONE:?set ZONE}"
REMOTE_DIR=${REMOTE_DIR:-at_jax}
GCLOUD_FLAGS=(--zone="$ZONE")
if [ -n "${PROJECT:-}" ]; then GCLOUD_FLAGS+=(--project="$PROJECT"); fi
on_every_worker() { gcloud compute tpus tpu-vm ssh "$TPU" "${GCLOUD_FLAGS[@]}" --worker=all --command="$1"; }

action=${1:-}
shift || true
case "$action" in
  setup)
    archive=$(mktemp -d)/at_jax.tar.gz
    git -C "$(dirname "$0")/.." archive --format=tar.gz -o "$archive" HEAD
    gcloud compute tpus tpu-vm scp "$archive" "$TPU":at_jax.tar.gz "${GCLOUD_FLAGS[@]}" --worker=all
    on_every_worker "set -e; mkdir -p $(printf %q "$REMOTE_DIR") && tar -xzf at_jax.tar.gz -C $(printf %q "$REMOTE_DIR") && pip install -q -U 'jax[tpu]' && pip install -q -e $(printf %q "$REMOTE_DIR")'[gcs]'"
    ;;
  train)
    arguments=$(printf '%q ' "$@")
    on_every_worker "set -o pipefail; mkdir -p ~/at_jax_logs && cd $(printf %q "$REMOTE_DIR") && AT_JAX_DISTRIBUTED=1 python -m at_jax.train $arguments 2>&1 | tee ~/at_jax_logs/worker-\$(hostname).log"
    ;;
  logs)
    mkdir -p tpu_logs
    gcloud compute tpus tpu-vm scp "$TPU":'~/at_jax_logs/*' tpu_logs/ "${GCLOUD_FLAGS[@]}" --worker=all
    ;;
  *)
    echo "usage: TPU=name ZONE=zone $0 setup | train ARGS... | logs" >&2
    exit 2
    ;;
esac

#!/usr/bin/env bash
# TPU pod slice: the same command on every worker; jax.distributed.initialize() detects the TPU environment.
#   TPU=my-pod ZONE=us-central2-b launch/tpu_pod.sh --config=configs/cifar100.py --workdir=gs://bucket/run
set -euo pipefail
: "${TPU:?set TPU=name of the TPU VM}"; : "${ZONE:?set ZONE}"
gcloud compute tpus tpu-vm ssh "$TPU" --zone="$ZONE" --worker=all \
  --command="cd at_jax && AT_JAX_DISTRIBUTED=1 python -m at_jax.train $*"

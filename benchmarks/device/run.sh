#!/usr/bin/env bash
# This project's GPU benchmarks in one call of the device tool (one H100,
# no network there). Prepare once, here: `bash benchmarks/device/prep.sh`
# (.whl/ and .data/, ~27 MiB, git-ignored). Then the device call is
#
#   run(command="bash benchmarks/device/run.sh", carry=[".whl", ".data"], timeout_s=560)
#
# and give_back afterwards. The logs come back from $OUT (6 files):
# summary.txt (each benchmark's exit code and seconds; 124 = its timeout),
# env.txt (versions, nvidia-smi, the carried imports, the data check),
# train_throughput.log, sweep.log, seed_parallelism.log, seed_parallelism_10.log.
# Each benchmark has its own timeout (*_T, seconds), so a hang cannot eat the
# rest: 480 s if all are hit, ~8.3 min in all. A failed benchmark does not
# stop the next one.
#
# Sizes: *_ARGS below, each overridable from the environment. SMOKE=1 swaps in
# tiny ones to check the script end to end on a CPU (~8 min on the 2-core VM), e.g.
#   SMOKE=1 OUT=/tmp/devout PY=.venv/bin/python WHEELS=0 nice -n 19 bash benchmarks/device/run.sh
# (PY: a Python 3.12 to install the cp312 wheels with WHEELS=1, as there.)
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?OUT must name a folder for the logs}"
mkdir -p "$OUT"
PY=${PY:-python3}      # the device's python3 (3.12, with jax/flax/torch)
WHEELS=${WHEELS:-1}    # 1: install .whl/*.whl into $SITE first
SITE=${SITE:-/tmp/site}

if [[ ${SMOKE:-0} == 1 ]]; then
  : "${TT_ARGS:=--images=64 --batch_size=16 --image_size=64}" "${TT_T:=400}"
  : "${SWEEP_ARGS:=--train_subset=320 --epochs=1 --seed_parallelism=vmap}" "${SWEEP_T:=600}"
  : "${SP_ARGS:=--seeds=2 --batch_size=8 --repeats=2}" "${SP_T:=300}"
  : "${SP10_ARGS:=--seeds=3 --batch_size=8 --repeats=2}" "${SP10_T:=300}"
fi
# GPU sizes (estimates, not yet measured on a GPU): JAX 6 epochs + PyTorch 12
# (+ torch.compile) + DataLoader, 100 steps each; the ten-initialiser sweep on
# 4,000 of the 5,000 carried train images (class-balanced: 4,610 at most);
# seeds side by side as in BENCHMARKS.md (3 seeds, 64 px, batch 32), then 10.
: "${TT_ARGS:=--images=25600 --batch_size=256}" "${TT_T:=220}"
: "${SWEEP_ARGS:=--train_subset=4000 --epochs=1}" "${SWEEP_T:=170}"
: "${SP_ARGS:=}" "${SP_T:=40}"
: "${SP10_ARGS:=--seeds=10}" "${SP10_T:=50}"

start=$(date +%s)
summary=$OUT/summary.txt
echo "# $(date -u +%FT%TZ) $(uname -n) SMOKE=${SMOKE:-0} commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$summary"

if [[ $WHEELS == 1 ]]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" .whl/*.whl 2>&1 | tee "$OUT/env.txt"
  echo "pip install rc=${PIPESTATUS[0]}" >>"$summary"
  export PYTHONPATH=$SITE:$PWD
else
  export PYTHONPATH=$PWD
fi
export TFDS_DATA_DIR=$PWD/.data/tfds PYTHONUNBUFFERED=1

{
  echo "== python: $("$PY" -c 'import sys; print(sys.executable, sys.version)')"
  nvidia-smi 2>&1 || echo "(no nvidia-smi)"
  "$PY" -m pip list 2>/dev/null |
    grep -iE '^(jax|flax|optax|orbax|chex|numpy|torch|triton|protobuf|etils|absl)'
  "$PY" - <<'PYEOF'
import importlib, os
for name in ("tensorflow_datasets", "ml_collections", "dm_pix", "tensorboardX",
             "array_record", "tree", "google.protobuf", "etils"):
  module = importlib.import_module(name)
  print(f"{name} {getattr(module, '__version__', '')} from {module.__file__}")
import jax
print("jax devices:", jax.devices())
import tensorflow_datasets as tfds
for split in ("train", "test"):
  source = tfds.data_source("cifar10", split=split)  # TFDS_DATA_DIR
  print(f"cifar10 {split}: {len(source)} examples in {os.environ['TFDS_DATA_DIR']}, "
        f"label[0]={source[0]['label']}, image[0] {source[0]['image'].shape}")
PYEOF
} 2>&1 | tee -a "$OUT/env.txt"
echo "checks rc=${PIPESTATUS[0]} (env.txt)" >>"$summary"

bench() {  # bench LOG SECONDS MODULE ARGS...: one benchmark, its log, its line
  local log=$1 limit=$2 t0=$SECONDS rc
  shift 2
  echo "== $(date -u +%T) $* (timeout ${limit}s)" | tee "$OUT/$log"
  timeout -k 10 "$limit" "$PY" -m "$@" 2>&1 | tee -a "$OUT/$log"
  rc=${PIPESTATUS[0]}
  printf '%-22s rc=%-3s %4ss  %s\n' "$log" "$rc" "$((SECONDS - t0))" "$*" | tee -a "$summary"
}
# shellcheck disable=SC2086  # the *_ARGS are word lists
bench train_throughput.log "$TT_T" benchmarks.train_throughput $TT_ARGS
bench sweep.log "$SWEEP_T" benchmarks.sweep $SWEEP_ARGS
bench seed_parallelism.log "$SP_T" benchmarks.seed_parallelism $SP_ARGS
bench seed_parallelism_10.log "$SP10_T" benchmarks.seed_parallelism $SP10_ARGS

echo "total $(( $(date +%s) - start ))s" | tee -a "$summary"
cat "$summary"

"""XLA:CPU's convolution back-ends on jaxtransfer's CPU-sized train steps.

  python -m benchmarks.xla_cpu_flags [--repeats=60] [--models=v4,alexnet_bn]

jaxtransfer trains on XLA:CPU wherever no accelerator is lent, and there
the same seed-002 v4 step ran 2.3x slower than PyTorch (docs/results/
joint/joint_v4_batch.md). XLA:CPU has library back-ends behind flags (YNNPACK
convolutions, oneDNN custom calls, XNNPACK). This times jaxtransfer's own
compiled train step (`steps.make_train_step`, random uint8 pixels, batch
32, compilation excluded) under each flag set, one fresh process per set
(XLA_FLAGS is read once per process), and checks every set computes the
same step: the parameter update of the first step must match the default
flags' to a relative L2 error of 1e-3 (a back-end that changes results is
reported as such, not timed as a win). Adam's first update is +-lr per
element (m / sqrt(v) = g / |g|), so a rounding-level change of a gradient
near zero flips that element's whole update: the check also gives the
fraction of elements whose update flipped. Prints a markdown table of ms/step
and the speed-up over the default flags, for BENCHMARKS.md.

Models (MODELS): seed 002's v4 joint net (configs/joint/v4.py, arm
dropout_l2norm) and seed 004's AlexNet-BN at 32 px
(configs/sweeps/initializers.py's first arm). Timing after
benchmarks/timing.py's warm-up: the first tens of steps of a fresh process
run ~2x slower (2026-12-05: 30 steps right after compiling averaged
~200 ms, 150 steps ~114 ms, the training loop's epochs ~96 ms).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

FLAG_SETS = (
    ("default", ""),
    ("YNNPACK convolutions",
     "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"),
    ("YNNPACK off", "--xla_cpu_experimental_ynn_fusion_type="),
    ("oneDNN custom calls",
     "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true"),
    ("XNNPACK", "--xla_cpu_use_xnnpack=true"),
)


# Each model's study config (its first arm is timed).
MODELS = {
    "v4": ("configs.joint.v4", "arms=dropout_l2norm,num_seeds=1"),
    "alexnet_bn": ("configs.sweeps.initializers", None),
}


def model_config(name: str):
  """One run config: the model's own study config, first arm, 1 seed,
  batch 32."""
  import importlib
  from jaxtransfer.study import planning
  if name not in MODELS:
    raise SystemExit(f"--models: unknown model {name!r} ({', '.join(MODELS)})")
  module, arg = MODELS[name]
  config = importlib.import_module(module).get_config(arg)
  run = planning.arm_config(config, planning.plan_arms(config)[0], "")
  run.num_seeds = 1
  run.batch_size = 32
  return run


def child(name: str, repeats: int, out: str) -> None:
  """Time one model's step under this process's XLA_FLAGS; save the first
  step's parameter update to `out` (.npy) and print a JSON line."""
  import jax
  from jax.flatten_util import ravel_pytree
  import jax.numpy as jnp
  import numpy as np
  from benchmarks import timing
  from jaxtransfer.engine import run_setup, steps

  config = model_config(name)
  batch = config.batch_size
  n = batch * 4
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (n, config.image_size,
                                              config.image_size, 3), np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n).astype(np.int32))
  order = jnp.arange(n)[None]
  setup, init_state = run_setup.build_setup(config, 10, 4, batch)
  keys = steps.RunKeys.from_seeds([config.seed])
  inputs = (images, labels, order, keys.augment)
  # Donated, as the training loop does (training.py).
  step = jax.jit(steps.make_train_step(setup), donate_argnums=0)
  state = init_state(keys.init)
  before = np.asarray(ravel_pytree(state.params)[0])
  start = time.perf_counter()
  state = jax.block_until_ready(step(state, *inputs))
  compile_s = time.perf_counter() - start
  np.save(out, np.asarray(ravel_pytree(state.params)[0]) - before)
  seconds, _ = timing.seconds_per_step(step, state, inputs, repeats)
  print(json.dumps({"ms": seconds * 1e3, "compile_s": compile_s}))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=60)
  parser.add_argument("--models", default="v4,alexnet_bn")
  parser.add_argument("--child", default="")  # internal: one model
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  if args.child:
    child(args.child, args.repeats, args.out)
    return

  import numpy as np
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for name in args.models.split(","):
      reference, base_ms = None, None
      for label, flags in FLAG_SETS:
        out = os.path.join(tmp, f"{name}-{len(rows)}.npy")
        env = {**os.environ, "XLA_FLAGS": flags}
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.xla_cpu_flags", "--child", name,
             "--repeats", str(args.repeats), "--out", out],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
          why = (proc.stderr.strip().splitlines() or ["?"])[-1][:90]
          rows.append((name, label, flags, None, None, f"failed: {why}"))
          print(rows[-1], flush=True)
          continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        update = np.load(out)
        if reference is None:
          reference, base_ms = update, result["ms"]
        error = float(np.linalg.norm(update - reference)
                      / np.linalg.norm(reference))
        flipped = float(np.mean(np.abs(update - reference)
                                > 0.5 * np.abs(reference).max()))
        same = ("same step" if error < 1e-3 else
                f"differs: {flipped:.2%} of the elements' updates flipped")
        rows.append((name, label, flags, result["ms"], base_ms / result["ms"],
                     f"{same} (rel. error {error:.1e}); compile "
                     f"{result['compile_s']:.0f} s"))
        print(rows[-1], flush=True)

  import jax
  print(f"\n{datetime.date.today()} | {platform.node()} | {platform.processor() or platform.machine()} "
        f"| {os.cpu_count()} cores | jax {jax.__version__} | batch 32, "
        f"{args.repeats} steps\n")
  print("| model | back-end | XLA_FLAGS | ms/step | speed-up | check |")
  print("|---|---|---|---|---|---|")
  for name, label, flags, ms, ratio, note in rows:
    ms_text = "-" if ms is None else f"{ms:.1f}"
    ratio_text = "-" if ratio is None else f"{ratio:.2f}x"
    print(f"| {name} | {label} | `{flags or '(none)'}` | {ms_text} | "
          f"{ratio_text} | {note} |")


if __name__ == "__main__":
  main()

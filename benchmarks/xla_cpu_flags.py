"""XLA:CPU's convolution back-ends on jaxtransfer's CPU-sized train steps.

  python -m benchmarks.xla_cpu_flags [--repeats=60] [--models=v4,alexnet_bn]

jaxtransfer trains on XLA:CPU wherever no accelerator is lent, and there
the same seed-002 v4 step ran 2.3x slower than PyTorch (docs/
joint_v4_batch.md). XLA:CPU has library back-ends behind flags (YNNPACK
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

Models: seed 002's v4 joint net (configs/joint/v4.py, arm dropout_l2norm;
another arm with V4_ARM=beta0) and seed 004's AlexNet-BN at 32 px
(configs/sweeps/initializers.py's model).

The first tens of steps of a fresh process run ~2x slower than the rest
(measured on 2026-12-05: 30 steps averaged ~200 ms, 150 steps ~114 ms, the
training loop's epochs ~96 ms); WARMUP_STEPS untimed steps come first.
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

WARMUP_STEPS = 40
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


def model_config(name: str):
  """One run config: the model's own study config, first arm."""
  from jaxtransfer import study_plan
  if name == "v4":
    from configs.joint import v4
    arm = os.environ.get("V4_ARM", "dropout_l2norm")
    config = v4.get_config(f"arms={arm},num_seeds=1")
  elif name == "alexnet_bn":
    from configs.sweeps import initializers
    config = initializers.get_config(None)
  else:
    raise SystemExit(f"--models: unknown model {name!r} (v4, alexnet_bn)")
  arm = study_plan.plan_arms(config)[0]
  run = study_plan.arm_config(config, arm, "")
  run.num_seeds = 1
  run.batch_size = 32
  return run


def child(name: str, repeats: int, out: str) -> None:
  """Time one model's step under this process's XLA_FLAGS; save the first
  step's parameter update to `out` (.npy) and print a JSON line."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from jaxtransfer import run_setup, steps

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
  # Donated, as the training loop does (training.py).
  step = jax.jit(steps.make_train_step(setup), donate_argnums=0)
  state = init_state(keys.init)
  params0 = jax.tree.map(jnp.copy, state.params)
  start = time.perf_counter()
  state = step(state, images, labels, order, keys.augment)
  jax.block_until_ready(state)
  compile_s = time.perf_counter() - start
  flat0 = jnp.concatenate([p.ravel() for p in jax.tree.leaves(params0)])
  flat1 = jnp.concatenate([p.ravel() for p in jax.tree.leaves(state.params)])
  np.save(out, np.asarray(flat1 - flat0))
  for _ in range(WARMUP_STEPS):  # the first tens of steps run ~2x slower
    state = step(state, images, labels, order, keys.augment)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(repeats):
    state = step(state, images, labels, order, keys.augment)
  jax.block_until_ready(state)
  seconds = (time.perf_counter() - start) / repeats
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

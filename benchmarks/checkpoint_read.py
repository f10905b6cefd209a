"""Reading a run's weights from its checkpoint: `checkpoints.load_variables`
(params and batch_stats alone, a partial restore) against restoring the
whole saved state (optimizer state included), side by side in one process.

  python -m benchmarks.checkpoint_read [--models=alexnet_bn,alexnet_torchvision] [--seeds=2] [--repeats=5]

What evaluation, analysis, active-learning rounds and transfer from a run
(`init_weights`, `ae_checkpoint`) read. For each model this saves one
checkpoint of a fresh run's state (`--seeds` seeds, the default optimizer:
Adam, whose two moments are two thirds of the state) in a temporary
directory, then reads it `--repeats` times each way, alternating the order,
and checks both give the same params and statistics bit for bit. Prints a
markdown table for BENCHMARKS.md: median seconds per way and the ratio.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import jax  # noqa: E402
import numpy as np  # noqa: E402
import orbax.checkpoint as ocp  # noqa: E402

from configs import default  # noqa: E402
from jaxtransfer.core import checkpoints  # noqa: E402
from jaxtransfer.engine import run_setup, steps, training  # noqa: E402

IMAGE_SIZES = {"alexnet_bn": 32, "alexnet": 64, "alexnet_torchvision": 224,
               "lenet": 28}


def saved_run(model: str, seeds: int, directory: str) -> None:
  config = default.get_config()
  config.model, config.image_size, config.num_seeds = (
      model, IMAGE_SIZES.get(model, 64), seeds)
  _, init_state = training.build_setup(config, 10, 8, config.batch_size)
  init_state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)
  state = init_state(steps.RunKeys.from_seeds(steps.seeds_of(config)).init)
  store = checkpoints.RunCheckpoints(directory)
  store.save(1, state, [], {}, None)
  store.close()


def whole_state(directory: str) -> dict:
  """The previous way: the whole state restored (orbax, no target), then
  params and stats."""
  manager = ocp.CheckpointManager(
      checkpoints.checkpoint_dir(directory),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False))
  try:
    raw = manager.restore(1, args=ocp.args.Composite(
        state=ocp.args.StandardRestore())).state
  finally:
    manager.close()
  return {name: jax.device_get(raw[name]) for name in checkpoints.VARIABLES
          if name in raw}


def partial(directory: str) -> dict:
  params, batch_stats, _ = checkpoints.load_variables(directory)
  return {"params": params, "batch_stats": batch_stats}


def measure(model: str, seeds: int, repeats: int) -> dict:
  with tempfile.TemporaryDirectory() as directory:
    saved_run(model, seeds, directory)
    size = sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(directory) for f in files)
    ways = (("whole state", whole_state), ("load_variables", partial))
    seconds = {name: [] for name, _ in ways}
    results = {}
    for repeat in range(repeats):
      for name, read in (ways if repeat % 2 == 0 else ways[::-1]):
        start = time.perf_counter()
        results[name] = read(directory)
        seconds[name].append(time.perf_counter() - start)
  for a, b in zip(jax.tree.leaves(results["whole state"]),
                  jax.tree.leaves(results["load_variables"]), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  median = {name: statistics.median(s) for name, s in seconds.items()}
  return {"model": model, "mb": size / 2**20, **median,
          "ratio": median["whole state"] / median["load_variables"]}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="alexnet_bn,alexnet_torchvision")
  parser.add_argument("--seeds", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.seeds} seeds, median of {args.repeats}; "
        "params and statistics bit for bit the same both ways\n")
  print("| model | checkpoint MB | whole state s | load_variables s | ratio |")
  print("|---|---|---|---|---|")
  for model in args.models.split(","):
    row = measure(model, args.seeds, args.repeats)
    print(f"| {row['model']} | {row['mb']:,.0f} | {row['whole state']:.3f} | "
          f"{row['load_variables']:.3f} | **{row['ratio']:.2f}x** |")


if __name__ == "__main__":
  main()

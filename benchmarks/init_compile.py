"""Compiling a run's initialisation: XLA's default backend level against
run_setup.RUN_ONCE (level 2), side by side in one process.

  python -m benchmarks.init_compile [--models=lenet,alexnet,alexnet_bn,alexnet_torchvision,resnet50] [--repeats=3]

Every run compiles its initial state once (engine/run_setup.initial_state):
a threefry hash per parameter tensor, which LLVM at level 3 takes seconds to
optimise for a program that runs once. For each model this compiles the
init of 2 seeds (as a run does: vmapped over keys) at both levels, each
`--repeats` times from a freshly built program (JAX's in-memory caches
would otherwise answer; no persistent cache is set), alternating the order, and checks the
two give the same values bit for bit (a level that changed them would be
reported, not timed as a win). Prints a markdown table for BENCHMARKS.md:
median compile seconds per level and the ratio.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs import default  # noqa: E402
from jaxtransfer import models  # noqa: E402
from jaxtransfer.engine import run_setup  # noqa: E402

LEVELS = (("default (3)", None), ("RUN_ONCE (2)", run_setup.RUN_ONCE))


def init_program(model_name: str, image_size: int):
  config = default.get_config()
  config.model, config.image_size = model_name, image_size
  model = models.make_model(config, 10)
  channels = models.get_spec(model_name).input_channels
  sample = jnp.zeros((1, image_size, image_size, channels))
  return jax.vmap(lambda key: model.init(key, sample, train=False))


def measure(model_name: str, image_size: int, repeats: int):
  keys = jax.random.split(jax.random.key(0), 2)
  seconds = {name: [] for name, _ in LEVELS}
  values = {}
  for repeat in range(repeats):
    order = LEVELS if repeat % 2 == 0 else LEVELS[::-1]
    for name, options in order:
      # a fresh program each time: JAX's in-memory caches key on it
      jitted = jax.jit(init_program(model_name, image_size),
                       compiler_options=options)
      start = time.perf_counter()
      compiled = jitted.lower(keys).compile()
      seconds[name].append(time.perf_counter() - start)
      values[name] = jax.device_get(compiled(keys))
  (_, a), (_, b) = values.items()
  same = all(np.asarray(x).tobytes() == np.asarray(y).tobytes()
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  return {name: statistics.median(s) for name, s in seconds.items()}, same


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--models", default="lenet,alexnet,alexnet_bn,"
                      "alexnet_torchvision,resnet50")
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, jax {jax.__version__}, "
        f"`python -m benchmarks.init_compile --models={args.models} "
        f"--repeats={args.repeats}`\n")
  print("| model | image size | default (3) s | RUN_ONCE (2) s | ratio | "
        "same values |")
  print("|---|---|---|---|---|---|")
  for name in args.models.split(","):
    size = 32 if name.startswith("lenet") else 64
    medians, same = measure(name, size, args.repeats)
    slow, fast = medians["default (3)"], medians["RUN_ONCE (2)"]
    print(f"| {name} | {size} | {slow:.2f} | {fast:.2f} | {slow / fast:.2f}x | "
          f"{'bit for bit' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
  main()

"""Seed 004's initialiser sweep as one program (config.study.vectorize)
against one program per arm, side by side.

  python -m benchmarks.sweep [--train_subset=1280] [--epochs=1]

Runs configs/sweeps/initializers.py (ten arms, AlexNet-BN at 32 px, batch
32, 1 seed) both ways in temporary workdirs, on the real CIFAR-10 copy
(TFDS_DATA_DIR), and prints the wall time of the whole study, its compile
time and its training time (sums of the records' epoch_seconds).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--train_subset", type=int, default=1280)
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--seed_parallelism", default="auto")
  args = parser.parse_args()

  import jax
  from absl import logging
  from configs.sweeps import initializers
  from jaxtransfer.core import workdir as workdir_lib
  from jaxtransfer.study import runner
  logging.set_verbosity(logging.WARNING)

  def measure(vectorize: bool) -> dict[str, float]:
    config = initializers.get_config(f"num_seeds=1,vectorize={vectorize}")
    config.train_subset, config.val_subset = args.train_subset, 1000
    config.num_epochs = args.epochs
    config.progress_bar = False
    config.seed_parallelism = args.seed_parallelism
    # ~270 MB of checkpoints per arm: removed once read
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as workdir:
      start = time.perf_counter()
      plan = runner.run(config, workdir)
      wall = time.perf_counter() - start
      runs = ([os.path.join(workdir, "sweep_0")] if vectorize else
              [os.path.join(workdir, arm["name"]) for arm in plan["arms"]])
      compile_s = train_s = 0.0
      for run in runs:
        records = workdir_lib.read_metrics(run)
        compile_s += records[0]["compile_seconds"]
        train_s += sum(
            r["epoch_seconds"] for r in records
            if r["seed"] == records[0]["seed"]
            and r.get("variant", "") == records[0].get("variant", ""))
    return {"wall": wall, "compile": compile_s, "train": train_s}

  apart, together = measure(False), measure(True)
  print(f"\n{datetime.date.today()} | {platform.node()} | "
        f"{jax.devices()[0].device_kind} x{jax.device_count()} | jax "
        f"{jax.__version__} | {len(initializers.SEED_ACCURACY)} arms x 1 "
        f"seed, {args.train_subset} images, {args.epochs} epoch(s), "
        f"seed_parallelism={args.seed_parallelism}")
  print("| | ten programs s | one program s | ten / one |")
  print("|---|---|---|---|")
  for key in ("wall", "compile", "train"):
    print(f"| {key} | {apart[key]:.1f} | {together[key]:.1f} | "
          f"{apart[key] / together[key]:.2f}x |")


if __name__ == "__main__":
  main()

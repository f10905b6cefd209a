"""Seeds side by side: one vectorised step for S seeds ('vmap', 'unroll')
against S single-seed steps, in one process.

  python -m benchmarks.seed_parallelism [--seeds=3] [--image_size=64] [--batch_size=32]

Times the compiled train step (random pixels, no data loading), after warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--image_size", type=int, default=64)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from configs import default
  from benchmarks import timing
  from jaxtransfer.engine import training

  rng = np.random.default_rng(0)
  n = args.batch_size * 10
  images = jnp.asarray(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, n, dtype=np.int32))
  rows = []
  for strategy, seeds in (("unroll", 1), ("vmap", args.seeds), ("unroll", args.seeds)):
    config = default.get_config()
    config.image_size, config.seed_parallelism = args.image_size, strategy
    config.num_seeds = seeds
    setup, init_state = training.build_setup(config, 10, 10, args.batch_size, 1e-3)
    keys = training.RunKeys.from_seeds(range(seeds))
    orders = jnp.stack([jnp.arange(n)] * seeds)
    step = jax.jit(training.make_train_step(setup), donate_argnums=0)
    seconds, _ = timing.seconds_per_step(
        step, init_state(keys.init), (images, labels, orders, keys.augment),
        args.repeats)
    rows.append((strategy, seeds, seconds))
  single = rows[0][2]
  print(f"\n{datetime.date.today()} | {platform.node()} | "
        f"{jax.devices()[0].device_kind} x{jax.device_count()} | jax {jax.__version__}"
        f" | {args.image_size} px | batch {args.batch_size} per seed")
  print("| program | seeds | step ms | ms per seed | vs one seed run S times |")
  print("|---|---|---|---|---|")
  for strategy, seeds, seconds in rows:
    print(f"| {strategy} | {seeds} | {seconds * 1e3:.1f} | {seconds * 1e3 / seeds:.1f} |"
          f" {seconds / (single * seeds):.2f}x |")


if __name__ == "__main__":
  main()

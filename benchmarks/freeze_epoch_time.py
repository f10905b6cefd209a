"""Epoch time of the three freezing regimes, side by side in one process.

  python -m benchmarks.freeze_epoch_time [--image_size=128] [--train_subset=5120]

Runs the real training loop (`training.train_and_evaluate`) for each regime on
the same CIFAR-10 subset and reports the wall time of the last epoch (no
compilation in it) and its ratio to `freeze=none`. The regimes run on images
(the body's forward pass every step); `head (feature cache)` is `freeze=head`
with its default feature cache (body features computed once, reported as
"cache s", then epochs of the head alone). Epoch time is linear in the
number of images, so a subset gives the full-epoch ratio; scale the seconds by
50,000 / train_subset for a full CIFAR-10 epoch.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--train_subset", type=int, default=5120)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--regimes", default="none,head,head+conv5,head+cache")
  args = parser.parse_args()

  import jax
  from configs import default
  from jaxtransfer.engine import training

  rows = []
  for regime in args.regimes.split(","):
    freeze = regime.replace("+cache", "")
    config = default.get_config()
    config.freeze = freeze
    config.cache_features = regime.endswith("+cache")
    config.image_size = args.image_size
    config.train_subset = args.train_subset
    config.val_subset = 500
    config.batch_size = args.batch_size
    config.num_epochs = args.epochs
    config.progress_bar = False
    with tempfile.TemporaryDirectory() as workdir:
      history = training.train_and_evaluate(config, workdir, name=regime)
    last = history[-1]
    label = "head (feature cache)" if regime.endswith("+cache") else freeze
    rows.append((label, last["epoch_seconds"], last["train_images_per_second"],
                 last["trainable_parameters"], last["compile_seconds"],
                 last.get("feature_seconds")))

  base = rows[0][1]
  print(f"\n{datetime.date.today()} | {platform.node()} | "
        f"{jax.devices()[0].device_kind} x{jax.device_count()} | jax "
        f"{jax.__version__} | {args.image_size} px | {args.train_subset} images"
        f" | batch {args.batch_size}")
  print("| freeze | epoch s | img/s | trainable params | compile s | cache s | epoch time vs none |")
  print("|---|---|---|---|---|---|---|")
  for label, seconds, rate, trainable, compile_s, cache_s in rows:
    cache = f"{cache_s:.1f}" if cache_s is not None else "-"
    print(f"| {label} | {seconds:.3f} | {rate:,.0f} | {trainable:,} | "
          f"{compile_s:.1f} | {cache} | {seconds / base:.3f}x |")


if __name__ == "__main__":
  main()

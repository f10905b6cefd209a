"""How long `jaxtransfer analyze` takes on the full-size seed-000 study's
checkpoints, measured on one full-size arm at two sizes and extrapolated.

  python -m benchmarks.analysis_time [--small=1000] [--large=4000]

Trains one full-size arm (configs/study.py's model: AlexNet at 128 px,
random init, no freezing) for a few steps on the real CIFAR-10 copy
(TFDS_DATA_DIR), then times each part of the analysis twice: probes on
`small` and `large` training images (plus 1,000 validation images), CKA
features on small/4 and large/4 validation images, the 45 corruptions on
small/5 and large/5 validation images, after a first pass at the small
size that compiles everything (as a study's first arm does). Each part's time is fit as
fixed + per_image * images through the two sizes and evaluated at the full
study's sizes (probes: 50,000 + 10,000 images; CKA: --cka_examples=2000;
corruptions: 45 x 10,000), per arm and for the study's 6 arms (9 with the
ImageNet arms). Probe time is the forward passes plus a fixed cost per layer
(the ridge solves and their compilation), so two sizes separate the two.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

FULL = {"probes": 50_000 + 10_000, "CKA features": 2_000,
        "corruptions": 45 * 10_000}
VAL = 1_000


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", type=int, default=1000)
  parser.add_argument("--large", type=int, default=4000)
  args = parser.parse_args()

  from absl import logging
  from configs import default
  from jaxtransfer.engine import training
  from jaxtransfer.study.analysis import analyze
  logging.set_verbosity(logging.WARNING)

  config = default.get_config()  # configs/study.py's arms' model and size
  config.train_subset, config.val_subset = max(args.large, 512), VAL
  config.num_epochs, config.progress_bar = 1, False
  config.batch_size = 128
  root = tempfile.mkdtemp(prefix="analysis-bench-")
  run_dir = os.path.join(root, "run")
  training.train_and_evaluate(config, run_dir)

  times: dict[str, dict[int, float]] = {}
  sizes: dict[str, dict[int, int]] = {}

  def log(message, *values):
    text = message % values
    match = re.match(r"analysis: \S+ (probes|CKA features|corruptions) in "
                     r"([0-9.]+) s", text)
    if match:
      times.setdefault(match[1], {})[current] = float(match[2])

  # A first pass at the small size compiles every jitted function (as a
  # study's first arm does); the two measured passes then run warm, as
  # every later arm of a study does.
  for current in (args.small, args.small, args.large):
    shutil.rmtree(os.path.join(run_dir, analyze.ANALYSIS_DIR),
                  ignore_errors=True)
    options = analyze.Options(
        probe_examples=current, cka_examples=current // 4,
        corruption_examples=current // 5)
    for part, n in (("probes", current + VAL), ("CKA features", current // 4),
                    ("corruptions", 45 * (current // 5))):
      sizes.setdefault(part, {})[current] = n
    analyze.analyze(run_dir, options, log=log)

  print(f"# analysis time, {datetime.date.today()}, {platform.node()}, "
        f"{os.cpu_count()} CPUs")
  print("| part | images (small) | s | images (large) | s | s per 1,000 "
        "images | fixed s | images (full study) | s per arm (full) |")
  print("|---|---|---|---|---|---|---|---|---|")
  per_arm = 0.0
  for part, full in FULL.items():
    (n0, t0), (n1, t1) = [(sizes[part][c], times[part][c])
                          for c in (args.small, args.large)]
    rate = max((t1 - t0) / (n1 - n0), 0.0)  # noise can make it negative
    fixed = max(t0 - rate * n0, 0.0)
    estimate = fixed + rate * full
    per_arm += estimate
    print(f"| {part} | {n0:,} | {t0:.0f} | {n1:,} | {t1:.0f} | "
          f"{1000 * rate:.1f} | {fixed:.0f} | {full:,} | {estimate:.0f} |")
  print(f"\nper arm: {per_arm / 60:.0f} min; 6 arms (no ImageNet weights): "
        f"{6 * per_arm / 3600:.1f} h; 9 arms: {9 * per_arm / 3600:.1f} h")
  shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
  main()

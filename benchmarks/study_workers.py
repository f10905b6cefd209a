"""A study on 1 worker vs 2 (jaxtransfer study submit, submitit's local
executor), and what the claiming and submitting cost per arm.

  python -m benchmarks.study_workers [--epochs=2] [--train_subset=320]

The study: four arms (a grid over learning_rate) of the tests' tiny config
(64 px AlexNet, 320 training and 200 validation images, one seed). Each
setting runs in a fresh study directory through `submit.submit` (what the
command runs: the plan written, the workers submitted, waited for), and
reports:

  wall           the submit call, start to end
  per worker     seconds preparing (plan, data), training units, claiming
                 and recording them (the locks, the claim files,
                 study.json), waiting for units others hold, the report
                 (workers.work's own timing)
  claim / arm    the claiming and recording time per arm trained
  outside / arm  (wall - the training seconds of the busiest worker) per
                 arm that worker trained: everything that is not training,
                 submitit's process start and the imports included
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
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))

RATES = (1e-3, 5e-4, 2e-3, 3e-4)


def study_config(epochs: int, train_subset: int):
  import ml_collections
  from conftest import tiny_config  # (sets TFDS_DATA_DIR as the tests do)

  config = tiny_config(num_epochs=epochs, train_subset=train_subset)
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.grid = {"learning_rate": RATES}
  return config


def run(workers: int, config, root: str) -> dict:
  from jaxtransfer.study import submit

  workdir = os.path.join(root, f"workers{workers}")
  start = time.perf_counter()
  _, outcomes = submit.submit(config, workdir, executor="local",
                              count=workers, resources=submit.Resources())
  wall = time.perf_counter() - start
  busiest = max(outcomes, key=lambda o: o["seconds"]["train"])
  arms = sum(len(o["ran"]) for o in outcomes)
  claim = sum(o["seconds"]["claim"] for o in outcomes)
  return {"workers": workers, "wall": wall, "outcomes": outcomes,
          "claim_per_arm": claim / arms,
          "outside_per_arm": (wall - busiest["seconds"]["train"])
                             / len(busiest["ran"])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--train_subset", type=int, default=320)
  args = parser.parse_args()
  config = study_config(args.epochs, args.train_subset)
  results = []
  with tempfile.TemporaryDirectory(prefix="study-workers-") as root:
    for workers in (1, 2):
      results.append(run(workers, config, root))
  print(f"{datetime.date.today()}, {platform.node()}, {os.cpu_count()} CPUs; "
        f"{len(RATES)} arms x {args.epochs} epochs, train_subset "
        f"{args.train_subset}")
  print("| workers | wall s | vs 1 worker | arms per worker | per worker: "
        "prepare / train / claim / wait / report s | claim s per arm | "
        "outside training s per arm |")
  print("|---|---|---|---|---|---|---|")
  for result in results:
    per_worker = "; ".join(
        " / ".join(f"{o['seconds'][k]:.2f}" for k in
                   ("prepare", "train", "claim", "wait", "report"))
        for o in result["outcomes"])
    print(f"| {result['workers']} | {result['wall']:.1f} | "
          f"{results[0]['wall'] / result['wall']:.2f}x | "
          f"{', '.join(str(len(o['ran'])) for o in result['outcomes'])} | "
          f"{per_worker} | {result['claim_per_arm']:.3f} | "
          f"{result['outside_per_arm']:.1f} |")


if __name__ == "__main__":
  main()

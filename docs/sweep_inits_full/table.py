"""Seed 004's initialiser table at full size, assembled from its parts.

The full table (10 initialisers x 2 seeds x 5 epochs x 50,000 images) is
~9 hours on the development VM's two cores, longer than a session, and a
workdir does not dependably survive from one session to the next. So it
is run one initialiser at a time, each part finishing inside a session:

  python -m jaxtransfer.main --config=configs/sweeps/initializers.py:inits=NAME --workdir=workdirs/sweep_inits_full_NAME
  python docs/sweep_inits_5k/precise_bn.py workdirs/sweep_inits_full_NAME > docs/sweep_inits_full/NAME/precise_bn.md

and its records (NAME/metrics.jsonl, NAME/report.md, NAME/precise_bn.md)
are committed here. A part is the same arm as in the ten-initialiser
program: its seeds' keys and data order do not depend on the other arms
(tests/test_sweeps.py checks model k of a vectorised sweep against its
arm alone). This prints the README's table from whatever parts are here:

  python docs/sweep_inits_full/table.py
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

import numpy as np  # noqa: E402

from configs.sweeps.initializers import SEED_ACCURACY  # noqa: E402
from jaxtransfer import workdir  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def _mean_std(values):
  return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def _final(name):
  """Final-epoch records of a part, one per seed (None if not run)."""
  rows = [r for r in workdir.read_metrics(os.path.join(HERE, name))
          if "val_accuracy" in r]
  if not rows:
    return None
  last = max(r["epoch"] for r in rows)
  return sorted((r for r in rows if r["epoch"] == last),
                key=lambda r: r["seed"])


def _precise(name):
  """Test % with precise BatchNorm statistics, per seed, from precise_bn.md."""
  path = os.path.join(HERE, name, "precise_bn.md")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cells = [line.strip().strip("|").split("|") for line in f
             if line.startswith(f"| {name} |")]
  return [float(c[3]) for c in cells]


def main():
  print("| initialiser (kernel and bias) | seed's test % | here: test %, "
        "stored BatchNorm statistics (per seed) | here: test %, precise "
        "statistics | here: train % |")
  print("|---|---|---|---|---|")
  for name, seed in SEED_ACCURACY.items():
    final = _final(name)
    if final is None:
      print(f"| {name} | {seed} | not run yet | | |")
      continue
    stored = [100 * r["val_accuracy"] for r in final]
    precise = _precise(name)
    print(f"| {name} | {seed} | {_mean_std(stored)} "
          f"({', '.join(f'{v:.2f}' for v in stored)}) | "
          f"{_mean_std(precise) if precise else '-'} | "
          f"{np.mean([100 * r['train_accuracy'] for r in final]):.2f} |")


if __name__ == "__main__":
  main()

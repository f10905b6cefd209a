"""The sweep studies' full-size tables (docs/studies/sweeps.md), assembled
from parts run one arm at a time.

A full-size sweep study (an arm is 2 seeds x 5 epochs x 50,000 images,
~55 min on the development VM's two cores; 10 or 8 arms) is longer than a
session, and a workdir does not dependably survive from one session to the
next. So each is run one arm per part, each part finishing inside a
session (docs/parts/run.sh trains a part, computes its precise BatchNorm
statistics and files its records in
docs/results/sweeps/<study dir>/<arm>/). A part is the same arm as in the
study's one program: its seeds' keys and data order do not depend on the
other arms (tests/test_sweeps.py checks model k of a vectorised sweep
against its arm alone). This prints the study page's table from
whatever parts are filed:

  python docs/parts/table.py inits    # docs/results/sweeps/sweep_inits_full/
  python docs/parts/table.py reg      # docs/results/sweeps/sweep_reg_full/
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from configs.sweeps import initializers, regularization  # noqa: E402
from jaxtransfer.core import workdir  # noqa: E402

# study -> (directory under docs/results/sweeps/, its arms in table order);
# run.sh maps the same names to their configs
STUDIES = {
    "inits": ("sweep_inits_full", list(initializers.SEED_ACCURACY)),
    "reg": ("sweep_reg_full", list(regularization.ARMS)),
}

# where run.sh files the parts, under the repository
RESULTS = os.path.join(ROOT, "docs", "results", "sweeps")


def _mean_std(values):
  return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def final_records(part_dir):
  """Final-epoch records of a part, one per seed (None if not filed)."""
  rows = [r for r in workdir.read_metrics(part_dir) if "val_accuracy" in r]
  if not rows:
    return None
  last = max(r["epoch"] for r in rows)
  return sorted((r for r in rows if r["epoch"] == last),
                key=lambda r: r["seed"])


def precise(part_dir, name):
  """Test % with precise BatchNorm statistics per seed, from precise_bn.md
  (None if it is not there)."""
  path = os.path.join(part_dir, "precise_bn.md")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    cells = [line.strip().strip("|").split("|") for line in f
             if line.startswith(f"| {name} |")]
  return [float(c[3]) for c in cells]


def _part(study, name, docs_dir):
  """(stored %, precise %, train %) per seed of a filed part, or None."""
  part_dir = os.path.join(docs_dir, STUDIES[study][0], name)
  final = final_records(part_dir)
  if final is None:
    return None
  return ([100 * r["val_accuracy"] for r in final],
          precise(part_dir, name),
          [100 * r["train_accuracy"] for r in final])


def _delta(values, reference):
  """Mean of values minus mean of reference, or "-" if either is missing."""
  if not values or not reference:
    return "-"
  return f"{np.mean(values) - np.mean(reference):+.1f}".replace("-", "−")


def rows(study, docs_dir=RESULTS):
  """The study page's table for a study, as lines of markdown."""
  names = STUDIES[study][1]
  parts = {name: _part(study, name, docs_dir) for name in names}
  if study == "inits":
    lines = ["| initialiser (kernel and bias) | write-up's test % | here: test %, "
             "stored BatchNorm statistics (per seed) | here: test %, precise "
             "statistics | here: train % |", "|---|---|---|---|---|"]
  else:
    lines = ["| penalty (arm) | test %, stored statistics (per seed) | Δ | "
             "test %, precise statistics | Δ | train % |",
             "|---|---|---|---|---|---|"]
  none = parts.get("none")
  for name in names:
    first = (f"| {name} | {initializers.SEED_ACCURACY[name]} |"
             if study == "inits" else f"| {name} |")
    if parts[name] is None:
      lines.append(first + " not run yet |" + " |" * (2 if study == "inits"
                                                       else 4))
      continue
    stored, precise_, train = parts[name]
    stored_cell = (f" {_mean_std(stored)} "
                   f"({', '.join(f'{v:.2f}' for v in stored)}) |")
    precise_cell = f" {_mean_std(precise_) if precise_ else '-'} |"
    train_cell = f" {np.mean(train):.2f} |"
    if study == "inits":
      lines.append(first + stored_cell + precise_cell + train_cell)
    else:
      ref_stored, ref_precise = (none[:2] if none and name != "none"
                                 else (None, None))
      d_stored = _delta(stored, ref_stored)
      d_precise = _delta(precise_, ref_precise)
      lines.append(first + stored_cell + f" {d_stored} |" + precise_cell
                   + f" {d_precise} |" + train_cell)
  return lines


def main(argv):
  if len(argv) != 2 or argv[1] not in STUDIES:
    sys.exit(f"usage: python docs/parts/table.py {{{'|'.join(STUDIES)}}}")
  print("\n".join(rows(argv[1])))


if __name__ == "__main__":
  main(sys.argv)

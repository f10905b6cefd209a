"""K-fold cross-validation: config.validation='kfold', config.folds=K.

The training split (after classes, subsets and fractions) is dealt into K
folds, stratified: each class's examples are shuffled (a fixed seed, so
every run and seed of a study sees the same folds) and dealt round-robin,
so fold sizes differ by at most one and every fold has each class's share.

  config.fold = i    one run: trains on the other folds, validates on fold i
  config.fold = -1   all K side by side in one program (num_seeds must be
                     1): model k trains on the folds but k and validates on
                     fold k, seeded config.seed + k. The folds differ only
                     in which examples they index: the images are on the
                     device once, each model's epoch order runs over its own
                     training indices (cut to the smallest fold complement,
                     so every model takes the same steps), and each model is
                     evaluated on its own fold.

val_split is then the test set (Dataset.test; --mode=eval reports it too).
Records carry `fold`; a study's report gives mean +/- std over folds and
marks the arm a cross-validation choice would pick (features/kfold.py).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxtransfer.core.errors import UserError
from jaxtransfer.data.arrays import Split

FOLD_SEED = 0x4B464F4C  # 'KFOL': the folds do not depend on config.seed


def enabled(config) -> bool:
  return config.get("validation", "test") == "kfold"


def side_by_side(config) -> bool:
  """All folds in one program (config.fold = -1)."""
  return enabled(config) and int(config.get("fold", -1)) < 0


def assign(labels: np.ndarray, folds: int) -> list[np.ndarray]:
  """Stratified folds: sorted example indices of each fold."""
  rng = np.random.default_rng([FOLD_SEED, folds])
  members: list[list[int]] = [[] for _ in range(folds)]
  start = 0
  for label in np.unique(labels):
    indices = rng.permutation(np.flatnonzero(labels == label))
    for position, index in enumerate(indices):
      members[(start + position) % folds].append(int(index))
    start += len(indices)  # the next class continues the deal
  return [np.sort(np.asarray(m, np.int64)) for m in members]


def check_counts(labels: np.ndarray, folds: int, class_names) -> None:
  """UserError unless every class has an example in every fold (before
  anything trains): a class with fewer examples than folds would leave
  folds without it, fewer examples than folds would leave a fold empty."""
  counts = np.bincount(labels, minlength=len(class_names))
  if counts.sum() < folds:
    raise UserError(f"config.folds={folds}: more folds than the "
                    f"{counts.sum()} training examples (a fold would be "
                    "empty)")
  fewest = int(np.argmin(counts))
  if counts[fewest] < folds:
    raise UserError(
        f"config.folds={folds}: class {class_names[fewest]!r} has only "
        f"{counts[fewest]} training examples, fewer than the folds (each fold "
        "holds every class's share); use fewer folds or more examples")


def split(dataset, config):
  """The Dataset a k-fold config trains on: with config.fold = i, train is
  the other folds and val fold i; with -1, train is the whole split, val
  fold 0 (for shapes and logs) and `folds` every fold's indices. The
  original validation split becomes `test`."""
  check_counts(dataset.train.labels, int(config.folds), dataset.class_names)
  folds = assign(dataset.train.labels, int(config.folds))
  take = lambda idx: Split(dataset.train.images[idx],
                                dataset.train.labels[idx])
  test = dataset.val if len(dataset.val) else dataset.test
  if side_by_side(config):
    return dataclasses.replace(
        dataset, val=take(folds[0]), test=test, folds=tuple(folds),
        val_name=f"folds of {config.folds} (train_split)")
  fold = int(config.fold)
  rest = np.sort(np.concatenate([f for i, f in enumerate(folds) if i != fold]))
  return dataclasses.replace(
      dataset, train=take(rest), val=take(folds[fold]), test=test,
      val_name=f"fold {fold} of {config.folds} (train_split)")


def train_indices(dataset) -> np.ndarray:
  """[K, L]: model k's training examples (every fold but k), each cut to
  L, the smallest complement, so the models take the same steps."""
  folds = dataset.folds
  rests = [np.sort(np.concatenate([f for i, f in enumerate(folds) if i != k]))
           for k in range(len(folds))]
  length = min(len(r) for r in rests)
  return np.stack([r[:length] for r in rests])


def map_orders(orders, indices):
  """Per-model permutations of range(L) [K, n] -> dataset indices [K, n]."""
  return jnp.take_along_axis(indices, orders, axis=1)

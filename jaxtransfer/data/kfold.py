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
marks the arm a cross-validation choice would pick (report_lines).
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

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


def split(dataset, config):
  """The Dataset a k-fold config trains on: with config.fold = i, train is
  the other folds and val fold i; with -1, train is the whole split, val
  fold 0 (for shapes and logs) and `folds` every fold's indices. The
  original validation split becomes `test`."""
  from jaxtransfer import data
  folds = assign(dataset.train.labels, int(config.folds))
  take = lambda idx: data.Split(dataset.train.images[idx],
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


def stacked_eval_set(dataset, batch_size: int, setup):
  """Every fold as its model's evaluation set: [K, batches, B, ...], padded
  (weight 0) to the largest fold."""
  from jaxtransfer import data
  from jaxtransfer.core import distributed
  from jaxtransfer.engine import steps
  sets = [steps.make_eval_set(data.Split(dataset.train.images[f],
                                         dataset.train.labels[f]),
                              batch_size, setup, place=False)
          for f in dataset.folds]
  batches = max(s.images.shape[0] for s in sets)

  def pad(x):
    extra = batches - x.shape[0]
    return np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)])

  put = lambda xs: distributed.put_replicated(np.stack([pad(x) for x in xs]),
                                              setup.replicated)
  return steps.EvalSet(put([s.images for s in sets]),
                       put([s.labels for s in sets]),
                       put([s.weights for s in sets]),
                       max(len(f) for f in dataset.folds))


def report_lines(ran: list[dict], summaries: dict) -> list[str]:
  """The cross-validation table of a study whose arms ran all folds: mean
  +/- std over folds of the final validation accuracy and loss, and the
  arm cross-validation picks (highest mean accuracy)."""
  rows = []
  for arm in ran:
    summary = summaries[arm["name"]]
    finals = [s for s in summary["seeds"]]
    accuracies = [s["final_val_accuracy"] for s in finals]
    losses = [s["final_val_loss"] for s in finals]
    if any(a is None for a in accuracies):
      continue
    rows.append((arm["name"], len(finals), np.mean(accuracies),
                 np.std(accuracies), np.mean(losses), np.std(losses)))
  if not rows:
    return []
  choice = max(rows, key=lambda r: r[2])[0]
  lines = ["", "## Cross-validation (final epoch, mean ± std over folds)", "",
           "| arm | folds | val accuracy | val loss | CV choice |",
           "|---|---|---|---|---|"]
  for name, folds, acc, acc_sd, loss, loss_sd in rows:
    lines.append(f"| {name} | {folds} | {acc:.4f} ± {acc_sd:.4f} | "
                 f"{loss:.4f} ± {loss_sd:.4f} | "
                 f"{'**chosen**' if name == choice else ''} |")
  best, runner_up = sorted(rows, key=lambda r: -r[2])[:2] if len(rows) > 1 \
      else (rows[0], None)
  if runner_up is not None:
    gap = best[2] - runner_up[2]
    spread = math.hypot(best[3], runner_up[3])
    lines += ["", f"Cross-validation picks **{best[0]}**: {gap:.4f} above "
              f"{runner_up[0]} in mean validation accuracy (fold spread "
              f"{spread:.4f}{'; within it' if gap <= spread else ''})."]
  return lines

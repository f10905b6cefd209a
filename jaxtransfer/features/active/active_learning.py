"""Active learning (seed 003): which images to label, chosen by the model.

  python -m jaxtransfer.main --config=configs/smalldata/active_learning.py --workdir=DIR

With `config.active.strategy` set, a run is a chain of rounds per seed. The
training split is the pool. Round 0 labels `active.initial` examples drawn at
random (seeded by the seed: every strategy starts from the same set, so
strategies compare paired). Each round trains an ordinary run on the labelled
examples, from the same initialisation (not warm-started from the previous
round), in <workdir>/seed_<s>/round_<k>/; then, until `active.budget` is
reached, it scores every unlabelled pool example in one jitted pass on the
device and labels the `active.query_size` highest-scoring ones:

  margin            smallest gap between the top two class probabilities
                    (the seed's "margin sampling")
  entropy           largest entropy of the predicted distribution
  least_confidence  smallest top probability
  random            uniform (the control)

Each round appends a line to <workdir>/rounds.jsonl: seed, round, labelled
count, validation accuracy and loss, the labelled indices (positions in the
training split as loaded: after class selection and train_subset) and the
queried ones. A killed chain resumes: finished rounds are read back from
rounds.jsonl, an unfinished round resumes from its checkpoint, a round
trained but not yet queried is queried again (the query is deterministic).
With the body frozen, the pool's body features are computed once per seed
and the rounds score only the head on them (the body does not change).

`jaxtransfer report DIR` plots validation accuracy against labelled-set size
per strategy, mean and min-max band over seeds (active_report.py).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtransfer import data
from jaxtransfer.core import (checkpoints, configlib, distributed, provenance,
                              registry, workdir as workdir_lib)
from jaxtransfer.engine import (experiment, initialization, steps, training,
                                validation)
from jaxtransfer.core.errors import UserError
from jaxtransfer.features.active import active_report
# rounds.jsonl is active_report.py's to read; active_learning.<name> too.
from jaxtransfer.features.active.active_report import ROUNDS_FILE, read_rounds



def _margin(probs, key):
  del key
  top2 = jax.lax.top_k(probs, 2)[0]
  return -(top2[:, 0] - top2[:, 1])


def _entropy(probs, key):
  del key
  return -jnp.sum(probs * jnp.log(jnp.clip(probs, 1e-30, 1.0)), axis=-1)


def _least_confidence(probs, key):
  del key
  return 1.0 - jnp.max(probs, axis=-1)


def _random(probs, key):
  return jax.random.uniform(key, probs.shape[:1])


# Strategy -> score(probabilities [N, C], key) -> [N]; the highest are labelled.
STRATEGIES: dict[str, Callable] = {
    "margin": _margin, "entropy": _entropy,
    "least_confidence": _least_confidence, "random": _random,
}


def enabled(config) -> bool:
  return bool(config.get("active", {}).get("strategy", ""))


def round_sizes(config) -> list[int]:
  """Labelled-set size at each round: initial, +query_size, ..., budget."""
  active = config.active
  sizes = [active.initial]
  while sizes[-1] < active.budget:
    sizes.append(min(sizes[-1] + active.query_size, active.budget))
  return sizes


def validate(config, pool_size: int | None = None) -> None:
  """One line naming the field for a setting that cannot work; with the
  pool size, also the ones that need it."""
  active = config.active
  if active.strategy not in STRATEGIES:
    raise UserError(f"config.active.strategy={active.strategy!r} is not one "
                    f"of {', '.join(STRATEGIES)} ('' turns active learning off)")
  for field in ("initial", "query_size", "budget"):
    if int(active[field]) < 1:
      raise UserError(f"config.active.{field}={active[field]}: must be at "
                      "least 1")
  if active.budget < active.initial:
    raise UserError(f"config.active.budget={active.budget} is smaller than the "
                    f"initial labelled set (config.active.initial="
                    f"{active.initial})")
  if config.task != "classifier":
    raise UserError(f"config.active.strategy={active.strategy!r} needs "
                    f"config.task='classifier', not {config.task!r}")
  if pool_size is None:
    return
  if active.initial > pool_size:
    raise UserError(f"config.active.initial={active.initial} is larger than "
                    f"the pool ({pool_size} training examples)")
  if active.budget > active.initial and active.query_size > pool_size - active.initial:
    raise UserError(
        f"config.active.query_size={active.query_size} is larger than the "
        f"unlabelled pool ({pool_size} training examples - "
        f"{active.initial} initially labelled = {pool_size - active.initial})")
  if active.budget > pool_size:
    raise UserError(f"config.active.budget={active.budget} is larger than the "
                    f"pool ({pool_size} training examples)")


def initial_indices(config, seed: int, pool_size: int) -> np.ndarray:
  """Round 0's labelled set: `initial` pool positions drawn by the seed."""
  rng = np.random.default_rng([seed, 0xAC71])
  return np.sort(rng.choice(pool_size, config.active.initial, replace=False))


# ---------------------------------------------------------------------------
# Scoring the pool on the device.

def _probabilities(setup, variables, batches, from_features: bool):
  """Softmax outputs of one model over padded batches [num_batches, B, ...]
  -> [num_batches * B, C]: from images (the whole model), or from cached
  body features (the head alone)."""
  present = {k: v for k, v in variables.items() if v}

  def one_batch(batch):
    if from_features:
      logits = setup.model.apply(present, batch, train=False,
                                 method="classify_features")
    else:
      inputs = data.to_model_input(data.to_unit_float(batch), setup.image_size,
                                   setup.mean, setup.std, setup.dtype,
                                   channels=setup.channels)
      logits = setup.model.apply(present, inputs, train=False)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  probs = jax.lax.map(one_batch, batches)
  return probs.reshape(-1, probs.shape[-1])


def query(setup, strategy: str, count: int, variables, batches, labelled_mask,
          key, from_features: bool = False):
  """(the `count` pool positions to label next, their scores), for one
  model: one pass over the whole pool (jit it: `make_query`).
  `labelled_mask` [N] marks the pool positions already labelled (never
  chosen); padding beyond N is never chosen."""
  probs = _probabilities(setup, variables, batches, from_features)
  scores = STRATEGIES[strategy](probs, key)[:labelled_mask.shape[0]]
  scores = jnp.where(labelled_mask, -jnp.inf, scores)
  top, chosen = jax.lax.top_k(scores, count)
  return chosen, top


def make_query(setup, strategy: str, count: int, from_features: bool):
  """query(...) jitted: (variables, batches, labelled_mask, key) -> (chosen,
  scores)."""
  return jax.jit(lambda variables, batches, mask, key: query(
      setup, strategy, count, variables, batches, mask, key, from_features))


# ---------------------------------------------------------------------------
# The chain.

def _append_round(workdir: str, record: dict[str, Any]) -> None:
  with open(os.path.join(workdir, ROUNDS_FILE), "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def _round_config(config, seed: int) -> ml_collections.ConfigDict:
  fields = configlib.to_dict(config)
  fields.pop("study", None)
  round_config = ml_collections.ConfigDict(fields)
  round_config.seed, round_config.num_seeds = seed, 1
  return round_config


def _subset(dataset: data.Dataset, indices: np.ndarray) -> data.Dataset:
  train = data.Split(dataset.train.images[indices], dataset.train.labels[indices])
  return dataclasses.replace(dataset, train=train)


def run(config, workdir: str, *, fresh: bool = False,
        dataset: data.Dataset | None = None,
        hooks: training.Hooks | None = None,
        invocation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
  """Runs (or resumes) every seed's chain; returns rounds.jsonl's records.
  `invocation`: the command line, for provenance.json."""
  validation.validate(config)
  validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  sizes = round_sizes(config)
  seeds = training.seeds_of(config)
  done = read_rounds(workdir) if not fresh else []
  if len(done) >= len(sizes) * len(seeds):
    return done
  dataset = dataset or data.load_dataset(config)
  validate(config, len(dataset.train))
  # --fresh: rounds.jsonl and every seed's rounds go to archive/ too.
  with workdir_lib.claim(workdir, config_dict, fresh, whole=True):
    workdir_lib.record_config(workdir, config_dict)
    provenance.record(workdir, invocation)
    config = _pretrain_once(config, workdir, dataset)
    for seed in seeds:
      _chain(config, workdir, seed, sizes, dataset, hooks)
  records = read_rounds(workdir)
  if distributed.is_primary():
    logging.info("Report: %s", active_report.write_report(workdir))
  return records


def _pretrain_once(config, workdir: str, dataset: data.Dataset):
  """init='autoencoder' without ae_checkpoint: one autoencoder for every
  round and seed, pre-trained on the whole pool (its images, no labels)."""
  if config.init != "autoencoder" or config.ae_checkpoint:
    return config
  ae_dir = initialization.autoencoder_run_dir(config, workdir)
  training.train_and_evaluate(experiment.pretrain_config(config), ae_dir,
                              name="autoencoder", dataset=dataset)
  config = ml_collections.ConfigDict(configlib.to_dict(config))
  config.ae_checkpoint = ae_dir
  return config


def _chain(config, workdir: str, seed: int, sizes: list[int],
           dataset: data.Dataset, hooks) -> None:
  records = {r["round"]: r for r in read_rounds(workdir) if r["seed"] == seed}
  round_config = _round_config(config, seed)
  labelled = initial_indices(config, seed, len(dataset.train))
  scorer = _PoolScorer(round_config, dataset)
  for k, size in enumerate(sizes):
    if k in records:
      labelled = np.sort(np.concatenate(
          [records[k]["labelled_indices"], records[k]["queried_indices"]])
          ).astype(np.int64)
      continue
    assert len(labelled) == size, (len(labelled), size)
    round_dir = os.path.join(workdir, f"seed_{seed}", f"round_{k:02d}")
    name = f"{config.active.strategy} seed {seed} round {k} ({size} labelled)"
    started = time.perf_counter()
    history = training.train_and_evaluate(
        round_config, round_dir, name=name, dataset=_subset(dataset, labelled),
        hooks=hooks)
    train_seconds = time.perf_counter() - started
    final = history[-1]
    queried, query_seconds = np.zeros(0, np.int64), 0.0
    if k + 1 < len(sizes):
      started = time.perf_counter()
      queried = scorer.query(round_dir, labelled, sizes[k + 1] - size, k)
      query_seconds = time.perf_counter() - started
    counts = np.bincount(dataset.train.labels[queried],
                         minlength=dataset.num_classes)
    record = {
        "seed": seed, "round": k, "strategy": config.active.strategy,
        "labelled": int(size), "epochs": final["epoch"],
        "val_accuracy": final["val_accuracy"], "val_loss": final["val_loss"],
        "train_accuracy": final["train_accuracy"],
        "train_seconds": round(train_seconds, 2),
        "query_seconds": round(query_seconds, 2),
        "pool_size": len(dataset.train),
        "labelled_indices": [int(i) for i in labelled],
        "queried_indices": [int(i) for i in queried],
        "queried_per_class": {name: int(c) for name, c in
                              zip(dataset.class_names, counts)},
    }
    if distributed.is_primary():
      _append_round(workdir, record)
    logging.info("%s: val_accuracy %.4f; queried %d in %.1f s", name,
                 record["val_accuracy"], len(queried), query_seconds)
    labelled = np.sort(np.concatenate([labelled, queried]))


class _PoolScorer:
  """Scores one chain's pool with each round's model: the setup, the pool on
  the device and the compiled query are made once; with a frozen body, the
  pool's body features too (every round starts from the same body)."""

  def __init__(self, config, dataset: data.Dataset):
    self.config, self.dataset = config, dataset
    self.setup = None

  def _prepare(self, round_dir: str, variables) -> None:
    self.setup, _ = training.build_setup(
        self.config, self.dataset.num_classes, 1, self.config.batch_size,
        pixel_stats=workdir_lib.run_pixel_stats(round_dir))
    pool = training.make_eval_set(self.dataset.train,
                                  self.config.eval_batch_size, self.setup)
    self.batches = pool.images
    if self.setup.feature_cache:
      extract = jax.jit(functools.partial(steps.body_features, self.setup))
      self.batches = extract(variables, pool.images)
    self.compiled: dict[int, Callable] = {}

  def query(self, round_dir: str, labelled, count: int, round_index: int):
    """The next `count` pool positions, by the round's trained model (its
    latest checkpoint)."""
    params, batch_stats, _ = checkpoints.load_variables(round_dir)
    first = lambda tree: jax.tree.map(lambda a: jnp.asarray(a)[0], tree or {})
    variables = {"params": first(params), "batch_stats": first(batch_stats)}
    if self.setup is None:
      self._prepare(round_dir, variables)
    if count not in self.compiled:
      self.compiled[count] = make_query(self.setup, self.config.active.strategy,
                                        count, self.setup.feature_cache)
    mask = np.zeros(len(self.dataset.train), bool)
    mask[labelled] = True
    key = jax.random.fold_in(jax.random.key(self.config.seed), round_index)
    chosen, _ = self.compiled[count](variables, self.batches, jnp.asarray(mask),
                                     key)
    return np.sort(np.asarray(jax.device_get(chosen)).astype(np.int64))


# ---------------------------------------------------------------------------
# What this feature adds to the lab (core/registry.py).

def _total_epochs(config) -> int:
  """Epochs in all: every round of every seed."""
  return config.num_epochs * config.num_seeds * len(round_sizes(config))


def _epochs_done(config, run_dir: str) -> int:
  return len(read_rounds(run_dir)) * config.num_epochs


def _check(config) -> None:
  if enabled(config):
    validate(config)


registry.config_check(_check)
for _field, _value in (("active.strategy", ""), ("active.initial", 750),
                       ("active.query_size", 50), ("active.budget", 1000)):
  registry.default(_field, _value)
registry.run_kind(registry.RunKind(
    name="active", title="active learning", enabled=enabled,
    switch=lambda config: f"config.active.strategy={config.active.strategy!r}",
    train=run, final_run=None, total_epochs=_total_epochs,
    epochs_done=_epochs_done,
    prepare=lambda config, dataset: validate(config, len(dataset.train))))

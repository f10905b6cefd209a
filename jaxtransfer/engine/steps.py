"""The train state and the jitted steps: what runs on the device (the
Setup they close over is built by run_setup.py).

A step is written for one model and mapped over a leading seed axis (`vmap`
or unrolled, `over_seeds`): the parameters, BatchNorm statistics, optimizer
state, metric sums and PRNG keys of every seed are stacked; the uint8 data on
the device is shared.

Everything a training step does happens on the device: gather the batch by
index from the device-resident uint8 images, augment, resize, adapt the
channels, normalise (with `config.adversarial`: replace the augmented batch
by its attack on the current model), forward (dropout and BatchNorm in
training mode),
backward, the optimizer, and add the batch's loss/accuracy into running sums
kept in the train state.

Determinism: the data order of epoch e is a permutation drawn from
fold_in(data_key, e); step s augments with fold_in(aug_key, s) and draws its
dropout masks from fold_in(fold_in(aug_key, s), 1) and, with adversarial
training, the attack's random start from fold_in(fold_in(aug_key, s), 2),
all from the model's seed. A resumed run therefore continues the same trajectory, and seed k of a
vectorised run is the run of seed k alone.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer import data
from jaxtransfer.core import distributed
from jaxtransfer.data import augment
from jaxtransfer.engine import attacks, freezing, variants, tasks
# The state, keys, Setup and forward pass are state.py's; steps.<name>
# stays theirs too.
from jaxtransfer.engine.state import (RunKeys, Setup, TrainState,  # noqa: F401
                                      forward, make_mesh, over_seeds,
                                      resolve_seed_parallelism, seeds_of)


def _prepare_inputs(setup: Setup, examples, key=None, views=None):
  """A batch of examples -> model input: uint8 images are scaled, augmented
  (only when a key is given; `views`: seed 001's view of each), resized,
  adapted to the model's channels and normalised; cached body features are
  used as they are."""
  if setup.feature_cache:
    return examples
  images = data.to_unit_float(examples)
  if key is not None:
    images = augment.augment_batch(key, images, setup.augment, views)
  return data.to_model_input(images, setup.image_size, setup.mean, setup.std,
                             setup.dtype, channels=setup.channels)


def train_step(setup: Setup, hyper: dict, state: TrainState, examples,
               labels, order, augment_key) -> TrainState:
  """One optimizer step of one model on batch `state.step % steps_per_epoch`
  of its `order`, with the model's step scalars `hyper`. The loop runs it
  over the stacked models (`make_train_step`).
  `examples` are the uint8 images (shared by the seeds) or, with the feature
  cache, this model's body features. With six views per epoch the order runs
  over 6N: index i is view i % 6 of image i // 6."""
  position = state.step % setup.steps_per_epoch
  indices = jax.lax.dynamic_slice_in_dim(order, position * setup.batch_size,
                                         setup.batch_size)
  indices, views = epoch_sources(indices, setup.augment.views_per_epoch)
  batch_images = jax.lax.with_sharding_constraint(examples[indices],
                                                  setup.batch_sharded)
  batch_labels = jax.lax.with_sharding_constraint(labels[indices],
                                                  setup.batch_sharded)
  step_key = jax.random.fold_in(augment_key, state.step)
  if setup.adversarial is None:
    inputs = _prepare_inputs(setup, batch_images, step_key, views)
  else:  # the augmented batch's attack (its random start: fold_in(step_key, 2))
    inputs = attacks.adversarial_inputs(setup, state.params, state.batch_stats,
                                        batch_images, batch_labels, step_key)
  weights = jnp.ones(batch_labels.shape, jnp.float32)

  def loss_fn(params):
    outputs, batch_stats = forward(setup, params, state.batch_stats, inputs,
                                   train=True,
                                   dropout_key=jax.random.fold_in(step_key, 1))
    loss, sums = setup.task.with_hyper(hyper).loss_and_sums(
        outputs, inputs, batch_labels, weights)
    if setup.regularizer is not None:
      penalty = setup.regularizer(params, hyper=hyper)
      sums = {**sums, "regularization_sum": penalty * sums["count"]}
      loss = loss + penalty
    return loss, (sums, batch_stats)

  (loss, (sums, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  # Frozen gradients are zeroed by the optimizer's set_to_zero branch before
  # any stateful transform sees them, and never leave this function: XLA
  # drops their backward pass.
  updates, opt_state = setup.make_tx(hyper).update(grads, state.opt_state,
                                                   state.params)
  params = freezing.apply_updates(state.params, updates, setup.trainable)
  epoch_start = position == 0
  metric_sums = jax.tree.map(
      lambda running, new: jnp.where(epoch_start, 0.0, running) + new,
      state.metric_sums, sums)
  nonfinite_step = jnp.where(
      (state.nonfinite_step < 0) & ~jnp.isfinite(loss), state.step,
      state.nonfinite_step)
  return state.replace(step=state.step + 1, params=params,
                       batch_stats=batch_stats, opt_state=opt_state,
                       metric_sums=metric_sums, nonfinite_step=nonfinite_step)


def _examples_axis(setup: Setup):
  """Images are shared by the seeds; cached features are each seed's own."""
  return 0 if setup.feature_cache else None


def make_train_step(setup: Setup):
  """train_step over stacked models: per-model state, order, key and step
  scalars; shared data."""
  return variants.over_models(functools.partial(train_step, setup),
                            (0, _examples_axis(setup), None, 0, 0),
                            setup.seed_parallelism, setup.hyper)


def evaluate_batches(setup: Setup, hyper: dict, variables, images, labels,
                     weights):
  """One model's metric sums over a padded evaluation set [num_batches, B, ...];
  `variables` = {'params': ..., 'batch_stats': ...} (inference mode)."""

  def body(totals, batch):
    batch_images, batch_labels, batch_weights = (
        jax.lax.with_sharding_constraint(x, setup.batch_sharded) for x in batch)
    inputs = _prepare_inputs(setup, batch_images)
    outputs, _ = forward(setup, variables["params"], variables["batch_stats"],
                         inputs)
    _, sums = setup.task.with_hyper(hyper).loss_and_sums(
        outputs, inputs, batch_labels, batch_weights)
    return jax.tree.map(jnp.add, totals, sums), None

  totals, _ = jax.lax.scan(body, tasks.zero_sums(setup.task),
                           (images, labels, weights))
  return totals


def model_variables(state: TrainState) -> dict[str, Any]:
  """What evaluation and feature extraction need of a (stacked) state."""
  return {"params": state.params, "batch_stats": state.batch_stats}


def make_evaluator(setup: Setup):
  """jit(over_seeds(evaluate_batches)) over stacked variables: training and
  --mode=eval share it, so a restored checkpoint evaluates to exactly the
  logged numbers."""
  axis = 0 if setup.per_model_eval else None
  return jax.jit(variants.over_models(
      functools.partial(evaluate_batches, setup),
      (0, 0 if setup.per_model_eval else _examples_axis(setup), axis, axis),
      setup.seed_parallelism, setup.hyper))


def body_features(setup: Setup, variables, images):
  """One model's body features of padded images [num_batches, B, ...] ->
  [num_batches, B, ...] in the compute dtype: the frozen body's output
  (inference mode), computed once for the feature cache."""
  def one_batch(batch):
    batch = jax.lax.with_sharding_constraint(batch, setup.batch_sharded)
    inputs = data.to_model_input(data.to_unit_float(batch), setup.image_size,
                                 setup.mean, setup.std, setup.dtype,
                                 channels=setup.channels)
    present = {k: v for k, v in variables.items() if v}
    return setup.model.apply(present, inputs, train=False, method="features")
  return jax.lax.map(one_batch, images)


def make_feature_extractor(setup: Setup):
  return jax.jit(over_seeds(functools.partial(body_features, setup), (0, None),
                            setup.seed_parallelism))


def epoch_order(data_key, epoch, num_examples: int, length: int):
  """The example order of an epoch: a permutation, cut to whole batches."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch),
                                num_examples)[:length]


def epoch_sources(indices, views_per_epoch: int):
  """Indices into an epoch's examples -> (image indices, views or None):
  with V views per image (seed 001's six), example i is view i % V of image
  i // V; with V = 1 the indices are the images'."""
  if views_per_epoch == 1:
    return indices, None
  return indices // views_per_epoch, indices % views_per_epoch


@dataclasses.dataclass
class EvalSet:
  """A split padded to whole evaluation batches and placed on the device."""
  images: jax.Array  # [num_batches, B, H, W, C] uint8
  labels: jax.Array
  weights: jax.Array  # 0 for padding
  size: int


def make_eval_set(split: data.Split, batch_size: int, setup: Setup,
                  place: bool = True) -> EvalSet:
  """The split in whole evaluation batches, on the device (place=False:
  numpy arrays, for the caller to stack)."""
  # Whole batches per device: round the batch up to a multiple of the device
  # count (the padding has weight 0, so the sums do not change).
  devices = setup.mesh.devices.size
  batch_size = -(-batch_size // devices) * devices
  num_batches = math.ceil(len(split) / batch_size)
  pad = num_batches * batch_size - len(split)
  images = np.concatenate(
      [split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
  labels = np.concatenate([split.labels, np.zeros(pad, np.int32)])
  weights = np.concatenate([np.ones(len(split), np.float32),
                            np.zeros(pad, np.float32)])
  shape = lambda x: x.reshape(num_batches, batch_size, *x.shape[1:])
  put = lambda x: (distributed.put_replicated(shape(x), setup.replicated)
                   if place else shape(x))
  return EvalSet(put(images), put(labels), put(weights), len(split))


def stacked_eval_set(dataset, batch_size: int, setup):
  """Every fold as its model's evaluation set: [K, batches, B, ...], padded
  (weight 0) to the largest fold."""
  sets = [make_eval_set(data.Split(dataset.train.images[f],
                                   dataset.train.labels[f]),
                        batch_size, setup, place=False)
          for f in dataset.folds]
  batches = max(s.images.shape[0] for s in sets)

  def pad(x):
    extra = batches - x.shape[0]
    return np.concatenate([x, np.zeros((extra, *x.shape[1:]), x.dtype)])

  put = lambda xs: distributed.put_replicated(np.stack([pad(x) for x in xs]),
                                              setup.replicated)
  return EvalSet(put([s.images for s in sets]),
                       put([s.labels for s in sets]),
                       put([s.weights for s in sets]),
                       max(len(f) for f in dataset.folds))


def seed_records(task, sums, prefix: str) -> list[dict[str, float]]:
  """Per-seed summaries of stacked metric sums."""
  if np.ndim(sums["count"]) == 0:  # one model's, not stacked over seeds
    sums = jax.tree.map(lambda value: np.asarray(value)[None], sums)
  count = len(sums["count"])
  return [{f"{prefix}_{k}": v for k, v in task.summarize(
      {name: value[i] for name, value in sums.items()}).items()}
          for i in range(count)]

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
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax

from jaxtransfer import data
from jaxtransfer.core import distributed
from jaxtransfer.data import augment
from jaxtransfer.engine import attacks, freezing, sweeps, tasks
from jaxtransfer.core.errors import UserError


@flax.struct.dataclass
class TrainState:
  """One model's state; the loop holds a stack of them (leading seed axis)."""
  step: jax.Array  # global step (int32); epoch = step // steps_per_epoch
  params: Any
  batch_stats: Any  # BatchNorm running statistics ({} for models without)
  opt_state: Any
  metric_sums: dict[str, jax.Array]  # sums over the current epoch's steps
  nonfinite_step: jax.Array  # first step whose loss was not finite, or -1


@dataclasses.dataclass(frozen=True)
class RunKeys:
  """All randomness of a run: one key per seed for each use, stacked."""
  init: jax.Array
  data: jax.Array
  augment: jax.Array

  @classmethod
  def from_seeds(cls, seeds, sharding=None) -> "RunKeys":
    """Keys for each seed; with a sharding, as global arrays (needed when the
    run spans several processes)."""
    def make():
      split = jnp.stack([jax.random.split(jax.random.key(s), 3) for s in seeds])
      return split[:, 0], split[:, 1], split[:, 2]
    if sharding is not None:
      make = jax.jit(make, out_shardings=sharding)
    return cls(*make())


def seeds_of(config) -> list[int]:
  """The seed of every model on the run's model axis: config.seed + k, or
  each variant's seeds in turn (sweeps.py)."""
  return sweeps.model_seeds(config)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the step functions close over: static for the whole run."""
  model: Any
  task: Any
  tx: optax.GradientTransformation
  schedule: Callable[[Any], Any]  # step -> learning rate
  trainable: Any  # pytree of Python bools, like one model's params
  augment: augment.AugmentOptions
  image_size: int
  channels: int  # what the model takes; stored images are adapted to it
  mean: tuple[float, ...]
  std: tuple[float, ...]
  dtype: Any
  batch_size: int
  steps_per_epoch: int
  mesh: jax.sharding.Mesh
  seed_parallelism: str = "vmap"  # resolved: 'vmap' or 'unroll'
  # The body is frozen and nothing is augmented: the steps see body features
  # computed once (per seed), not images, and run the head alone.
  feature_cache: bool = False
  # Keras-style penalty on the weights (None: no regulariser configured).
  regularizer: Callable[[Any], jax.Array] | None = None
  # config.adversarial parsed: each training batch is replaced by this
  # attack on the current model (attacks.adversarial_inputs); None: off.
  adversarial: attacks.Attack | None = None
  # Every model's step scalars (learning rate, weight decay, regulariser
  # strengths, loss weights: sweeps.Hyper) and the optimizer built from one
  # model's (`tx` is model 0's, for the state's structure).
  hyper: sweeps.Hyper | None = None
  make_tx: Callable[[dict], optax.GradientTransformation] | None = None
  # K-fold with all folds side by side: each model's evaluation set is its
  # own fold (stacked on the model axis: kfold.stacked_eval_set).
  per_model_eval: bool = False

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharded(self) -> NamedSharding:
    return NamedSharding(self.mesh, P("data"))


def make_mesh(batch_size: int, what: str = "batch_size") -> jax.sharding.Mesh:
  """A 1-D mesh over all devices; the batch is split along its 'data' axis."""
  devices = jax.devices()
  if batch_size % len(devices):
    raise UserError(f"config.{what}={batch_size} does not divide by the "
                    f"{len(devices)} devices")
  return jax.sharding.Mesh(np.asarray(devices), ("data",))


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


def forward(setup: Setup, params, batch_stats, inputs, train: bool = False,
            dropout_key=None):
  """(outputs, new batch_stats): the model on its inputs (the head alone on
  cached features). In training mode BatchNorm uses and updates the batch's
  statistics (frozen BatchNorm layers excepted) and dropout is on."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  kwargs = {"method": "classify_features"} if setup.feature_cache else {}
  if train and dropout_key is not None:
    kwargs["rngs"] = {"dropout": dropout_key}
  if train and batch_stats:
    outputs, updated = setup.model.apply(variables, inputs, train=True,
                                         mutable=["batch_stats"], **kwargs)
    return outputs, updated["batch_stats"]
  return setup.model.apply(variables, inputs, train=train, **kwargs), batch_stats


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


def resolve_seed_parallelism(choice: str) -> str:
  """'auto': 'vmap' on accelerators; 'unroll' on the CPU, where XLA lowers a
  vmapped convolution with per-seed kernels to a grouped convolution that
  runs ~3.7x slower than separate ones (BENCHMARKS.md)."""
  if choice != "auto":
    return choice
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def over_seeds(fn: Callable, in_axes: tuple, strategy: str) -> Callable:
  """fn for one model -> fn over a leading seed axis (arguments with axis 0).

  'vmap' batches the models into one set of kernels; 'unroll' traces fn once
  per seed into the same program. Both give one compiled program and the
  same results as each seed run alone.
  """
  if strategy == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def unrolled(*args):
    num_seeds = {jax.tree.leaves(a)[0].shape[0]
                 for a, axis in zip(args, in_axes) if axis == 0}.pop()
    outputs = [
        fn(*(jax.tree.map(lambda x, i=i: x[i], a) if axis == 0 else a
             for a, axis in zip(args, in_axes)))
        for i in range(num_seeds)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)

  return unrolled


def _examples_axis(setup: Setup):
  """Images are shared by the seeds; cached features are each seed's own."""
  return 0 if setup.feature_cache else None


def make_train_step(setup: Setup):
  """train_step over stacked models: per-model state, order, key and step
  scalars; shared data."""
  return sweeps.over_models(functools.partial(train_step, setup),
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
  return jax.jit(sweeps.over_models(
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


def seed_records(task, sums, prefix: str) -> list[dict[str, float]]:
  """Per-seed summaries of stacked metric sums."""
  if np.ndim(sums["count"]) == 0:  # one model's, not stacked over seeds
    sums = jax.tree.map(lambda value: np.asarray(value)[None], sums)
  count = len(sums["count"])
  return [{f"{prefix}_{k}": v for k, v in task.summarize(
      {name: value[i] for name, value in sums.items()}).items()}
          for i in range(count)]

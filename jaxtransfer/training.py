"""The training loop: one run of one task in one workdir, resumable.

`train_and_evaluate(config, workdir)` is the whole program, as in flax's
examples: it reads the data once, puts it on the device, restores the latest
checkpoint or initialises fresh parameters, and runs epochs of jitted steps.

Everything a step does happens on the device: gather the batch by index from
the device-resident uint8 images, augment, upsample, normalise, forward,
backward, Adam, and add the batch's loss/accuracy into running sums kept in
the train state. The host only dispatches steps, fetches the sums once per
epoch (and the running loss every `log_every_steps` for the progress bar),
evaluates, checkpoints and writes a line to metrics.jsonl.

Determinism: the data order of epoch e is a permutation drawn from
fold_in(data_key, e) and the augmentation of step s from fold_in(aug_key, s),
all from config.seed. A resumed run therefore continues the same trajectory.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

from absl import logging
import flax
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax
import tqdm

from jaxtransfer import (augment, checkpoints, configlib, data, freezing,
                         initialization, models, tasks, workdir as workdir_lib)
from jaxtransfer.errors import UserError


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # global step (int32); epoch = step // steps_per_epoch
  params: Any
  opt_state: Any
  metric_sums: dict[str, jax.Array]  # sums over the current epoch's steps


@dataclasses.dataclass(frozen=True)
class RunKeys:
  """All randomness of a run, derived from config.seed."""
  init: jax.Array
  data: jax.Array
  augment: jax.Array

  @classmethod
  def from_seed(cls, seed: int) -> "RunKeys":
    init, data_key, augment_key = jax.random.split(jax.random.key(seed), 3)
    return cls(init, data_key, augment_key)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the step functions close over: static for the whole run."""
  model: Any
  task: Any
  tx: optax.GradientTransformation
  trainable: Any  # pytree of Python bools, like params
  augment: augment.AugmentOptions
  image_size: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  dtype: Any
  batch_size: int
  steps_per_epoch: int
  mesh: jax.sharding.Mesh

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


def _prepare_inputs(setup: Setup, images_uint8, key=None):
  """uint8 batch -> model input; augmentation only when a key is given."""
  images = data.to_unit_float(images_uint8)
  if key is not None:
    images = augment.augment_batch(key, images, setup.augment)
  return data.to_model_input(images, setup.image_size, setup.mean, setup.std,
                             setup.dtype)


def train_step(setup: Setup, state: TrainState, images, labels, order,
               augment_key) -> TrainState:
  """One optimizer step on batch `state.step % steps_per_epoch` of `order`."""
  position = state.step % setup.steps_per_epoch
  indices = jax.lax.dynamic_slice_in_dim(order, position * setup.batch_size,
                                         setup.batch_size)
  batch_images = jax.lax.with_sharding_constraint(images[indices],
                                                  setup.batch_sharded)
  batch_labels = jax.lax.with_sharding_constraint(labels[indices],
                                                  setup.batch_sharded)
  inputs = _prepare_inputs(setup, batch_images,
                           jax.random.fold_in(augment_key, state.step))
  weights = jnp.ones(batch_labels.shape, jnp.float32)

  def loss_fn(params):
    return setup.task.loss_and_sums(setup.model, params, inputs, batch_labels,
                                    weights)

  (_, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Frozen gradients are zeroed by the optimizer's set_to_zero branch before
  # Adam sees them, and never leave this function: XLA drops their backward.
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = freezing.apply_updates(state.params, updates, setup.trainable)
  epoch_start = position == 0
  metric_sums = jax.tree.map(
      lambda running, new: jnp.where(epoch_start, 0.0, running) + new,
      state.metric_sums, sums)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                       metric_sums=metric_sums)


def evaluate_batches(setup: Setup, params, images, labels, weights):
  """Metric sums over a padded evaluation set [num_batches, B, ...], one call."""

  def body(totals, batch):
    batch_images, batch_labels, batch_weights = (
        jax.lax.with_sharding_constraint(x, setup.batch_sharded) for x in batch)
    inputs = _prepare_inputs(setup, batch_images)
    _, sums = setup.task.loss_and_sums(setup.model, params, inputs,
                                       batch_labels, batch_weights)
    return jax.tree.map(jnp.add, totals, sums), None

  totals, _ = jax.lax.scan(body, tasks.zero_sums(setup.task),
                           (images, labels, weights))
  return totals


def make_evaluator(setup: Setup):
  """jit(evaluate_batches) for this setup; training and --mode=eval share it,
  so a restored checkpoint evaluates to exactly the logged numbers."""
  return jax.jit(functools.partial(evaluate_batches, setup))


def epoch_order(data_key, epoch, num_examples: int, length: int):
  """The example order of an epoch: a permutation, cut to whole batches."""
  return jax.random.permutation(jax.random.fold_in(data_key, epoch),
                                num_examples)[:length]


@dataclasses.dataclass
class EvalSet:
  """A split padded to whole evaluation batches and placed on the device."""
  images: jax.Array  # [num_batches, B, H, W, C] uint8
  labels: jax.Array
  weights: jax.Array  # 0 for padding
  size: int


def make_eval_set(split: data.Split, batch_size: int, setup: Setup) -> EvalSet:
  num_batches = math.ceil(len(split) / batch_size)
  pad = num_batches * batch_size - len(split)
  images = np.concatenate(
      [split.images, np.zeros((pad, *split.images.shape[1:]), np.uint8)])
  labels = np.concatenate([split.labels, np.zeros(pad, np.int32)])
  weights = np.concatenate([np.ones(len(split), np.float32),
                            np.zeros(pad, np.float32)])
  shape = lambda x: x.reshape(num_batches, batch_size, *x.shape[1:])
  put = lambda x: jax.device_put(shape(x), setup.replicated)
  return EvalSet(put(images), put(labels), put(weights), len(split))


def build_setup(config, num_classes: int, steps_per_epoch: int,
                batch_size: int, learning_rate: float) -> tuple[Setup, Any]:
  """The model, optimizer and static options; returns (setup, init_fn).

  init_fn(key) -> TrainState with fresh parameters (used under jax.eval_shape
  for restoring, and for real for a fresh run).
  """
  model = models.make_model(config, num_classes)
  task = tasks.make_task(config)
  mesh = make_mesh(batch_size)
  sample = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
  param_shapes = jax.eval_shape(
      lambda: model.init(jax.random.key(0), sample)["params"])
  rules = freezing.resolve_rules(config)
  trainable = freezing.trainable_mask(param_shapes, rules)
  tx = freezing.make_optimizer(optax.adam(learning_rate), trainable)
  setup = Setup(
      model=model, task=task, tx=tx, trainable=trainable,
      augment=augment.AugmentOptions.from_config(config.augment),
      image_size=config.image_size, mean=tuple(config.mean),
      std=tuple(config.std),
      dtype=jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32,
      batch_size=batch_size, steps_per_epoch=steps_per_epoch, mesh=mesh)

  def init_state(key, params=None) -> TrainState:
    if params is None:
      params = model.init(key, sample)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      metric_sums=tasks.zero_sums(task))

  return setup, init_state


def _summary_fields(task, sums, prefix: str) -> dict[str, float]:
  return {f"{prefix}_{k}": v for k, v in task.summarize(sums).items()}


class _Progress:
  """A tqdm bar over an epoch's steps showing the loss and images/s."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str,
               batch_size: int):
    self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                          disable=not enabled, dynamic_ncols=True,
                          leave=False, unit="step", mininterval=1.0)
    self._batch_size = batch_size
    self._start = time.perf_counter()
    self._done = 0

  def update(self, steps: int, running_loss: float | None = None) -> None:
    self._done += steps
    self._bar.update(steps)
    if running_loss is not None:
      rate = self._done * self._batch_size / max(
          time.perf_counter() - self._start, 1e-9)
      self._bar.set_postfix(loss=f"{running_loss:.4f}", img_s=f"{rate:,.0f}")

  def close(self) -> None:
    self._bar.close()


def train_and_evaluate(config, workdir: str, *, fresh: bool = False,
                       name: str = "classifier") -> list[dict[str, Any]]:
  """Trains the config's task in `workdir` (resuming if possible).

  Returns the full metrics history (one record per epoch).
  """
  configlib.validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.prepare(workdir, config_dict, fresh=fresh)
  store = checkpoints.RunCheckpoints(workdir, keep=config.keep_checkpoints)
  try:
    return _train(config, config_dict, workdir, store, name)
  finally:
    store.close()


def _train(config, config_dict, workdir, store, name) -> list[dict[str, Any]]:
  latest = store.latest_step()
  if latest is not None:
    history = store.restore_history(latest)
    if history and history[-1]["epoch"] >= config.num_epochs and (
        history[-1]["step"] == latest):
      logging.info("%s: %s already holds %d epochs; nothing to train.", name,
                   workdir, history[-1]["epoch"])
      workdir_lib.sync_metrics(workdir, history)
      return history

  dataset = data.load_dataset(config)
  steps_per_epoch = len(dataset.train) // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"config.batch_size={config.batch_size} is larger than the "
                    f"{len(dataset.train)} training examples")
  setup, init_state = build_setup(config, dataset.num_classes, steps_per_epoch,
                                  config.batch_size, config.learning_rate)
  keys = RunKeys.from_seed(config.seed)
  abstract_state = jax.eval_shape(init_state, keys.init)
  abstract_state = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=setup.replicated),
      abstract_state)

  if latest is None:
    pretrained = initialization.load_pretrained(config, workdir)
    params = None
    if pretrained is not None:
      loaded, source = pretrained
      fresh_params = jax.device_get(
          jax.jit(lambda k: init_state(k).params)(keys.init))
      params = initialization.merge_pretrained(fresh_params, loaded, source)
      logging.info("%s: body initialised from %s", name, source)
    state = jax.jit(init_state, out_shardings=setup.replicated)(keys.init, params)
    history = []
    logging.info("%s: starting from scratch in %s (init=%s)", name, workdir,
                 config.init)
  else:
    # Resume: the checkpoint holds every weight, head included; no
    # initialisation path runs on top of it.
    state, history = store.restore(latest, abstract_state)
    logging.info("%s: resumed %s from step %d", name, workdir, latest)
  workdir_lib.sync_metrics(workdir, history)

  trainable_count, total_count = freezing.count_parameters(state.params,
                                                           setup.trainable)
  logging.info("%s: %d of %d parameters trainable (rules %s)", name,
               trainable_count, total_count, freezing.resolve_rules(config))

  images = jax.device_put(dataset.train.images, setup.replicated)
  labels = jax.device_put(dataset.train.labels, setup.replicated)
  eval_set = make_eval_set(dataset.val, config.eval_batch_size, setup)
  order_length = steps_per_epoch * config.batch_size
  make_order = jax.jit(functools.partial(epoch_order,
                                         num_examples=len(dataset.train),
                                         length=order_length),
                       out_shardings=setup.replicated)

  compile_start = time.perf_counter()
  step_fn = jax.jit(functools.partial(train_step, setup), donate_argnums=0,
                    out_shardings=setup.replicated).lower(
                        state, images, labels, make_order(keys.data, 0),
                        keys.augment).compile()
  eval_fn = make_evaluator(setup).lower(
      state.params, eval_set.images, eval_set.labels, eval_set.weights).compile()
  compile_seconds = time.perf_counter() - compile_start
  logging.info("%s: compiled the train and eval steps in %.1f s", name,
               compile_seconds)

  start_step = int(state.step)
  for epoch in range(start_step // steps_per_epoch, config.num_epochs):
    first = max(start_step - epoch * steps_per_epoch, 0)  # >0: resumed mid-epoch
    order = make_order(keys.data, epoch)
    progress = _Progress(config.progress_bar, steps_per_epoch, first,
                         f"{name} epoch {epoch + 1}/{config.num_epochs}",
                         config.batch_size)
    epoch_start = time.perf_counter()
    reported = first
    for position in range(first, steps_per_epoch):
      state = step_fn(state, images, labels, order, keys.augment)
      done = position + 1
      if done % config.log_every_steps == 0 or done == steps_per_epoch:
        # Fetching the running loss waits for this step: the only sync in an
        # epoch, every log_every_steps steps.
        running = float(state.metric_sums["loss_sum"]) / max(
            float(state.metric_sums["count"]), 1.0)
        progress.update(done - reported, running)
        reported = done
    train_sums = jax.device_get(state.metric_sums)
    epoch_seconds = time.perf_counter() - epoch_start
    progress.close()

    eval_start = time.perf_counter()
    val_sums = jax.device_get(eval_fn(state.params, eval_set.images,
                                      eval_set.labels, eval_set.weights))
    eval_seconds = time.perf_counter() - eval_start

    steps_run = steps_per_epoch - first
    record = {
        "epoch": epoch + 1,
        "step": int(state.step),
        **_summary_fields(setup.task, train_sums, "train"),
        **_summary_fields(setup.task, val_sums, "val"),
        "epoch_seconds": round(epoch_seconds, 4),
        "eval_seconds": round(eval_seconds, 4),
        "compile_seconds": round(compile_seconds, 4),
        "train_images_per_second": round(
            steps_run * config.batch_size / epoch_seconds, 2),
        "trainable_parameters": trainable_count,
        "steps_in_this_process": steps_run,
    }
    if not all(math.isfinite(v) for v in record.values()
               if isinstance(v, float)):
      raise UserError(
          f"{name}: non-finite metrics at epoch {epoch + 1} (step "
          f"{int(state.step)}): {record}. The last good checkpoint "
          f"({store.latest_step()}) is kept; lower the learning rate?")
    history.append(record)
    store.save(record["step"], state, history, config_dict, record["val_loss"])
    workdir_lib.append_metrics(workdir, record)
    logging.info("%s epoch %d/%d: %s", name, epoch + 1, config.num_epochs,
                 ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items() if k != "epoch"))
  return history

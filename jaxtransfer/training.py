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

Seeds: a run trains `config.num_seeds` models (seeds config.seed,
config.seed + 1, ...) in one compiled program: `train_step` is written for one
model and `jax.vmap`ped over a leading seed axis of the parameters, optimizer
state, metric sums and PRNG keys; the data on the device is shared. Every
array in the state has that axis, also for a single seed (size 1).

Determinism: the data order of epoch e is a permutation drawn from
fold_in(data_key, e) and the augmentation of step s from fold_in(aug_key, s),
all from the model's seed. A resumed run therefore continues the same
trajectory, and seed k of a vectorised run is the run of seed k alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import threading
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

from jaxtransfer import (augment, checkpoints, configlib, data, distributed,
                         freezing, initialization, models, tasks,
                         tensorboard_events, workdir as workdir_lib)
from jaxtransfer.errors import UserError, brief


@flax.struct.dataclass
class TrainState:
  """One model's state; the loop holds a stack of them (leading seed axis)."""
  step: jax.Array  # global step (int32); epoch = step // steps_per_epoch
  params: Any
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
  return [config.seed + k for k in range(config.num_seeds)]


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the step functions close over: static for the whole run."""
  model: Any
  task: Any
  tx: optax.GradientTransformation
  trainable: Any  # pytree of Python bools, like one model's params
  augment: augment.AugmentOptions
  image_size: int
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


def _prepare_inputs(setup: Setup, examples, key=None):
  """A batch of examples -> model input: uint8 images are scaled, augmented
  (only when a key is given), upsampled and normalised; cached body features
  are used as they are."""
  if setup.feature_cache:
    return examples
  images = data.to_unit_float(examples)
  if key is not None:
    images = augment.augment_batch(key, images, setup.augment)
  return data.to_model_input(images, setup.image_size, setup.mean, setup.std,
                             setup.dtype)


def _apply(setup: Setup, params, inputs):
  """The model's output; with the feature cache, the head's alone."""
  if setup.feature_cache:
    return setup.model.apply({"params": params}, inputs,
                             method="classify_features")
  return setup.model.apply({"params": params}, inputs)


def train_step(setup: Setup, state: TrainState, examples, labels, order,
               augment_key) -> TrainState:
  """One optimizer step of one model on batch `state.step % steps_per_epoch`
  of its `order`. The loop runs it over stacked seeds (`make_train_step`).
  `examples` are the uint8 images (shared by the seeds) or, with the feature
  cache, this model's body features."""
  position = state.step % setup.steps_per_epoch
  indices = jax.lax.dynamic_slice_in_dim(order, position * setup.batch_size,
                                         setup.batch_size)
  batch_images = jax.lax.with_sharding_constraint(examples[indices],
                                                  setup.batch_sharded)
  batch_labels = jax.lax.with_sharding_constraint(labels[indices],
                                                  setup.batch_sharded)
  inputs = _prepare_inputs(setup, batch_images,
                           jax.random.fold_in(augment_key, state.step))
  weights = jnp.ones(batch_labels.shape, jnp.float32)

  def loss_fn(params):
    return setup.task.loss_and_sums(functools.partial(_apply, setup), params,
                                    inputs, batch_labels, weights)

  (loss, sums), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  # Frozen gradients are zeroed by the optimizer's set_to_zero branch before
  # Adam sees them, and never leave this function: XLA drops their backward.
  updates, opt_state = setup.tx.update(grads, state.opt_state, state.params)
  params = freezing.apply_updates(state.params, updates, setup.trainable)
  epoch_start = position == 0
  metric_sums = jax.tree.map(
      lambda running, new: jnp.where(epoch_start, 0.0, running) + new,
      state.metric_sums, sums)
  nonfinite_step = jnp.where(
      (state.nonfinite_step < 0) & ~jnp.isfinite(loss), state.step,
      state.nonfinite_step)
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
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
  """train_step over stacked models: per-seed state, order and key; shared data."""
  return over_seeds(functools.partial(train_step, setup),
                    (0, _examples_axis(setup), None, 0, 0),
                    setup.seed_parallelism)


def evaluate_batches(setup: Setup, params, images, labels, weights):
  """One model's metric sums over a padded evaluation set [num_batches, B, ...]."""

  def body(totals, batch):
    batch_images, batch_labels, batch_weights = (
        jax.lax.with_sharding_constraint(x, setup.batch_sharded) for x in batch)
    inputs = _prepare_inputs(setup, batch_images)
    _, sums = setup.task.loss_and_sums(functools.partial(_apply, setup), params,
                                       inputs, batch_labels, batch_weights)
    return jax.tree.map(jnp.add, totals, sums), None

  totals, _ = jax.lax.scan(body, tasks.zero_sums(setup.task),
                           (images, labels, weights))
  return totals


def make_evaluator(setup: Setup):
  """jit(vmap(evaluate_batches)) over stacked params: training and
  --mode=eval share it, so a restored checkpoint evaluates to exactly the
  logged numbers."""
  return jax.jit(over_seeds(functools.partial(evaluate_batches, setup),
                            (0, _examples_axis(setup), None, None),
                            setup.seed_parallelism))


def body_features(setup: Setup, params, images):
  """One model's body features of padded images [num_batches, B, ...] ->
  [num_batches, B, h, w, C] in the compute dtype: the frozen body's output,
  computed once for the feature cache."""
  def one_batch(batch):
    batch = jax.lax.with_sharding_constraint(batch, setup.batch_sharded)
    inputs = data.to_model_input(data.to_unit_float(batch), setup.image_size,
                                 setup.mean, setup.std, setup.dtype)
    return setup.model.apply({"params": params}, inputs, method="features")
  return jax.lax.map(one_batch, images)


def make_feature_extractor(setup: Setup):
  return jax.jit(over_seeds(functools.partial(body_features, setup), (0, None),
                            setup.seed_parallelism))


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
  put = lambda x: distributed.put_replicated(shape(x), setup.replicated)
  return EvalSet(put(images), put(labels), put(weights), len(split))


def build_setup(config, num_classes: int, steps_per_epoch: int,
                batch_size: int, learning_rate: float) -> tuple[Setup, Any]:
  """The model, optimizer and static options; returns (setup, init_state).

  init_state(keys [S], params=None) -> TrainState stacked over S seeds, with
  fresh parameters or the given stacked ones (used under jax.eval_shape for
  restoring, and for real for a fresh run).
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
  augment_options = augment.AugmentOptions.from_config(config.augment)
  body_frozen = "body" in trainable and not any(
      jax.tree.leaves(trainable["body"]))
  feature_cache = bool(config.cache_features and config.task == "classifier"
                       and body_frozen and not augment_options.any)
  setup = Setup(
      model=model, task=task, tx=tx, trainable=trainable,
      augment=augment_options,
      image_size=config.image_size, mean=tuple(config.mean),
      std=tuple(config.std),
      dtype=jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32,
      batch_size=batch_size, steps_per_epoch=steps_per_epoch, mesh=mesh,
      seed_parallelism=resolve_seed_parallelism(config.seed_parallelism),
      feature_cache=feature_cache)

  def init_one(key, params):
    if params is None:
      params = model.init(key, sample)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      metric_sums=tasks.zero_sums(task),
                      nonfinite_step=jnp.full((), -1, jnp.int32))

  def init_state(keys, params=None) -> TrainState:
    return jax.vmap(init_one)(keys, params)

  return setup, init_state


def abstract_state(init_state, keys, setup: Setup):
  """Shapes, dtypes and shardings of the stacked state, for restoring."""
  shapes = jax.eval_shape(init_state, keys)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=setup.replicated),
      shapes)


def seed_records(task, sums, prefix: str) -> list[dict[str, float]]:
  """Per-seed summaries of stacked metric sums."""
  sums = jax.tree.map(np.atleast_1d, sums)
  count = len(sums["count"])
  return [{f"{prefix}_{k}": v for k, v in task.summarize(
      {name: value[i] for name, value in sums.items()}).items()}
          for i in range(count)]


class _Progress:
  """A tqdm bar over an epoch's steps showing the loss and images/s."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str,
               images_per_step: int, position: int = 0):
    self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                          disable=not enabled, dynamic_ncols=True,
                          leave=False, unit="step", mininterval=1.0,
                          position=position)
    self._images_per_step = images_per_step
    self._start = time.perf_counter()
    self._done = 0

  def update(self, steps: int, running_loss: float | None = None) -> None:
    self._done += steps
    self._bar.update(steps)
    if running_loss is not None:
      rate = self._done * self._images_per_step / max(
          time.perf_counter() - self._start, 1e-9)
      self._bar.set_postfix(loss=f"{running_loss:.4f}", img_s=f"{rate:,.0f}")

  def close(self) -> None:
    self._bar.close()


@dataclasses.dataclass
class Hooks:
  """How a caller (the study) follows a run: a label for its progress bar,
  the bar's screen row, and a callback after each epoch."""
  label: str = ""
  bar_position: int = 0
  on_epoch_end: Callable[[int], None] | None = None
  verbose: bool = True  # False: per-run and per-epoch lines go to DEBUG


class Interrupted(Exception):
  """SIGTERM/Ctrl-C: the run saved a checkpoint at a step boundary and stops."""

  def __init__(self, workdir: str, epoch: int, step: int):
    super().__init__(f"stopped at epoch {epoch}, step {step}; a checkpoint of "
                     f"that step is in {checkpoints.checkpoint_dir(workdir)}. "
                     "Run the same command again to resume from it")
    self.workdir, self.epoch, self.step = workdir, epoch, step


class Diverged(UserError):
  """A non-finite loss: the run stops without saving the bad state."""


_stop_requested = threading.Event()


def request_stop() -> None:
  """Asks the running loop to checkpoint at the next step boundary and stop
  (main's SIGTERM/SIGINT handler calls this)."""
  _stop_requested.set()


def train_and_evaluate(config, workdir: str, *, fresh: bool = False,
                       name: str | None = None, hooks: Hooks | None = None,
                       dataset: data.Dataset | None = None) -> list[dict[str, Any]]:
  """Trains the config's task in `workdir` (resuming if possible). `name`
  labels logs and the progress bar (default: the task); `dataset` skips
  reading the data again when the caller already has it.

  Everything that can be checked is checked before the workdir is touched:
  the config, the workdir's own config, the data.

  Returns the full metrics history: one record per epoch and seed.
  """
  name = name or config.task
  hooks = hooks or Hooks()
  configlib.validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  if not fresh:
    done = finished_history(config, workdir)
    if done is not None:
      logging.info("%s: %s already holds %d epochs; nothing to train.", name,
                    workdir, done[-1]["epoch"])
      with workdir_lib.lock(workdir):
        workdir_lib.sync_metrics(workdir, done)
      return done
  dataset = dataset or data.load_dataset(config)
  steps_per_epoch = len(dataset.train) // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"config.batch_size={config.batch_size} is larger than the "
                    f"{len(dataset.train)} training examples")
  setup, init_state = build_setup(config, dataset.num_classes, steps_per_epoch,
                                  config.batch_size, config.learning_rate)
  keys = RunKeys.from_seeds(seeds_of(config), setup.replicated)
  starts_fresh = fresh or finished_history(config, workdir) is None and (
      _latest_step(workdir) is None)
  # Pre-trained weights are read and checked before the workdir is touched.
  initial_params = (_pretrained_params(config, workdir, init_state, keys, name)
                    if starts_fresh else None)
  with workdir_lib.claim(workdir, config_dict, fresh), \
      contextlib.ExitStack() as open_writers:
    store = open_writers.enter_context(contextlib.closing(
        checkpoints.RunCheckpoints(workdir, keep=config.keep_checkpoints)))
    return _train(config, config_dict, workdir, store, name, hooks, dataset,
                  setup, init_state, keys, initial_params, open_writers)


def _latest_step(workdir: str) -> int | None:
  if not os.path.isdir(checkpoints.checkpoint_dir(workdir)):
    return None
  store = checkpoints.RunCheckpoints(workdir, read_only=True)
  try:
    return store.latest_step()
  finally:
    store.close()


def _pretrained_params(config, workdir, init_state, keys, name):
  """Fresh parameters with config.init's pre-trained parts merged in (numpy,
  stacked over seeds), or None for a random start."""
  pretrained = initialization.load_pretrained(config, workdir)
  if pretrained is None:
    return None
  loaded, source = pretrained
  fresh_params = distributed.fetch(
      jax.jit(lambda k: init_state(k).params)(keys.init))
  params = initialization.merge_pretrained(fresh_params, loaded, source)
  logging.info("%s: body initialised from %s", name, source)
  return params


def memory_usage() -> dict[str, float]:
  """Peak host RSS of this process and, where the backend reports it, the
  peak device memory (MiB)."""
  import resource
  usage = {"host_peak_rss_mb": round(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    usage["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
  return usage


def finished_history(config, workdir: str) -> list[dict[str, Any]] | None:
  """The history of a run in `workdir` that already reached num_epochs."""
  if not os.path.isdir(checkpoints.checkpoint_dir(workdir)):
    return None
  store = checkpoints.RunCheckpoints(workdir, read_only=True)
  try:
    latest = store.latest_step()
    if latest is None:
      return None
    history = store.restore_history(latest)
  finally:
    store.close()
  if history and history[-1]["epoch"] >= config.num_epochs and (
      history[-1]["step"] == latest):
    return history
  return None


def _initial_state(config, workdir, store, setup, init_state, keys, name,
                   initial_params, log=logging.info):
  """(state, history): the latest checkpoint's, or a fresh start from
  `initial_params` (pre-trained, merged) or random."""
  latest = store.latest_step()
  if latest is not None:
    # Resume: the checkpoint holds every weight, head included; no
    # initialisation path runs on top of it.
    state, history = store.restore(
        latest, abstract_state(init_state, keys.init, setup))
    log("%s: resumed %s from step %d", name, workdir, latest)
    return state, history
  if config.init != "random" and initial_params is None:
    initial_params = _pretrained_params(config, workdir, init_state, keys, name)
  state = jax.jit(init_state, out_shardings=setup.replicated)(keys.init,
                                                              initial_params)
  log("%s: starting from scratch in %s (init=%s, seeds %s)", name,
      workdir, config.init, seeds_of(config))
  return state, []


def _run_epoch(step_fn, state, inputs, first: int, steps_per_epoch: int,
               config, progress: "_Progress"):
  """Steps `first`..end of an epoch. Returns (state, stopped): stopped if a
  stop was requested (the state is then at a step boundary mid-epoch).
  Every `log_every_steps` the running loss is fetched for the progress bar,
  and a non-finite loss ends the run (Diverged)."""
  reported = first
  for position in range(first, steps_per_epoch):
    state = step_fn(state, *inputs)
    steps_done = position + 1
    if _stop_requested.is_set():
      return state, True
    if steps_done % config.log_every_steps == 0 or steps_done == steps_per_epoch:
      # The only sync in an epoch: it waits for this step to finish.
      sums, bad_steps = distributed.fetch((state.metric_sums, state.nonfinite_step))
      _check_finite(bad_steps, steps_per_epoch)
      running = float(np.mean(sums["loss_sum"] / np.maximum(sums["count"], 1)))
      progress.update(steps_done - reported, running)
      reported = steps_done
  return state, False


def _check_finite(bad_steps, steps_per_epoch: int, seeds=None) -> None:
  bad = [(i, int(s)) for i, s in enumerate(np.atleast_1d(bad_steps)) if s >= 0]
  if bad:
    index, step = bad[0]
    which = f"seed index {index}" if seeds is None else f"seed {seeds[index]}"
    raise Diverged(
        f"the loss became non-finite ({which}) at epoch "
        f"{step // steps_per_epoch + 1}, step {step + 1}")


def _train(config, config_dict, workdir, store, name, hooks, dataset, setup,
           init_state, keys, initial_params,
           open_writers: contextlib.ExitStack) -> list[dict[str, Any]]:
  steps_per_epoch = setup.steps_per_epoch
  seeds = seeds_of(config)
  log = logging.info if hooks.verbose else logging.debug
  state, history = _initial_state(config, workdir, store, setup, init_state,
                                  keys, name, initial_params, log)
  workdir_lib.record_config(workdir, config_dict)
  workdir_lib.sync_metrics(workdir, history)
  events = (open_writers.enter_context(contextlib.closing(
      tensorboard_events.EventWriters(workdir, history)))
            if distributed.is_primary() else None)

  one_model = jax.tree.map(lambda x: x[0], state.params)
  trainable_count, total_count = freezing.count_parameters(one_model,
                                                           setup.trainable)
  log("%s: %d of %d parameters trainable per model (rules %s)", name,
      trainable_count, total_count, freezing.resolve_rules(config))

  examples = distributed.put_replicated(dataset.train.images, setup.replicated)
  labels = distributed.put_replicated(dataset.train.labels, setup.replicated)
  eval_set = make_eval_set(dataset.val, config.eval_batch_size, setup)
  feature_seconds = None
  if setup.feature_cache:
    # A frozen body and no augmentation: every epoch would recompute the same
    # features, so compute them once and train the head on them.
    start = time.perf_counter()
    extract = make_feature_extractor(setup)
    padded = make_eval_set(dataset.train, config.eval_batch_size, setup).images
    features = extract(state.params, padded)
    examples = features.reshape(features.shape[0], -1,
                                *features.shape[3:])[:, :len(dataset.train)]
    eval_set.images = extract(state.params, eval_set.images)
    jax.block_until_ready((examples, eval_set.images))
    del padded, features
    feature_seconds = time.perf_counter() - start
    log("%s: body frozen, no augmentation: cached the body features of %d + "
        "%d images in %.1f s; the steps train the head on them", name,
        len(dataset.train), eval_set.size, feature_seconds)
  make_orders = jax.jit(
      jax.vmap(functools.partial(epoch_order, num_examples=len(dataset.train),
                                 length=steps_per_epoch * config.batch_size),
               in_axes=(0, None)),
      out_shardings=setup.replicated)

  compile_start = time.perf_counter()
  step_fn = jax.jit(make_train_step(setup), donate_argnums=0,
                    out_shardings=setup.replicated).lower(
                        state, examples, labels, make_orders(keys.data, 0),
                        keys.augment).compile()
  eval_fn = make_evaluator(setup).lower(
      state.params, eval_set.images, eval_set.labels, eval_set.weights).compile()
  compile_seconds = time.perf_counter() - compile_start
  log("%s: compiled the train and eval steps in %.1f s", name, compile_seconds)

  def save(step: int, val_loss: float | None) -> None:
    try:
      store.save(step, state, history, config_dict, val_loss)
    except Exception as e:  # orbax/tensorstore raise many types on I/O errors
      latest = [s for s in store.steps() if s != step]
      raise UserError(
          f"{name}: could not write the checkpoint of step {step} in "
          f"{store.directory} ({brief(e)}). The last complete "
          f"checkpoint ({latest[-1] if latest else 'none'}) is intact; free "
          "space and run the same command again to resume") from e

  start_step = int(distributed.fetch(state.step)[0])
  label = hooks.label or name
  for epoch in range(start_step // steps_per_epoch, config.num_epochs):
    if _stop_requested.is_set():
      raise Interrupted(workdir, epoch, epoch * steps_per_epoch)
    first = max(start_step - epoch * steps_per_epoch, 0)  # >0: resumed mid-epoch
    orders = make_orders(keys.data, epoch)
    progress = _Progress(config.progress_bar and distributed.is_primary(),
                         steps_per_epoch, first,
                         f"{label} epoch {epoch + 1}/{config.num_epochs}",
                         config.batch_size * len(seeds), hooks.bar_position)
    epoch_start = time.perf_counter()
    state, stopped = _run_epoch(step_fn, state,
                                (examples, labels, orders, keys.augment),
                                first, steps_per_epoch, config, progress)
    progress.close()
    train_sums, bad_steps, step = distributed.fetch(
        (state.metric_sums, state.nonfinite_step, state.step[0]))
    step = int(step)
    _check_finite(bad_steps, steps_per_epoch, seeds)
    if stopped:
      # A checkpoint mid-epoch: the running sums are in the state, the data
      # order and augmentation follow from (seed, step), so resuming from it
      # finishes this epoch exactly as an uninterrupted run would.
      save(step, None)
      raise Interrupted(workdir, epoch + 1, step)
    epoch_seconds = time.perf_counter() - epoch_start

    eval_start = time.perf_counter()
    val_sums = distributed.fetch(eval_fn(state.params, eval_set.images,
                                         eval_set.labels, eval_set.weights))
    eval_seconds = time.perf_counter() - eval_start

    steps_run = steps_per_epoch - first
    shared = {
        "epoch": epoch + 1,
        "step": step,
        "epoch_seconds": round(epoch_seconds, 4),
        "eval_seconds": round(eval_seconds, 4),
        "compile_seconds": round(compile_seconds, 4),
        **({"feature_seconds": round(feature_seconds, 4)}
           if feature_seconds is not None else {}),
        "train_images_per_second": round(
            steps_run * config.batch_size * len(seeds) / epoch_seconds, 2),
        "trainable_parameters": trainable_count,
        "features_cached": setup.feature_cache,
        "train_examples": len(dataset.train),
        "val_examples": len(dataset.val),
        "num_seeds": len(seeds),
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "steps_in_this_process": steps_run,
        **memory_usage(),
    }
    records = [{**shared, "seed": seed, **train, **val} for seed, train, val in zip(
        seeds, seed_records(setup.task, train_sums, "train"),
        seed_records(setup.task, val_sums, "val"))]
    for record in records:
      bad = [k for k, v in record.items()
             if isinstance(v, float) and not math.isfinite(v)]
      if bad:
        raise Diverged(
            f"non-finite {', '.join(bad)} for seed {record['seed']} at epoch "
            f"{epoch + 1} (step {step})")
    history.extend(records)
    save(step, float(np.mean([r["val_loss"] for r in records])))
    if distributed.is_primary():
      for record in records:
        workdir_lib.append_metrics(workdir, record)
      events.write(records)
    if hooks.verbose:
      logging.info("%s epoch %d/%d (%.1f s): %s", name, epoch + 1,
                   config.num_epochs, epoch_seconds, "; ".join(
                       f"seed {r['seed']}: " + ", ".join(
                           f"{k}={r[k]:.4g}" for k in r
                           if k in ("train_loss", "train_accuracy", "val_loss",
                                    "val_accuracy"))
                       for r in records))
    if hooks.on_epoch_end is not None:
      hooks.on_epoch_end(epoch + 1)
  return history

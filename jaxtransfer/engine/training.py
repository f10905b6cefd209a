"""The training loop: one run of one task in one workdir, resumable.

`train_and_evaluate(config, workdir)` is the whole program, as in flax's
examples: it reads the data once, puts it on the device, restores the latest
checkpoint or initialises fresh parameters, and runs epochs of the jitted
steps of `steps.py`. The host only dispatches steps, fetches the sums once per
epoch (and the running loss every `log_every_steps` for the progress bar),
evaluates, checkpoints and writes a line to metrics.jsonl.

Seeds: a run trains `config.num_seeds` models (seeds config.seed,
config.seed + 1, ...) in one compiled program (steps.over_seeds); every array
in the state has a leading seed axis, also for a single seed (size 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import time
from typing import Any, Callable

from absl import logging
import jax
import numpy as np

from jaxtransfer import data
from jaxtransfer.core import (checkpoints, configlib, distributed, provenance,
                              tensorboard_events, workdir as workdir_lib)
from jaxtransfer.data import augment, kfold
from jaxtransfer.engine import freezing, run_setup, validation, variants
from jaxtransfer.core.errors import UserError, brief
from jaxtransfer.engine.progress import EpochBar, memory_usage
# The step machinery lives in steps.py; these names are part of this
# module's interface too (benchmarks and tests use them from here).
from jaxtransfer.engine.run_setup import abstract_state, build_setup  # noqa: F401
from jaxtransfer.engine.steps import (EvalSet, RunKeys, Setup, TrainState,
                                      epoch_order, make_eval_set,
                                      make_evaluator, make_feature_extractor,
                                      make_mesh, make_train_step,
                                      model_variables, over_seeds,
                                      resolve_seed_parallelism, seed_records,
                                      seeds_of, stacked_eval_set)


@dataclasses.dataclass
class Hooks:
  """How a caller (the study) follows a run: a label for its progress bar,
  the bar's screen row, and a callback after each epoch."""
  label: str = ""
  bar_position: int = 0
  on_epoch_end: Callable[[int], None] | None = None
  verbose: bool = True  # False: per-run and per-epoch lines go to DEBUG


class Interrupted(Exception):
  """SIGTERM/Ctrl-C: the run stops at a step boundary, whose checkpoint it
  saved (`saved`), or before it trained anything (nothing to save)."""

  def __init__(self, workdir: str, epoch: int, step: int, saved: bool = True):
    if saved:
      then = (f"a checkpoint of that step is in "
              f"{checkpoints.checkpoint_dir(workdir)}. Run the same command "
              "again to resume from it")
    else:
      then = (f"nothing was trained in {workdir} yet, so nothing was saved. "
              "Run the same command again to start it")
    super().__init__(f"stopped at epoch {epoch}, step {step}; {then}")
    self.workdir, self.epoch, self.step = workdir, epoch, step


class Diverged(UserError):
  """A non-finite loss: the run stops without saving the bad state."""


_stop_requested = threading.Event()


def stop_requested() -> bool:
  """Whether a stop was asked for (a caller between runs checks it)."""
  return _stop_requested.is_set()


def request_stop() -> None:
  """Asks the running loop to checkpoint at the next step boundary and stop
  (main's SIGTERM/SIGINT handler calls this)."""
  _stop_requested.set()


def train_and_evaluate(config, workdir: str, *, fresh: bool = False,
                       name: str | None = None, hooks: Hooks | None = None,
                       dataset: data.Dataset | None = None,
                       invocation=None) -> list[dict[str, Any]]:
  """Trains the config's task in `workdir` (resuming if possible). `name`
  labels logs and the progress bar (default: the task); `dataset` skips
  reading the data again when the caller already has it; `invocation` (the
  command line, core/provenance.py) joins provenance.json with config.json.

  Everything that can be checked is checked before the workdir is touched:
  the config, the workdir's own config, the data.

  Returns the full metrics history: one record per epoch and seed.
  """
  name = name or config.task
  hooks = hooks or Hooks()
  validation.validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  if not fresh:
    done = checkpoints.finished_history(workdir, config.num_epochs)
    if done is not None:
      (logging.info if hooks.verbose else logging.debug)(
          "%s: %s already holds %d epochs; nothing to train.", name, workdir,
          done[-1]["epoch"])
      with workdir_lib.lock(workdir):
        workdir_lib.sync_metrics(workdir, done)
      return done
  dataset = dataset or data.load_dataset(config)
  # (seed 001's six views per epoch: 6N examples, every (image, view) once)
  steps_per_epoch = (training_examples(dataset) * augment.views_per_epoch(
      config.augment)) // config.batch_size
  if steps_per_epoch == 0:
    raise UserError(f"config.batch_size={config.batch_size} is larger than the "
                    f"{len(dataset.train)} training examples")
  setup, init_state = build_setup(config, dataset.num_classes, steps_per_epoch,
                                  config.batch_size,
                                  pixel_stats=dataset.pixel_stats)
  keys = RunKeys.from_seeds(seeds_of(config), setup.replicated)
  # (not fresh: the run is unfinished, or it would have returned above)
  starts_fresh = fresh or checkpoints.latest_step(workdir) is None
  # Pre-trained weights are read and checked before the workdir is touched.
  initial_params = (run_setup.pretrained_variables(config, workdir,
                                                   init_state, keys, name)
                    if starts_fresh else None)
  with workdir_lib.claim(workdir, config_dict, fresh), \
      contextlib.ExitStack() as open_writers:
    store = open_writers.enter_context(contextlib.closing(
        checkpoints.RunCheckpoints(workdir, keep=config.keep_checkpoints)))
    return _train(config, config_dict, workdir, store, name, hooks, dataset,
                  setup, init_state, keys, initial_params, open_writers,
                  invocation)


def training_examples(dataset) -> int:
  """Examples each model trains on per epoch (k-fold side by side: every
  model the same number, kfold.train_indices)."""
  if dataset.folds is not None:
    return kfold.train_indices(dataset).shape[1]
  return len(dataset.train)


def _fold_fields(config, dataset) -> list[dict[str, Any]]:
  """Per model: its fold and validation size under k-fold ({} otherwise)."""
  models = len(seeds_of(config))
  if not kfold.enabled(config):
    return [{}] * models
  if dataset.folds is None:
    return [{"fold": int(config.fold)}] * models
  return [{"fold": k, "val_examples": len(fold)}
          for k, fold in enumerate(dataset.folds)]


def normalization_record(config, setup) -> dict[str, Any]:
  """With normalization='dataset', the statistics the inputs were normalised
  with (--mode=eval reads them back instead of the training split)."""
  if config.normalization != "dataset":
    return {}
  return {"input_mean": [float(m) for m in setup.mean],
          "input_std": [float(s) for s in setup.std]}


def _run_epoch(step_fn, state, inputs, first: int, steps_per_epoch: int,
               config, progress: EpochBar):
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
           open_writers: contextlib.ExitStack,
           invocation=None) -> list[dict[str, Any]]:
  steps_per_epoch = setup.steps_per_epoch
  seeds = seeds_of(config)
  # Quiet when a caller shows progress its own way (a study's bar); without
  # a progress bar every run says what it does, epoch by epoch.
  quiet = not hooks.verbose and config.progress_bar
  log = logging.debug if quiet else logging.info
  state, history = run_setup.initial_state(config, workdir, store, setup,
                                           init_state, keys, name,
                                           initial_params, log)
  workdir_lib.record_config(workdir, config_dict)
  provenance.record(workdir, invocation)
  workdir_lib.sync_metrics(workdir, history)
  events = (open_writers.enter_context(contextlib.closing(
      tensorboard_events.EventWriters(workdir, history)))
            if distributed.is_primary() else None)

  # One model's shapes (slicing the arrays would compile an op per shape).
  one_model = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state.params)
  trainable_count, total_count = freezing.count_parameters(one_model,
                                                           setup.trainable)
  log("%s: %d of %d parameters trainable per model (rules %s)", name,
      trainable_count, total_count, freezing.resolve_rules(config))

  examples = distributed.put_replicated(dataset.train.images, setup.replicated)
  log("%s: %.1f MiB of uint8 images on each device (%d train %s, %d "
      "validation)", name, dataset.nbytes / 2**20, len(dataset.train),
      dataset.train.images.shape[1:], len(dataset.val))
  labels = distributed.put_replicated(dataset.train.labels, setup.replicated)
  if dataset.folds is not None:  # k-fold: each model on its own fold
    eval_set = stacked_eval_set(dataset, config.eval_batch_size, setup)
  else:
    eval_set = make_eval_set(dataset.val, config.eval_batch_size, setup)
  feature_seconds = feature_length = None
  if setup.feature_cache:
    # A frozen body and no augmentation: every epoch would recompute the same
    # features, so compute them once and train the head on them.
    # Compiled first, so feature_seconds is the body's time alone.
    extract = make_feature_extractor(setup)
    padded = make_eval_set(dataset.train, config.eval_batch_size, setup).images
    variables = model_variables(state)
    extract_train, extract_val = (extract.lower(variables, x).compile()
                                  for x in (padded, eval_set.images))
    start = time.perf_counter()
    features = extract_train(variables, padded)
    examples = features.reshape(features.shape[0], -1,
                                *features.shape[3:])[:, :len(dataset.train)]
    feature_length = int(np.prod(features.shape[3:]))
    eval_set.images = extract_val(variables, eval_set.images)
    jax.block_until_ready((examples, eval_set.images))
    del padded, features
    feature_seconds = time.perf_counter() - start
    log("%s: body frozen, no augmentation: cached the body features of %d + "
        "%d images in %.1f s; the steps train the head on them", name,
        len(dataset.train), eval_set.size, feature_seconds)
  permutations = jax.vmap(functools.partial(
      epoch_order, num_examples=training_examples(dataset)
      * setup.augment.views_per_epoch,
      length=steps_per_epoch * config.batch_size), in_axes=(0, None))
  if dataset.folds is not None:  # each model's order over its own examples
    fold_indices = distributed.put_replicated(kfold.train_indices(dataset),
                                              setup.replicated)
    orders_of = lambda keys, epoch: kfold.map_orders(
        permutations(keys, epoch), fold_indices)
  else:
    orders_of = permutations
  # (a permutation per epoch: integer hashing and a sort, bit-exact at any
  # backend level, so compiled as quickly as the initialisation)
  make_orders = jax.jit(orders_of, out_shardings=setup.replicated,
                        compiler_options=run_setup.RUN_ONCE)

  log("%s: compiling the train and eval steps", name)
  compile_start = time.perf_counter()
  step_fn = jax.jit(make_train_step(setup), donate_argnums=0,
                    out_shardings=setup.replicated).lower(
                        state, examples, labels, make_orders(keys.data, 0),
                        keys.augment).compile()
  eval_fn = make_evaluator(setup).lower(
      model_variables(state), eval_set.images, eval_set.labels,
      eval_set.weights).compile()
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
    if _stop_requested.is_set():  # at an epoch boundary: saved, unless fresh
      raise Interrupted(workdir, epoch, epoch * steps_per_epoch,
                        saved=epoch * steps_per_epoch in store.steps())
    first = max(start_step - epoch * steps_per_epoch, 0)  # >0: resumed mid-epoch
    orders = make_orders(keys.data, epoch)
    progress = EpochBar(config.progress_bar and distributed.is_primary(),
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
    val_sums = distributed.fetch(eval_fn(model_variables(state), eval_set.images,
                                         eval_set.labels, eval_set.weights))
    eval_seconds = time.perf_counter() - eval_start

    steps_run = steps_per_epoch - first
    shared = {
        "epoch": epoch + 1,
        "step": step,
        "epoch_seconds": round(epoch_seconds, 4),
        "eval_seconds": round(eval_seconds, 4),
        "compile_seconds": round(compile_seconds, 4),
        **({"feature_seconds": round(feature_seconds, 4),
            "feature_length": feature_length}
           if feature_seconds is not None else {}),
        "train_images_per_second": round(
            steps_run * config.batch_size * len(seeds) / epoch_seconds, 2),
        "trainable_parameters": trainable_count,
        "features_cached": setup.feature_cache,
        "train_examples": training_examples(dataset),  # images, not views
        **({"train_views_per_image": setup.augment.views_per_epoch}
           if setup.augment.views_per_epoch > 1 else {}),
        "device_data_mb": round(dataset.nbytes / 2**20, 2),
        "val_examples": len(dataset.val),
        **({"class_names": list(dataset.class_names)}
           if config.get("per_class_metrics", False) else {}),
        "num_seeds": config.num_seeds,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "steps_in_this_process": steps_run,
        **normalization_record(config, setup),
        **memory_usage(),
    }
    rates = variants.learning_rates(config, steps_per_epoch,
                                  epoch * steps_per_epoch)
    folds = _fold_fields(config, dataset)
    records = [{**shared, "seed": seed, **({"variant": variant} if variant
                                          else {}), **folds[index],
                "learning_rate": rate, **train, **val}
               for index, (seed, variant, rate, train, val) in enumerate(zip(
                   seeds, variants.model_variants(config), rates,
                   seed_records(setup.task, train_sums, "train"),
                   seed_records(setup.task, val_sums, "val")))]
    for record, scalars in zip(records, setup.hyper.per_model):
      if not any(scalars[f] for f in variants.REGULARIZERS):
        # A sweep's model without a regulariser: its record is its arm's.
        record.pop("train_regularization", None)
        record.pop("train_total_loss", None)
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
    if not quiet:
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

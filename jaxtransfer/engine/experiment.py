"""What `--mode=train` and `--mode=eval` do, in terms of the library.

train: for `init='autoencoder'` without `ae_checkpoint`, first pre-train the
autoencoder in <workdir>/autoencoder (its own resumable run), then train the
classifier in <workdir> from its encoder.

eval: restore a checkpoint (the latest, the best by val_loss, or a step)
with every weight it holds, evaluate it, print one JSON line and write
<workdir>/eval.json.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtransfer import data, models
from jaxtransfer.core import (checkpoints, configlib, distributed, registry,
                              stored_config, workdir as workdir_lib)
from jaxtransfer.core.errors import UserError
from jaxtransfer.data import augment
from jaxtransfer.engine import (attacks, corruption_eval, initialization,
                                training, validation)

# The autoencoder's (and a joint model's) validation images and their
# reconstructions, for the report's picture (write_reconstructions).
RECONSTRUCTIONS_FILE = "reconstructions.npz"


def pretrain_config(config) -> ml_collections.ConfigDict:
  """The autoencoder run that ae_init trains before the classifier.

  Data and model fields are shared with the classifier; `config.pretrain`
  gives the optimisation fields. No augmentation, all layers trained.
  """
  fields = configlib.to_dict(config)
  fields.pop("study", None)
  ae = ml_collections.ConfigDict(fields)
  ae.task = "autoencoder"
  ae.init = "random"
  ae.ae_checkpoint = ""
  ae.freeze = "none"
  ae.trainable_rules = None
  ae.num_seeds = 1  # one autoencoder, shared by every seed of the classifier
  ae.init_weights = ""
  for field in ("reinit", "stages"):  # the classifier's (older configs lack them)
    if field in ae:
      ae[field] = ()
  ae.num_epochs = config.pretrain.num_epochs
  ae.learning_rate = config.pretrain.learning_rate
  ae.batch_size = config.pretrain.batch_size
  # The seed's recipe for the autoencoder, whatever the classifier uses:
  # Adam at a constant rate, no regularisers, all classes.
  ae.optimizer, ae.lr_schedule, ae.warmup_epochs = "adam", "constant", 0
  ae.weight_decay = 0.0
  for field in ("kernel_l2", "bias_l2", "kernel_l1", "bias_l1"):
    ae[field] = 0.0
  for field in ("hflip", "vflip", "rotate", "six_views", "random_resized_crop"):
    if field in ae.augment:
      ae.augment[field] = False
  for field in ("brightness", "contrast", "saturation", "hue"):
    if field in ae.augment:
      ae.augment[field] = 0.0
  ae.adversarial = ""
  if "active" in ae:  # the pool's images, no labels, no rounds
    ae.active.strategy = ""
  return ae


def train(config, workdir: str, *, fresh: bool = False,
          invocation: dict[str, Any] | None = None) -> list[dict[str, Any]]:
  """--mode=train: for init='autoencoder' without ae_checkpoint, pre-train
  the autoencoder in <workdir>/autoencoder first (its own resumable run).
  A config that switches on a feature's kind of run (core/registry.py:
  RunKind; e.g. config.stages) is that kind's run. `invocation` (main's
  command line, core/provenance.py) goes into <workdir>/provenance.json
  when the run writes its config.json, past every check."""
  kind = registry.run_kind_of(config)  # a feature's kind of run
  if kind is not None:
    return kind.train(config, workdir, fresh=fresh, invocation=invocation)
  validation.validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)  # before any stage runs
  if not (config.task == "classifier" and config.init == "autoencoder"
          and not config.ae_checkpoint):
    return training.train_and_evaluate(config, workdir, fresh=fresh,
                                       invocation=invocation)

  if not fresh and checkpoints.finished_history(workdir, config.num_epochs) is not None:
    return training.train_and_evaluate(config, workdir)  # done: no data needed
  dataset = data.load_dataset(config)  # one read for both stages
  if fresh:  # archive the old run, autoencoder/ included, before stage 1
    with workdir_lib.claim(workdir, config_dict, fresh=True):
      workdir_lib.record_config(workdir, config_dict)
  ae_config = pretrain_config(config)
  ae_dir = initialization.autoencoder_run_dir(config, workdir)
  logging.info("Pre-training the autoencoder in %s", ae_dir)
  training.train_and_evaluate(ae_config, ae_dir, name="autoencoder",
                              dataset=dataset)
  if distributed.is_primary():
    write_reconstructions(ae_config, ae_dir)
  return training.train_and_evaluate(config, workdir, dataset=dataset,
                                     invocation=invocation)


def write_reconstructions(config, run_dir: str, count: int = 8) -> str:
  """Saves validation images and the model's reconstructions of them (seed
  0, latest checkpoint), both in [0, 1] at image_size, to
  <run_dir>/reconstructions.npz, for the report's picture: the autoencoder's
  first `count` images, or a joint model's (seed 002) first image of each
  class."""
  params, batch_stats, step = checkpoints.load_variables(run_dir)
  variables = {"params": params, **(
      {"batch_stats": batch_stats} if batch_stats else {})}
  variables = jax.tree.map(lambda a: a[0], variables)  # seed 0
  dataset = data.load_dataset(config, validation_only=True)
  val = dataset.val
  joint = config.task == "joint"
  if joint:  # one image per class, in label order
    first = [np.flatnonzero(val.labels == c) for c in range(dataset.num_classes)]
    val = data.Split(val.images[[f[0] for f in first if len(f)]], val.labels)
    count = len(val.images)
  model = models.make_model(config, num_classes=dataset.num_classes)
  stats = workdir_lib.run_pixel_stats(run_dir)
  mean, std = (np.asarray(v) for v in data.normalization_constants(
      config, 3, stats))  # the autoencoder is an AlexNet: RGB

  @jax.jit  # one program: eagerly, each op of the model compiles on its own
  def reconstruct(variables, images):
    inputs = data.to_model_input(data.to_unit_float(images),
                                 config.image_size, tuple(mean), tuple(std),
                                 channels=3)
    outputs = model.apply(variables, inputs, train=False)
    return inputs, outputs["reconstruction"] if joint else outputs

  inputs, outputs = reconstruct(variables, val.images[:count])
  unnormalise = lambda x: np.asarray(x, np.float32) * std + mean
  path = os.path.join(run_dir, RECONSTRUCTIONS_FILE)
  np.savez_compressed(path, inputs=unnormalise(inputs),
                      reconstructions=unnormalise(outputs), step=step)
  return path


def _attack_accuracies(config, setup, variables, eval_set) -> dict[str, list]:
  """config.eval.attacks -> {attack name: [accuracy per seed]} on the split
  (the attacks' random starts are drawn from config.seed)."""
  found = {}
  for text in tuple(config.get("eval", {}).get("attacks", ())):
    attack = attacks.parse_attack(text)
    evaluate = attacks.make_attack_evaluator(setup, attack)
    sums = distributed.fetch(evaluate(
        variables, eval_set.images, eval_set.labels, eval_set.weights,
        jax.random.key(config.seed)))
    found[attack.name] = [float(c) / max(float(n), 1.0) for c, n in zip(
        np.atleast_1d(sums["correct"]), np.atleast_1d(sums["count"]))]
  return found


def _eval_set(split_name, split, dataset, config, setup):
  """The split as the evaluator takes it: with k-fold folds side by side,
  'val' is each model's own fold and 'test' the same for every model."""
  if not setup.per_model_eval:
    return training.make_eval_set(split, config.eval_batch_size, setup)
  if tuple(config.eval.attacks):
    raise UserError("config.eval.attacks with validation='kfold' and fold=-1:"
                    " evaluate one fold's run (--config.fold=K) instead")
  if split_name == "val":
    return training.stacked_eval_set(dataset, config.eval_batch_size, setup)
  shared = training.make_eval_set(split, config.eval_batch_size, setup)
  count = len(dataset.folds)
  stack = lambda x: jax.device_put(jnp.broadcast_to(x, (count, *x.shape)),
                                   setup.replicated)
  return training.EvalSet(stack(shared.images), stack(shared.labels),
                          stack(shared.weights), shared.size)


def final_run(config, workdir: str):
  """(config, run directory) of the run that holds the final model: the
  workdir's own, or what its kind of run says (a staged run's last stage)."""
  kind = registry.run_kind_of(config)
  if kind is None or kind.final_run is None:
    return config, workdir
  return kind.final_run(config, workdir)


def config_from_workdir(workdir: str) -> ml_collections.ConfigDict:
  """The config a run in `workdir` was started with (for --mode=eval)."""
  return ml_collections.ConfigDict(stored_config.read(workdir))


def evaluate(config, workdir: str, which: str = "latest") -> list[dict[str, Any]]:
  """Evaluates a checkpoint of the run in `workdir` on its validation split
  (and on the test split when validation is a held-out slice of train).

  Prints one JSON line per seed; eval.json holds that record (one seed) or
  the list of them.
  """
  validation.validate(config)
  kind = registry.run_kind_of(config)
  if kind is not None and kind.final_run is not None:
    # e.g. a staged run: its last stage's run holds the final model
    final_config, final_dir = kind.final_run(config, workdir)
    results = evaluate(final_config, final_dir, which)
    if distributed.is_primary():
      _write_eval(workdir, results)
    return results
  if not os.path.isdir(checkpoints.checkpoint_dir(workdir)):
    raise UserError(f"no checkpoints in {workdir}: train first (--mode=train)")
  store = checkpoints.RunCheckpoints(workdir, read_only=True)
  try:
    if which == "latest":
      step = store.latest_step()
    elif which == "best":
      step = store.best_step()
    else:
      try:
        step = int(which)
      except ValueError:
        raise UserError(f"--checkpoint={which!r}: expected latest, best or a "
                        "step number") from None
      if step not in store.steps():
        raise UserError(f"no checkpoint at step {step} in {workdir} (kept: "
                        f"{store.steps()})")
    if step is None:
      raise UserError(f"{checkpoints.checkpoint_dir(workdir)} holds no "
                      "complete checkpoint")
    checkpoint_config = store.restore_config(step)
    changed = workdir_lib.identity_changes(checkpoint_config,
                                           configlib.to_dict(config))
    if changed:
      raise UserError(f"--config differs from the config checkpoint {step} was "
                      f"trained with ({'; '.join(changed)}); omit --config to "
                      "use the stored one")

    history = store.restore_history(step)
    # The training split is not read: what the run learned from it (the
    # steps per epoch, the 'dataset' normalisation) is in its history.
    dataset = data.load_dataset(config, validation_only=True,
                                with_test=config.validation != "test")
    logged = next((r for r in history if r.get("step") == step), history[-1]
                  if history else {})
    steps_per_epoch = max(
        logged.get("train_examples", config.batch_size)
        * augment.views_per_epoch(config.augment) // config.batch_size, 1)
    pixel_stats = workdir_lib.recorded_pixel_stats(logged)
    if config.normalization == "dataset" and pixel_stats is None:
      raise UserError(f"checkpoint {step} in {workdir} does not record the "
                      "dataset normalisation it was trained with")
    setup, init_state = training.build_setup(
        config, dataset.num_classes, steps_per_epoch, config.batch_size,
        pixel_stats=pixel_stats)
    seeds = training.seeds_of(config)
    keys = training.RunKeys.from_seeds(seeds, setup.replicated)
    state, history = store.restore(
        step, training.abstract_state(init_state, keys.init, setup))
  finally:
    store.close()

  evaluate_fn = training.make_evaluator(setup)
  splits = {"val": dataset.val}
  if dataset.test is not None:
    splits["test"] = dataset.test
  results = [{"workdir": os.path.abspath(workdir), "checkpoint": which,
              "step": step, "seed": seed} for seed in seeds]
  for split_name, split in splits.items():
    eval_set = _eval_set(split_name, split, dataset, config, setup)
    variables = training.model_variables(state)
    images = eval_set.images  # uint8: what the attacks perturb
    if setup.feature_cache:  # as the training loop evaluated it
      eval_set.images = training.make_feature_extractor(setup)(
          variables, eval_set.images)
    sums = distributed.fetch(evaluate_fn(variables, eval_set.images,
                                         eval_set.labels, eval_set.weights))
    for result, summary in zip(results, training.seed_records(
        setup.task, sums, split_name)):
      result.update(summary)
      result[f"{split_name}_examples"] = len(split)
    eval_set.images = images
    for name, accuracies in _attack_accuracies(config, setup, variables,
                                               eval_set).items():
      for result, accuracy in zip(results, accuracies):
        result.setdefault(f"{split_name}_attack_accuracy", {})[name] = accuracy
    corruptions = tuple(config.get("eval", {}).get("corruptions", ()))
    if corruptions and split_name == "val":
      found = corruption_eval.corruption_accuracies(
          config, setup, variables, split, ",".join(corruptions),
          config.eval_batch_size)
      found.pop("clean")
      for index, result in enumerate(results):
        result["val_corruption_accuracy"] = {
            k: v[index] for k, v in found.items()}
        result["val_corruption_mean"] = float(np.mean(
            [v[index] for v in found.values()]))
  if not distributed.is_primary():
    return results
  for result in results:
    logged = next((r for r in history if r.get("step") == step
                   and r.get("seed", result["seed"]) == result["seed"]), None)
    if logged is not None:
      result["epoch"] = logged["epoch"]
      result["logged"] = {k: v for k, v in logged.items() if k.startswith("val_")}
    print(json.dumps(result, sort_keys=True), file=sys.stdout, flush=True)
  _write_eval(workdir, results)
  if "val_corruption_accuracy" in results[0]:
    table = "\n".join(corruption_eval.corruption_table(results)) + "\n"

    def write_table(path):
      with open(path, "w") as f:
        f.write(table)

    path = os.path.join(workdir, "corruptions.md")
    workdir_lib.write_outputs(write_table, path, "the evaluation")
    logging.info("Corruption accuracy table: %s", path)
  return results


def _write_eval(workdir: str, results) -> None:
  """<workdir>/eval.json: the record, or the list of them (one per seed)."""
  workdir_lib.write_outputs(
      lambda path: workdir_lib.write_json_atomic(
          path, results[0] if len(results) == 1 else results),
      os.path.join(workdir, workdir_lib.EVAL_FILE), "the evaluation")

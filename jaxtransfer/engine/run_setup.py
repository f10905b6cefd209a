"""What a run compiles: the model, task, optimizer and options of its steps
(steps.Setup) built from the config, and its initial state over the model
axis (seeds, and a sweep's variants: engine/variants.py): the latest checkpoint's, or
fresh parameters with config.init's pre-trained parts merged in."""

from __future__ import annotations

import functools
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections

from jaxtransfer import data, models
from jaxtransfer.core import distributed
from jaxtransfer.data import augment, kfold
from jaxtransfer.engine import (attacks, freezing, initialization, optimizers,
                                tasks, variants)
from jaxtransfer.engine.steps import (Setup, TrainState, make_mesh,
                                      model_variables, resolve_seed_parallelism,
                                      seeds_of)

# Programs a run executes once (its initialisation) compile with XLA's LLVM
# backend at optimisation level 2 instead of the default 3: an
# initialisation is a threefry hash per parameter tensor, which level 3
# takes 2-3x longer to compile (AlexNet's 5.9 s -> 1.8 s, ResNet-50's
# 11.3 s -> 5.4 s on 2 CPU cores: benchmarks/init_compile.py) for a program
# that runs once. The values are bit for bit level 3's
# (tests/test_initializers.py checks every initialiser).
RUN_ONCE = {"xla_backend_optimization_level": 2}


def build_setup(config, num_classes: int, steps_per_epoch: int,
                batch_size: int, learning_rate: float | None = None, *,
                pixel_stats=None) -> tuple[Setup, Any]:
  """The model, optimizer and static options; returns (setup, init_state).

  init_state(keys [S], params=None) -> TrainState stacked over S seeds, with
  fresh parameters or the given stacked ones (used under jax.eval_shape for
  restoring, and for real for a fresh run). `learning_rate`, if given,
  replaces config.learning_rate (the autoencoder's pre-training uses its own).
  `pixel_stats` are the training images' (mean, std) for
  normalization='dataset'.
  """
  if learning_rate is not None and learning_rate != config.learning_rate:
    config = ml_collections.ConfigDict(config.to_dict())
    config.learning_rate = learning_rate
  spec = models.get_spec(config.model)
  channels = spec.input_channels
  mesh = make_mesh(batch_size)
  sample = jnp.zeros((1, config.image_size, config.image_size, channels),
                     jnp.float32)
  probe = models.make_model(config, num_classes)
  variable_shapes = jax.eval_shape(
      lambda: probe.init(jax.random.key(0), sample, train=False))
  rules = freezing.resolve_rules(config)
  trainable = freezing.trainable_mask(variable_shapes["params"], rules)
  # A BatchNorm whose parameters are all frozen runs in inference mode and
  # keeps its statistics (Keras's trainable=False).
  frozen_norms = models.frozen_norm_paths(variable_shapes.get("batch_stats", {}),
                                          trainable)
  model = models.make_model(config, num_classes, frozen_norms=frozen_norms)
  task = tasks.make_task(config, num_classes)
  hyper = variants.Hyper.from_config(config)

  def make_tx(scalars):  # one model's optimizer (only masked parameters move)
    base, _ = optimizers.make_optimizer(config, steps_per_epoch, scalars)
    return freezing.make_optimizer(base, trainable)

  tx = make_tx(hyper.per_model[0])
  schedule = optimizers.make_schedule(config, steps_per_epoch)
  regularizer = None
  if any(m[f] for m in hyper.per_model for f in optimizers.REGULARIZERS):
    regularizer = functools.partial(optimizers.regularization, config=config,
                                    trainable_mask=trainable)
  augment_options = augment.AugmentOptions.from_config(config.augment)
  # Adversarial training (classifiers only: the autoencoder ignores it)
  # attacks the whole network from the pixels, so it needs the images.
  adversarial = (attacks.parse_attack(config.adversarial)
                 if config.get("adversarial", "") and
                 config.task == "classifier" else None)
  body_frozen = "body" in trainable and not any(
      jax.tree.leaves(trainable["body"]))
  side_by_side_folds = kfold.side_by_side(config)
  feature_cache = bool(config.cache_features and config.task == "classifier"
                       and body_frozen and not augment_options.any
                       and adversarial is None and not side_by_side_folds)
  mean, std = data.normalization_constants(config, channels, pixel_stats)
  setup = Setup(
      model=model, task=task, tx=tx, schedule=schedule, trainable=trainable,
      augment=augment_options, image_size=config.image_size,
      channels=channels, mean=tuple(mean), std=tuple(std),
      dtype=jnp.bfloat16 if config.compute_dtype == "bfloat16" else jnp.float32,
      batch_size=batch_size, steps_per_epoch=steps_per_epoch, mesh=mesh,
      seed_parallelism=resolve_seed_parallelism(config.seed_parallelism),
      feature_cache=feature_cache, regularizer=regularizer,
      adversarial=adversarial, hyper=hyper, make_tx=make_tx,
      per_model_eval=side_by_side_folds)
  sum_names = tasks.zero_sums(task)
  if regularizer is not None:
    sum_names["regularization_sum"] = jnp.zeros((), jnp.float32)

  def init_one(init_model, key, params, batch_stats):
    variables = init_model.init(key, sample, train=False)
    if params is None:
      params = variables["params"]
    if batch_stats is None:
      batch_stats = variables.get("batch_stats", {})
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      batch_stats=batch_stats, opt_state=tx.init(params),
                      metric_sums=dict(sum_names),
                      nonfinite_step=jnp.full((), -1, jnp.int32))

  # Variants with other initialisers init their models with their own
  # (same shapes); training runs `model` (an initialiser is not applied).
  groups = [(model if one is config else models.make_model(
      one, num_classes, frozen_norms=frozen_norms), models_slice)
            for one, models_slice in variants.init_groups(config)]

  def init_state(keys, params=None, batch_stats=None) -> TrainState:
    parts = [jax.vmap(functools.partial(init_one, init_model))(
        keys[part], *(None if x is None else jax.tree.map(
            lambda a, part=part: a[part], x) for x in (params, batch_stats)))
             for init_model, part in groups]
    if len(parts) == 1:
      return parts[0]
    return jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)

  return setup, init_state


def abstract_state(init_state, keys, setup: Setup):
  """Shapes, dtypes and shardings of the stacked state, for restoring."""
  shapes = jax.eval_shape(init_state, keys)
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=setup.replicated),
      shapes)


def fresh_variables(init_state, keys) -> dict:
  """A fresh start's random variables ({'params', 'batch_stats'}, numpy,
  stacked over seeds), computed as a run computes them (one program at the
  run-once level: bit for bit a fresh run's, and one compile where flax's
  eager init compiles each random op on its own)."""
  return distributed.fetch(jax.jit(
      lambda k: model_variables(init_state(k)),
      compiler_options=RUN_ONCE)(keys.init))


def pretrained_variables(config, workdir, init_state, keys, name):
  """Fresh variables ({'params', 'batch_stats'}) with config.init's
  pre-trained parts merged in (numpy, stacked over seeds), or None for a
  random start."""
  pretrained = initialization.load_pretrained(config, workdir)
  if pretrained is None:
    return None
  loaded, source = pretrained
  fresh = fresh_variables(init_state, keys)
  merged = initialization.merge_variables(fresh, loaded, source,
                                          reinit=config.get("reinit", ()))
  logging.info("%s: body initialised from %s", name, source)
  return merged


def initial_state(config, workdir, store, setup, init_state, keys, name,
                   initial_params, log=logging.info):
  """(state, history): the latest checkpoint's, or a fresh start from
  `initial_params` ({'params', 'batch_stats'}: pre-trained, merged) or
  random."""
  latest = store.latest_step()
  if latest is not None:
    # Resume: the checkpoint holds every weight, head included; no
    # initialisation path runs on top of it.
    state, history = store.restore(
        latest, abstract_state(init_state, keys.init, setup))
    log("%s: resumed %s from step %d", name, workdir, latest)
    return state, history
  if config.init != "random" and initial_params is None:
    initial_params = pretrained_variables(config, workdir, init_state, keys, name)
  initial = initial_params or {}
  state = jax.jit(init_state, out_shardings=setup.replicated,
                  compiler_options=RUN_ONCE)(
      keys.init, initial.get("params"), initial.get("batch_stats"))
  log("%s: starting from scratch in %s (init=%s, seeds %s)", name,
      workdir, config.init, seeds_of(config))
  return state, []

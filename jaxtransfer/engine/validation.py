"""`validate(config)`: every value that types alone cannot check, before
anything is read or written. The run's own fields are checked here (task,
model, init, sizes, optimizer, augmentation, k-fold, joint losses, ...), the
data's by data/, and each feature's by the check it registered
(core/registry.py: `registry.config_check`), so this module names no
feature."""

from __future__ import annotations

import jax

from jaxtransfer import data, models
from jaxtransfer.core import configlib, registry
from jaxtransfer.core.errors import UserError
from jaxtransfer.data import cifar10_c, views
from jaxtransfer.engine import attacks, freezing, initialization, optimizers, variants
from jaxtransfer.models import conversion

require, one_of = configlib.require, configlib.one_of


def validate(config) -> None:
  """Raises UserError naming the first field whose value cannot work."""
  spec = _check_model(config)
  data.validate_data_fields(config)
  _check_choices_and_sizes(config, spec)
  optimizers.validate(config)
  for attack in tuple(config.get("eval", {}).get("attacks", ())):
    attacks.parse_attack(attack)
  # --mode=eval runs them after training: a bad one fails before it
  cifar10_c.parse(",".join(tuple(config.get("eval", {}).get("corruptions", ()))))
  require(config.image_size >= spec.min_image_size, "image_size",
          config.image_size, f"model {config.model!r} needs images of at "
          f"least {spec.min_image_size} px")
  if spec.validate is not None:
    spec.validate(config)
  _check_augmentation(config)
  _check_adversarial(config)
  _check_devices(config)
  _check_validation_split(config)
  _check_task(config)
  _check_init(config)
  for check in registry.config_checks():  # each feature's own fields
    check(config)
  if tuple(config.get("variants", ()) or ()):
    variants.validate(config)
    for variant, one in zip(variants.variants(config),
                            variants.variant_configs(config)):
      try:
        validate(one)
      except UserError as e:
        raise UserError(f"config.variants ({variant['name']}): {e}") from None



def _check_model(config):
  """task, model, init against the model's registry entry; its spec."""
  one_of(config, "task", configlib.TASKS)
  spec = models.get_spec(config.model)
  if config.task == "joint" and spec.build_joint is None:
    joint = [n for n, s in models.MODELS.items() if s.build_joint is not None]
    raise UserError(f"config.task='joint' needs a model with a decoder "
                    f"({', '.join(joint)}); config.model={config.model!r} "
                    "has none")
  one_of(config, "init", configlib.INITS)
  if config.init != "random":
    require(config.init in spec.pretrained_inits, "init", config.init,
            f"does not apply to model {config.model!r} (it takes: random, "
            f"{', '.join(spec.pretrained_inits)})")
  return spec


def _check_choices_and_sizes(config, spec) -> None:
  one_of(config, "compute_dtype", configlib.COMPUTE_DTYPES)
  one_of(config, "kernel_init", configlib.KERNEL_INITS)
  one_of(config, "bias_init", configlib.BIAS_INITS)
  one_of(config, "seed_parallelism", configlib.SEED_PARALLELISM)
  head = config.get("head", "")
  require(head in spec.heads, "head", head,
          f"model {config.model!r} takes "
          f"{' or '.join(repr(h) for h in spec.heads)} ('' is its own head)")
  if config.trainable_rules is None:
    one_of(config, "freeze", tuple(spec.freeze_presets))
  else:
    freezing.check_rules(config.trainable_rules)
  for field in ("num_epochs", "num_seeds", "batch_size", "eval_batch_size",
                "keep_checkpoints", "log_every_steps", "head_hidden"):
    require(config[field] >= 1, field, config[field], "must be at least 1")
  require(config.dropout == -1.0 or 0.0 <= config.dropout < 1.0, "dropout",
          config.dropout, "must be in [0, 1), or -1 for the model's own rate")
  require(config.bn_momentum == -1.0 or 0.0 <= config.bn_momentum < 1.0,
          "bn_momentum", config.bn_momentum,
          "must be in [0, 1), or -1 for the model's own")
  for name, fraction in dict(config.class_fraction).items():
    require(isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0,
            f"class_fraction.{name}", fraction, "must be in (0, 1]")


def _check_augmentation(config) -> None:
  degrees = tuple(config.augment.rotation_degrees)
  require(len(degrees) == 2 and degrees[0] <= degrees[1],
          "augment.rotation_degrees", degrees,
          "expected (low, high), low <= high")
  for name in ("brightness", "contrast", "saturation", "hue"):
    value = config.augment.get(name, 0.0)  # (older configs lack them)
    if name == "hue":
      require(0.0 <= value <= 0.5, "augment.hue", value,
              "must be in [0, 0.5] (0 = off): the hue shift ~ U(-x, x) of a "
              "full turn")
    else:
      require(0.0 <= value < float("inf"), f"augment.{name}", value,
              "must be a finite number >= 0 (0 = off): the factor is drawn "
              "from U(max(0, 1 - x), 1 + x)")
  views.validate_fields(config)


def _check_adversarial(config) -> None:
  if not config.get("adversarial", ""):
    return
  try:
    attacks.parse_attack(config.adversarial)
  except UserError as e:
    problem = str(e)
    own_prefix = f"attack {config.adversarial!r}"  # parse_attack's
    if problem.startswith(own_prefix):
      problem = problem[len(own_prefix):].lstrip(": ")
    raise UserError(f"config.adversarial={config.adversarial!r}: {problem}"
                    ) from None


def _check_devices(config) -> None:
  devices = jax.device_count()
  for field in ("batch_size", "pretrain.batch_size"):
    value = (config.pretrain.batch_size if field.startswith("pretrain")
             else config[field])
    require(value % devices == 0, field, value,
            f"does not divide by the {devices} devices (each takes an equal "
            "share of the batch)")


def _check_validation_split(config) -> None:
  if config.validation == "kfold":
    require(isinstance(config.folds, int) and config.folds >= 2, "folds",
            config.folds, "k-fold cross-validation needs at least 2 folds")
    require(isinstance(config.fold, int) and -1 <= config.fold < config.folds,
            "fold", config.fold, f"must be -1 (all {config.folds} side by "
            f"side) or a fold 0..{config.folds - 1}")
    if config.fold < 0:
      require(config.num_seeds == 1, "num_seeds", config.num_seeds,
              "must be 1 with fold=-1 (the folds are the models side by "
              "side; fold k is seeded config.seed + k)")
      require(not tuple(config.get("variants", ()) or ()), "variants",
              "(...)", "cannot be combined with all folds side by side")
      require(not config.get("adversarial", ""), "adversarial",
              config.adversarial, "is not supported with fold=-1")
  if config.validation == "holdout" and not config.get("holdout_fraction"):
    require(config.holdout_size >= 1, "holdout_size", config.holdout_size,
            "validation='holdout' needs at least one held-out example")


def _check_task(config) -> None:
  if config.task == "joint":
    alpha, beta = config.joint.alpha, config.joint.beta
    for field in ("alpha", "beta", "delta"):
      value = config.joint[field]
      require(value >= 0, f"joint.{field}", value, "a loss weight is >= 0")
    if config.joint.delta:
      grid = config.joint.jigsaw_grid
      require(grid >= 2 and config.image_size % grid == 0,
              "joint.jigsaw_grid", grid,
              f"must be >= 2 and divide config.image_size="
              f"{config.image_size} (the tiles are equal squares)")
    require(alpha > 0 or beta > 0, "joint.alpha", alpha,
            "alpha=beta=0 trains nothing (set alpha, beta or both > 0)")
  if config.task == "autoencoder":
    require(config.init == "random", "init", config.init,
            "the autoencoder task trains from a random initialisation")
    require(config.model == "alexnet", "model", config.model,
            "the autoencoder task is built on the 'alexnet' body")


def _check_init(config) -> None:
  if config.init in ("imagenet", "checkpoint"):
    require(bool(config.init_weights), "init_weights", config.init_weights,
            f"init={config.init!r} needs the directory to load from"
            + (" (make it with: "
               f"{conversion.command_for_model(config.model)})"
               if config.init == "imagenet"
               else " (a classifier run's workdir)"))
  if config.init == "autoencoder" and config.task == "classifier":
    require(config.pretrain.num_epochs >= 1 or bool(config.ae_checkpoint),
            "pretrain.num_epochs", config.pretrain.num_epochs,
            "must be at least 1 when no ae_checkpoint is given")
  if tuple(config.get("reinit", ()) or ()):
    initialization.check_reinit(config, initialization.param_shapes(config))

"""Helpers for the python config files in `configs/`, and config validation.

The config files follow big_vision: `--config=configs/x.py:arg1,key=value`
passes `arg1,key=value` to `get_config`, which reads it with `parse_arg`. Every
config starts from `configs/default.py`, which returns a *locked* ConfigDict: a
config file or a `--config.field=value` override that names a field that does
not exist fails at once instead of being silently added.

`validate` checks the values that types alone cannot (positive sizes, known
choices). Which fields define a run (so that a workdir is never resumed with a
different experiment) is workdir.py's.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from typing import Any

import ml_collections

from jaxtransfer.core.errors import UserError

TASKS = ("classifier", "autoencoder", "joint")
INITS = ("random", "autoencoder", "imagenet", "checkpoint")
VALIDATION_SPLITS = ("test", "holdout", "kfold")
COMPUTE_DTYPES = ("float32", "bfloat16")
NORMALIZATIONS = ("imagenet", "dataset", "none")
STORED_RESIZE = ("crop", "stretch")
SEED_PARALLELISM = ("auto", "vmap", "unroll")
# models/common.py's initialisers (tests/test_initializers.py keeps these in
# step; named here so a config is checked without importing jax).
KERNEL_INITS = ("torch", "lecun_normal", "lecun_uniform", "he_normal",
                "he_uniform", "glorot_normal", "glorot_uniform",
                "random_normal", "random_uniform", "truncated_normal",
                "zeros", "ones")
BIAS_INITS = ("",) + KERNEL_INITS


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """Parses `"smoke,num_seeds=3"` against `spec` (name -> default value).

  A bare name sets a boolean option to True; `key=value` is converted to the
  type of the default. Unknown names are an error naming the known ones.
  """
  result = ml_collections.ConfigDict(dict(spec))
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, raw = item.partition("=")
    if key not in spec:
      raise UserError(
          f"unknown config argument {key!r} in {arg!r}; known arguments: "
          f"{', '.join(sorted(spec)) or '(none)'}")
    default = spec[key]
    if not eq:
      if not isinstance(default, bool):
        raise UserError(f"config argument {key!r} needs a value: {key}=...")
      result[key] = True
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise UserError(f"config argument {key}={raw!r}: expected true/false")
      result[key] = raw.lower() in ("true", "1")
    else:
      try:
        result[key] = type(default)(raw)
      except ValueError:
        raise UserError(
            f"config argument {key}={raw!r}: expected {type(default).__name__}"
        ) from None
  return result


def known_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All dotted field names of a config, sub-configs included."""
  names = []
  for key, value in config.items():
    name = prefix + key
    names.append(name)
    if isinstance(value, ml_collections.ConfigDict):
      names.extend(known_fields(value, name + "."))
  return names


def unknown_field_message(field: str, config: ml_collections.ConfigDict) -> str:
  """One line for a field the config does not have, with the nearest known ones."""
  names = known_fields(config)
  near = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
  hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
  return (f"unknown config field {field!r}{hint} "
          f"(known fields: {', '.join(sorted(n for n in names if '.' not in n))})")


def _config_spec(argv: list[str]) -> str | None:
  """`FILE[:ARG]` of `--config=FILE[:ARG]` (or `--config FILE[:ARG]`), if given."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def config_path_in(argv: list[str]) -> str | None:
  """The config file named on a command line, if any."""
  spec = _config_spec(argv)
  return spec.split(":", 1)[0] if spec is not None else None


def _load_config_file(path: str, arg: str | None):
  spec = importlib.util.spec_from_file_location("_jaxtransfer_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def explain_load_error(argv: list[str], exc: BaseException) -> str:
  """One line for an error raised while absl loaded the config file or
  applied a `--config.field=value` override: loads the file again on its own
  to tell a missing file, a bad field in the file and a bad override apart."""
  spec = _config_spec(argv)
  if spec is None:
    return f"config: {exc}"
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    return f"config file {path} does not exist"
  try:
    config = _load_config_file(path, arg or None)
  except UserError as e:
    return f"{path}: {e}"
  except AttributeError as e:  # a field set in the file that does not exist
    field = str(e).split("'")[1] if "'" in str(e) else str(e)
    return f"{path}: " + unknown_field_message(field, _base_config(path))
  except Exception as e:  # pylint: disable=broad-except
    return f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  fields = known_fields(config)
  for arg_ in argv:
    if arg_.startswith("--config."):
      field = arg_[len("--config."):].split("=", 1)[0]
      if field not in fields:
        return unknown_field_message(field, config)
  return f"config: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _base_config(path: str):
  """configs/default.py next to `path`, for listing the known fields."""
  default = os.path.join(os.path.dirname(os.path.abspath(path)), "default.py")
  return _load_config_file(default, None)


def _require(ok: bool, field: str, value: Any, problem: str) -> None:
  if not ok:
    raise UserError(f"config.{field}={value!r}: {problem}")


def _one_of(config, field: str, choices) -> None:
  value = config[field]
  if value not in choices:
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(
        f"config.{field}={value!r} is not one of {', '.join(map(str, choices))}"
        f"{hint}")


def validate_data_fields(config) -> None:
  """The data fields whose values need no dataset to be checked (also run by
  data.load_dataset, which callers may use without `validate`)."""
  _one_of(config, "validation", VALIDATION_SPLITS)
  _one_of(config, "stored_resize", STORED_RESIZE)
  _one_of(config, "normalization", NORMALIZATIONS)
  _one_of(config, "resample", ("", "undersample", "oversample"))
  for field in ("train_subset", "train_sample", "val_subset", "holdout_size",
                "stored_size"):
    _require(config[field] >= 0, field, config[field],
             "must be 0 (all) or a positive count")
  from jaxtransfer.data import corruptions
  corruptions.parse(config.get("corruption", ""))
  fraction = config.get("holdout_fraction", 0.0)
  _require(0.0 <= fraction < 1.0, "holdout_fraction", fraction,
           "must be in [0, 1) (0: use holdout_size)")
  if not config.val_split:
    _require(config.validation == "holdout", "val_split", config.val_split,
             "may be empty only with validation='holdout' (the validation "
             "examples then come from train_split)")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises UserError naming the first field whose value cannot work."""
  # Imported here: models pulls in jax, which the config files do not need.
  from jaxtransfer import models
  from jaxtransfer.engine import freezing, optimizers

  _one_of(config, "task", TASKS)
  spec = models.get_spec(config.model)
  if config.task == "joint" and spec.build_joint is None:
    joint = [n for n, s in models.MODELS.items() if s.build_joint is not None]
    raise UserError(f"config.task='joint' needs a model with a decoder "
                    f"({', '.join(joint)}); config.model={config.model!r} "
                    "has none")
  _one_of(config, "init", INITS)
  if config.init != "random":
    _require(config.init in spec.pretrained_inits, "init", config.init,
             f"does not apply to model {config.model!r} (it takes: random, "
             f"{', '.join(spec.pretrained_inits)})")
  validate_data_fields(config)
  _one_of(config, "compute_dtype", COMPUTE_DTYPES)
  _one_of(config, "kernel_init", KERNEL_INITS)
  _one_of(config, "bias_init", BIAS_INITS)
  _one_of(config, "seed_parallelism", SEED_PARALLELISM)
  head = config.get("head", "")
  _require(head in spec.heads, "head", head,
           f"model {config.model!r} takes "
           f"{' or '.join(repr(h) for h in spec.heads)} ('' is its own head)")
  if config.trainable_rules is None:
    _one_of(config, "freeze", tuple(spec.freeze_presets))
  else:
    freezing.check_rules(config.trainable_rules)
  for field in ("num_epochs", "num_seeds", "batch_size", "eval_batch_size",
                "keep_checkpoints", "log_every_steps", "head_hidden"):
    _require(config[field] >= 1, field, config[field], "must be at least 1")
  _require(config.dropout == -1.0 or 0.0 <= config.dropout < 1.0, "dropout",
           config.dropout, "must be in [0, 1), or -1 for the model's own rate")
  _require(config.bn_momentum == -1.0 or 0.0 <= config.bn_momentum < 1.0,
           "bn_momentum", config.bn_momentum,
           "must be in [0, 1), or -1 for the model's own")
  for name, fraction in dict(config.class_fraction).items():
    _require(isinstance(fraction, (int, float)) and 0.0 < fraction <= 1.0,
             f"class_fraction.{name}", fraction, "must be in (0, 1]")
  optimizers.validate(config)
  from jaxtransfer.engine import attacks
  from jaxtransfer.features.active import active_learning
  if active_learning.enabled(config):
    active_learning.validate(config)
  for attack in tuple(config.get("eval", {}).get("attacks", ())):
    attacks.parse_attack(attack)
  _require(
      config.image_size >= spec.min_image_size, "image_size",
      config.image_size,
      f"model {config.model!r} needs images of at least "
      f"{spec.min_image_size} px")
  if spec.validate is not None:
    spec.validate(config)
  degrees = tuple(config.augment.rotation_degrees)
  _require(len(degrees) == 2 and degrees[0] <= degrees[1],
           "augment.rotation_degrees", degrees, "expected (low, high), low <= high")
  for name in ("brightness", "contrast", "saturation", "hue"):
    value = config.augment.get(name, 0.0)  # (older configs lack them)
    if name == "hue":
      _require(0.0 <= value <= 0.5, "augment.hue", value,
               "must be in [0, 0.5] (0 = off): the hue shift ~ U(-x, x) of a "
               "full turn")
    else:
      _require(0.0 <= value < float("inf"), f"augment.{name}", value,
               "must be a finite number >= 0 (0 = off): the factor is drawn "
               "from U(max(0, 1 - x), 1 + x)")
  _validate_views_and_crop(config)
  if config.get("adversarial", ""):
    try:
      attacks.parse_attack(config.adversarial)
    except UserError as e:
      problem = str(e)
      own_prefix = f"attack {config.adversarial!r}"  # parse_attack's
      if problem.startswith(own_prefix):
        problem = problem[len(own_prefix):].lstrip(": ")
      raise UserError(f"config.adversarial={config.adversarial!r}: {problem}"
                      ) from None
  import jax
  devices = jax.device_count()
  for field in ("batch_size", "pretrain.batch_size"):
    value = config.pretrain.batch_size if field.startswith("pretrain") else config[field]
    _require(value % devices == 0, field, value,
             f"does not divide by the {devices} devices (each takes an equal "
             "share of the batch)")
  if config.validation == "kfold":
    _require(isinstance(config.folds, int) and config.folds >= 2, "folds",
             config.folds, "k-fold cross-validation needs at least 2 folds")
    _require(isinstance(config.fold, int) and -1 <= config.fold < config.folds,
             "fold", config.fold, f"must be -1 (all {config.folds} side by "
             f"side) or a fold 0..{config.folds - 1}")
    if config.fold < 0:
      _require(config.num_seeds == 1, "num_seeds", config.num_seeds,
               "must be 1 with fold=-1 (the folds are the models side by "
               "side; fold k is seeded config.seed + k)")
      _require(not tuple(config.get("variants", ()) or ()), "variants",
               "(...)", "cannot be combined with all folds side by side")
      _require(not config.get("adversarial", ""), "adversarial",
               config.adversarial, "is not supported with fold=-1")
  if config.validation == "holdout" and not config.get("holdout_fraction"):
    _require(config.holdout_size >= 1, "holdout_size", config.holdout_size,
             "validation='holdout' needs at least one held-out example")
  if config.task == "joint":
    alpha, beta = config.joint.alpha, config.joint.beta
    for field in ("alpha", "beta", "delta"):
      value = config.joint[field]
      _require(value >= 0, f"joint.{field}", value, "a loss weight is >= 0")
    if config.joint.delta:
      grid = config.joint.jigsaw_grid
      _require(grid >= 2 and config.image_size % grid == 0,
               "joint.jigsaw_grid", grid,
               f"must be >= 2 and divide config.image_size="
               f"{config.image_size} (the tiles are equal squares)")
    _require(alpha > 0 or beta > 0, "joint.alpha", alpha,
             "alpha=beta=0 trains nothing (set alpha, beta or both > 0)")
  if config.task == "autoencoder":
    _require(config.init == "random", "init", config.init,
             "the autoencoder task trains from a random initialisation")
    _require(config.model == "alexnet", "model", config.model,
             "the autoencoder task is built on the 'alexnet' body")
  if config.init in ("imagenet", "checkpoint"):
    from jaxtransfer.models import conversion
    _require(bool(config.init_weights), "init_weights", config.init_weights,
             f"init={config.init!r} needs the directory to load from"
             + (" (make it with: "
                f"{conversion.command_for_model(config.model)})"
                if config.init == "imagenet" else " (a classifier run's workdir)"))
  if config.init == "autoencoder" and config.task == "classifier":
    _require(config.pretrain.num_epochs >= 1 or bool(config.ae_checkpoint),
             "pretrain.num_epochs", config.pretrain.num_epochs,
             "must be at least 1 when no ae_checkpoint is given")
  if tuple(config.get("reinit", ()) or ()):
    from jaxtransfer.engine import initialization
    initialization.check_reinit(config, initialization.param_shapes(config))
  if tuple(config.get("stages", ()) or ()):
    from jaxtransfer.features import stages
    stages.validate(config)
  if tuple(config.get("variants", ()) or ()):
    from jaxtransfer.engine import sweeps
    sweeps.validate(config)
    for variant, one in zip(sweeps.variants(config),
                            sweeps.variant_configs(config)):
      try:
        validate(one)
      except UserError as e:
        raise UserError(f"config.variants ({variant['name']}): {e}") from None


def _pair(config, field: str, default, low_ok, ordered_ok, problem: str):
  """config.augment.<field> as a (low, high) pair, checked."""
  value = config.augment.get(field, default)
  ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
      isinstance(x, (int, float)) and abs(x) < float("inf") for x in value)
  _require(ok and low_ok(value[0]) and ordered_ok(*value), f"augment.{field}",
           tuple(value) if isinstance(value, list) else value, problem)


def _validate_views_and_crop(config) -> None:
  """Seed 001's six views and RandomResizedCrop (older configs lack them)."""
  from jaxtransfer.core.workdir import LEGACY_DEFAULTS  # (workdir imports this)
  default_ranges = {name: LEGACY_DEFAULTS[f"augment.six_views_{name}"]
                    for name in ("brightness", "contrast", "saturation", "hue")}
  crop = config.augment.get("six_views_crop", 0.86)
  _require(0.0 < crop <= 1.0, "augment.six_views_crop", crop,
           "must be in (0, 1]: the crop's side as a fraction of the image's")
  for name in ("brightness", "contrast", "saturation"):
    _pair(config, f"six_views_{name}", default_ranges[name],
          lambda lo: lo >= 0.0,
          lambda lo, hi: lo <= hi,
          "expected a factor range (low, high), 0 <= low <= high")
  _pair(config, "six_views_hue", default_ranges["hue"], lambda lo: lo >= -0.5,
        lambda lo, hi: lo <= hi <= 0.5,
        "expected a hue shift range (low, high), -0.5 <= low <= high <= 0.5")
  _pair(config, "rrc_scale", (0.08, 1.0), lambda lo: lo > 0.0,
        lambda lo, hi: lo <= hi <= 1.0,
        "expected an area fraction range (low, high), 0 < low <= high <= 1")
  _pair(config, "rrc_ratio", (0.75, 4 / 3), lambda lo: lo > 0.0,
        lambda lo, hi: lo <= hi,
        "expected an aspect ratio range (low, high), 0 < low <= high")
  if (config.augment.get("six_views", False)
      and config.augment.get("six_views_epoch", True)
      and config.get("adversarial", "") and config.task == "classifier"):
    raise UserError(
        "config.augment.six_views_epoch=True: not supported with "
        f"config.adversarial={config.adversarial!r} (the attack's augmentation "
        "does not see each example's view); set six_views_epoch=False for a "
        "random view per image")


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON-round-trippable dict of the config (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten(tree, prefix: str = "") -> dict[str, Any]:
  """A nested dict (or ConfigDict) -> {'dotted.field': value}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat

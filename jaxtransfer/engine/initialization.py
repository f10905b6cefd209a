"""Where a fresh run's parameters come from (`config.init`).

Order of precedence, as big_vision's train loop: a checkpoint in the workdir
(resume: handled by training.py, which then never calls this module), then a
pre-trained body, then random. Pre-trained weights replace the `body` subtree
of freshly initialised parameters *by name*; each module of the head is
loaded when the source has it with the same shapes (another run's head, or
torchvision's classifier for `alexnet_torchvision` and the zoo with
config.head='': fc6/fc7 of AlexNet and VGG), and otherwise
stays random (the last layer of another class count). BatchNorm statistics
come along with the modules they belong to. Every source is a parameter tree
with the model's names, so a new source is one more entry in
`load_pretrained`. Which `init` values a model takes is in its registry entry
(`models.ModelSpec.pretrained_inits`).
"""

from __future__ import annotations

import os
import re
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer import models
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import freezing
from jaxtransfer.models import conversion
from jaxtransfer.core.errors import UserError

AUTOENCODER_SUBDIR = "autoencoder"


def autoencoder_run_dir(config, workdir: str) -> str:
  """config.ae_checkpoint, or the autoencoder that ae_init trains in the workdir."""
  return config.ae_checkpoint or os.path.join(workdir, AUTOENCODER_SUBDIR)


def _stack(tree, num_seeds: int):
  """A tree of one model's arrays, repeated along a new leading seed axis."""
  return jax.tree.map(
      lambda a: np.broadcast_to(np.asarray(a), (num_seeds, *np.shape(a))).copy(),
      tree)


def _from_run(stored, num_seeds: int, source: str):
  """Per-seed parameters from a run's stacked parameters [S_source, ...]:
  seed k from seed k when the run has as many seeds, else its first seed."""
  leading = {np.shape(a)[0] if np.ndim(a) else None
             for a in jax.tree.leaves(stored)}
  if len(leading) != 1 or None in leading:
    raise UserError(f"{source} does not hold a jaxtransfer run's parameters "
                    "(expected every array to have the same leading seed axis)")
  source_seeds = leading.pop()
  if source_seeds == num_seeds:
    return stored
  logging.info("%s has %d seeds, this run %d: every seed starts from its "
               "first", source, source_seeds, num_seeds)
  return _stack(jax.tree.map(lambda a: np.asarray(a)[0], stored), num_seeds)


def load_pretrained(config, workdir: str) -> tuple[dict[str, Any], str] | None:
  """(parameter subtrees to load, description) for config.init; None = random.

  Arrays have a leading axis of config.num_seeds (one copy per seed, or per
  seed from a run with as many seeds). The tree always has `body`; it has
  `head` for init='checkpoint' (the source run's head) and, from ImageNet
  weights converted with --with_classifier, for `alexnet_torchvision` and
  the torchvision zoo with config.head=''; and `batch_stats` when the source
  has BatchNorm. ImageNet weights must be of the model's architecture
  (conversion.json's arch; 'alexnet' when it has none).
  """
  if config.init == "random":
    return None
  if config.init == "autoencoder":
    source = autoencoder_run_dir(config, workdir)
    if not os.path.exists(source):
      raise UserError(
          f"autoencoder checkpoint {source} does not exist (set "
          "config.ae_checkpoint to an autoencoder run's workdir, or leave it "
          "'' to pre-train one into <workdir>/autoencoder)")
    params, step = checkpoints.load_params(source)
    _require_body(params, source, "an autoencoder run")
    return ({"body": _from_run(params["body"], config.num_seeds, source)},
            f"autoencoder {source} step {step}")
  if config.init == "imagenet":
    model = getattr(config, "model", "alexnet")
    if not config.init_weights:
      raise UserError(
          "config.init='imagenet' needs config.init_weights=DIR holding "
          f"converted torchvision weights; make DIR with: "
          f"{conversion.command_for_model(model)}")
    if not os.path.isdir(os.path.join(os.path.expanduser(config.init_weights),
                                      conversion.PARAMS_SUBDIR)):
      raise UserError(
          f"no converted weights in {config.init_weights} (expected "
          f"{conversion.PARAMS_SUBDIR}/ written by: "
          f"{conversion.command_for_model(model)})")
    arch = conversion.converted_arch(config.init_weights)
    known = conversion.ARCHS.get(arch)
    if known is None or model not in known.initialises:
      raise UserError(
          f"{config.init_weights} holds torchvision {arch} weights, which do "
          f"not fit config.model={model!r}; convert the {model} weights with: "
          f"{conversion.command_for_model(model)}")
    params = conversion.load_converted(config.init_weights)
    _require_body(params, config.init_weights, f"converted {arch} weights")
    loaded = {"body": params["body"]}
    if params.get("batch_stats"):
      loaded["batch_stats"] = params["batch_stats"]
    if model == known.model and config.get("head", "") == "":
      if "classifier" in params:  # converted --with_classifier
        loaded["head"] = params["classifier"]
      else:
        logging.info("%s has no classifier (convert with --with_classifier "
                     "to load it): the head starts random",
                     config.init_weights)
    return (_stack(loaded, config.num_seeds),
            f"ImageNet weights {config.init_weights}")
  if config.init == "checkpoint":
    if not config.init_weights:
      raise UserError("config.init='checkpoint' needs config.init_weights=the "
                      "workdir of a jaxtransfer classifier run")
    params, stats, step = checkpoints.load_variables(config.init_weights)
    _require_body(params, config.init_weights, "a classifier run")
    loaded = {"body": params["body"]}
    if "head" in params:
      loaded["head"] = params["head"]
    if stats:
      loaded["batch_stats"] = stats
    loaded = _from_run(loaded, config.num_seeds, config.init_weights)
    return loaded, f"checkpoint {config.init_weights} step {step}"
  raise UserError(f"config.init={config.init!r} is not supported")


def _require_body(params, source: str, what: str) -> None:
  if "body" not in params:
    raise UserError(f"{source} is not {what}: its parameters have no 'body' "
                    f"(found {sorted(params)})")


def _mismatches(prefix: str, expected_tree, found_tree) -> list[str]:
  """Paths whose arrays are missing, unexpected or of another shape; shapes
  are compared and shown per model (without the leading seed axis)."""
  expected = dict(freezing.named_leaves(expected_tree))
  found = dict(freezing.named_leaves(found_tree))
  shape = lambda a: tuple(np.shape(a))[1:]
  problems = []
  for name in sorted(set(expected) | set(found)):
    if name not in found:
      problems.append(f"{prefix}/{name}: missing (expected {shape(expected[name])})")
    elif name not in expected:
      problems.append(f"{prefix}/{name}: unexpected {shape(found[name])}")
    elif shape(found[name]) != shape(expected[name]):
      problems.append(f"{prefix}/{name}: shape {shape(found[name])}, "
                      f"expected {shape(expected[name])}")
  return problems


def _cast_like(loaded, fresh):
  return jax.tree.map(lambda new, old: np.asarray(new, dtype=old.dtype),
                      loaded, fresh)


def merge_pretrained(fresh_params: dict[str, Any], loaded: dict[str, Any],
                     source: str) -> dict[str, Any]:
  """fresh_params with `body` (and each `head` module that fits) replaced.

  The body must match by name and shape: any mismatch is an error listing
  every offending path, and nothing is loaded. A head module that is missing
  or of other shapes (the last layer of another class count) is not loaded:
  the fresh one stays, and the log says so.
  """
  problems = _mismatches("body", fresh_params["body"], loaded["body"])
  if problems:
    raise UserError(f"parameters from {source} do not fit the model's body: "
                    + "; ".join(problems))
  merged = {**fresh_params, "body": _cast_like(loaded["body"], fresh_params["body"])}
  if "head" in loaded and "head" in fresh_params:
    fitting = _fitting_head_modules(fresh_params, loaded)
    merged["head"] = {
        module: (_cast_like(loaded["head"][module], arrays)
                 if module in fitting else arrays)
        for module, arrays in fresh_params["head"].items()}
    kept_fresh = [m for m in fresh_params["head"] if m not in fitting]
    if kept_fresh:
      logging.info("Head modules %s not loaded from %s (missing or other "
                   "shapes): they start random", kept_fresh, source)
    else:
      logging.info("Head loaded from %s", source)
  return merged


def _fitting_head_modules(fresh_params, loaded) -> set[str]:
  """The head modules the source has with the fresh ones' shapes."""
  source = loaded.get("head", {})
  return {module for module, arrays in fresh_params.get("head", {}).items()
          if module in source
          and not _mismatches(f"head/{module}", arrays, source[module])}


def merge_variables(fresh: dict[str, Any], loaded: dict[str, Any],
                    source: str, reinit=()) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a fresh init with the pre-trained parts
  merged in: parameters as `merge_pretrained`; the BatchNorm statistics of
  every module whose parameters were loaded, when the source has them.
  Parameters whose paths fully match a `reinit` regex (config.reinit), and
  the BatchNorm statistics of their modules, keep their fresh values."""
  params = merge_pretrained(fresh["params"], loaded, source)
  loaded_modules = {"body": set(fresh["params"]["body"]),
                    "head": _fitting_head_modules(fresh["params"], loaded)}
  stats = fresh.get("batch_stats") or {}
  found = loaded.get("batch_stats") or {}
  if stats and found:
    stats = {part: {module: (_cast_like(found[part][module], arrays)
                             if module in loaded_modules.get(part, ())
                             and module in found.get(part, {})
                             and not _mismatches(f"{part}/{module}", arrays,
                                                 found[part][module])
                             else arrays)
                    for module, arrays in modules.items()}
             for part, modules in stats.items()}
  return keep_fresh({"params": params, "batch_stats": stats}, fresh, reinit)


def reinit_matches(params, patterns) -> dict[str, list[str]]:
  """regex -> the parameter paths ('head/fc2/kernel') it fully matches."""
  names = [name for name, _ in freezing.named_leaves(params)]
  return {pattern: [n for n in names if re.fullmatch(pattern, n)]
          for pattern in patterns}


def check_reinit(config, params) -> None:
  """UserError naming config.reinit for a regex that is invalid or matches
  no parameter of `params` (a tree of the model's parameters or shapes), or
  for reinit without weights to load."""
  patterns = tuple(config.get("reinit", ()) or ())
  if not patterns:
    return
  if config.init == "random":
    raise UserError(f"config.reinit={patterns!r}: only applies when weights "
                    "are loaded (config.init='random' starts every parameter "
                    "fresh)")
  for pattern in patterns:
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise UserError(f"config.reinit: bad regex {pattern!r}: {e}") from None
  for pattern, matched in reinit_matches(params, patterns).items():
    if not matched:
      near = sorted({n.rsplit("/", 1)[0] + "/.*"
                     for n, _ in freezing.named_leaves(params)})
      raise UserError(f"config.reinit: {pattern!r} matches no parameter "
                      f"(regexes fully match paths; modules: {', '.join(near)})")


def keep_fresh(merged: dict[str, Any], fresh: dict[str, Any],
               patterns) -> dict[str, Any]:
  """`merged` with the parameters matching `patterns` (and the BatchNorm
  statistics of their modules) put back to their `fresh` values."""
  patterns = tuple(patterns or ())
  if not patterns:
    return merged
  matches = reinit_matches(fresh["params"], patterns)
  unmatched = [p for p, names in matches.items() if not names]
  if unmatched:
    raise UserError(f"config.reinit: {unmatched[0]!r} matches no parameter")
  names = {n for found in matches.values() for n in found}
  modules = {n.rsplit("/", 1)[0] for n in names}
  pick = lambda chosen: lambda path, old, new: (
      new if chosen(freezing.path_name(path)) else old)
  params = jax.tree_util.tree_map_with_path(
      pick(lambda n: n in names), merged["params"], fresh["params"])
  stats = merged.get("batch_stats") or {}
  if stats:
    stats = jax.tree_util.tree_map_with_path(
        pick(lambda n: n.rsplit("/", 1)[0] in modules), stats,
        fresh["batch_stats"])
  logging.info("Re-initialised (config.reinit %s): %s", list(patterns),
               sorted(names))
  return {"params": params, "batch_stats": stats}


def param_shapes(config, num_classes: int | None = None):
  """The model's parameter tree as shapes (jax.eval_shape: nothing is
  computed), for checking regexes over parameter paths before a run."""
  spec = models.get_spec(config.get("model", "alexnet"))
  num_classes = num_classes or len(tuple(config.get("classes", ()))) or 10
  model = models.make_model(config, num_classes)
  sample = jax.ShapeDtypeStruct(
      (1, config.image_size, config.image_size, spec.input_channels),
      jnp.float32)
  return jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), sample)["params"]

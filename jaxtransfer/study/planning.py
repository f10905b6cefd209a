"""A study's plan: its arms (from a grid, a list, or both), each arm's
run config built and validated, the source run and the autoencoders the
arms share. Nothing here trains or writes (study/runner.py runs the plan)."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
from typing import Any

import ml_collections

from jaxtransfer.core import configlib, workdir as workdir_lib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import experiment, initialization, variants, validation
from jaxtransfer.models import conversion


# config.study's own fields; everything else in a study config is the base
# config every arm starts from.
STUDY_FIELDS = ("grid", "arms", "inits", "freezes", "colour_by", "panel_by",
                "source", "sources", "columns", "vectorize")
SOURCE_SUBDIR = "source"
# Fields that change what data an arm reads: arms that agree on them share
# one read of the data.
DATA_FIELDS = ("dataset", "data_dir", "train_split", "val_split",
               "stored_size", "stored_resize", "train_subset", "train_sample",
               "validation", "holdout_size", "holdout_fraction", "val_subset",
               "classes", "class_fraction", "normalization", "corruption",
               "resample")


def is_study(config) -> bool:
  return "study" in config


@dataclasses.dataclass(frozen=True)
class Arm:
  name: str
  overrides: dict[str, Any]  # dotted field -> value
  notes: dict[str, str] = dataclasses.field(default_factory=dict)


def _study_get(config, field: str, default=None):
  return config.study[field] if field in config.study else default


def grid_axes(config) -> list[tuple[str, tuple]]:
  """The swept fields of the grid, in order, each with its values."""
  axes = []
  for legacy, field in (("inits", "init"), ("freezes", "freeze")):
    values = _study_get(config, legacy)
    if values is not None:
      axes.append((field, tuple(values)))
  grid = _study_get(config, "grid")
  if grid:
    pairs = (configlib.flatten(grid).items()
             if isinstance(grid, (dict, ml_collections.ConfigDict))
             else [tuple(pair) for pair in grid])
    for field, values in pairs:
      if not isinstance(values, (tuple, list)) or not values:
        raise UserError(f"config.study.grid: {field!r} needs a non-empty "
                        f"tuple of values, got {values!r}")
      axes.append((field, tuple(values)))
  return axes


def _format_value(field: str, value: Any) -> str:
  if isinstance(value, str):
    return value
  if isinstance(value, (tuple, list)):
    value = "_".join(str(v) for v in value)
  return f"{field.rsplit('.', 1)[-1]}={value}"


def plan_arms(config) -> list[Arm]:
  """Every arm of the study: the explicit arms crossed with the grid."""
  axes = grid_axes(config)
  explicit = _study_get(config, "arms") or ()
  bases = []
  for i, entry in enumerate(explicit):
    entry = dict(entry)
    notes = {str(k): str(v) for k, v in dict(entry.pop("notes", {})).items()}
    name = entry.pop("name", None) or "-".join(
        _format_value(f, v) for f, v in entry.items()) or f"arm{i + 1}"
    bases.append(Arm(workdir_lib.safe_name(str(name)), entry, notes))
  if not bases:
    bases = [Arm("", {})]
  arms = []
  for base in bases:
    for values in itertools.product(*(v for _, v in axes)):
      overrides = {**base.overrides,
                   **{f: v for (f, _), v in zip(axes, values)}}
      parts = [base.name] if base.name else []
      parts += [_format_value(f, v) for (f, _), v in zip(axes, values)]
      arms.append(Arm(workdir_lib.safe_name("-".join(parts)) or "base", overrides,
                      base.notes))
  if not axes and not explicit:
    raise UserError("config.study has no arms: give study.grid or study.arms")
  names = [a.name for a in arms]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise UserError(f"config.study: several arms are named {duplicates}; "
                    "give the explicit arms distinct 'name's")
  return arms


def swept_fields(config) -> list[str]:
  """The fields the arms set, in order (the report's columns)."""
  fields = []
  for arm in plan_arms(config):
    fields.extend(f for f in arm.overrides if f not in fields)
  return fields


def _base_dict(config) -> dict[str, Any]:
  fields = configlib.to_dict(config)
  del fields["study"]
  return fields


def _check_known(field: str, known, where: str = "config.study: arm") -> None:
  if field not in known:
    near = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"{where} field {field!r} is not a config field{hint}")


def _set(node: ml_collections.ConfigDict, field: str, value: Any, known) -> None:
  _check_known(field, known)
  *parents, leaf = field.split(".")
  for parent in parents:
    node = node[parent]
  if isinstance(value, dict):
    value = ml_collections.ConfigDict(value)
  node[leaf] = value


def arm_config(config, arm: Arm, workdir: str):
  """An ordinary run config for one arm: the study's fields with the arm's
  overrides, minus the study."""
  run = ml_collections.ConfigDict(_base_dict(config))
  known = configlib.known_fields(run)
  for field, value in arm.overrides.items():
    _set(run, field, value, known)
  if "freeze" in arm.overrides and "trainable_rules" not in arm.overrides:
    run.trainable_rules = None
  if run.init not in ("imagenet", "checkpoint"):
    run.init_weights = ""
  return run


def missing_input(config) -> str | None:
  """Why an arm cannot run here, or None."""
  if config.init == "imagenet":
    if not config.init_weights:
      return ("no converted ImageNet weights (config.init_weights is empty; "
              "make them with: "
              f"{conversion.command_for_model(config.model)})")
    if not os.path.isdir(os.path.join(config.init_weights,
                                      conversion.PARAMS_SUBDIR)):
      return (f"no converted ImageNet weights in {config.init_weights} "
              "(make them with: "
              f"{conversion.command_for_model(config.model)})")
  return None


SOURCE_PREFIX = "source:"  # an arm's init_weights naming a study source


def _one_source(config, field: str, overrides, subdir: str, workdir: str):
  if not isinstance(overrides, (dict, ml_collections.ConfigDict)):
    raise UserError(f"config.study.{field}={overrides!r}: expected a dict of "
                    "field overrides for the source run")
  for name in ("stages", "active"):
    if name in overrides:
      raise UserError(f"config.study.{field}.{name}: the source is one "
                      "ordinary run")
  try:
    run = arm_config(config, Arm(subdir, configlib.flatten(
        dict(overrides))), workdir)
    run.stages = ()
    run.active.strategy = ""
    validation.validate(run)
  except UserError as e:
    text = str(e).replace("config.study: arm field", "field")
    raise UserError(f"config.study.{field}: {text}") from None
  return os.path.join(workdir, subdir), run


def _sources(config, workdir: str) -> dict[str, tuple[str, Any]]:
  """name -> (<workdir>/<dir>, run config) of the source runs trained before
  the arms: config.study.source (name '', <workdir>/source) and each of
  config.study.sources {name: overrides} (<workdir>/source_<name>)."""
  found = {}
  overrides = _study_get(config, "source")
  if overrides:
    found[""] = _one_source(config, "source", overrides, SOURCE_SUBDIR,
                            workdir)
  for name, more in dict(_study_get(config, "sources") or {}).items():
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(name)):
      raise UserError(f"config.study.sources: {name!r} is not a usable name "
                      "(letters, digits, '_', '.', '-')")
    found[name] = _one_source(config, f"sources.{name}", more,
                              f"{SOURCE_SUBDIR}_{name}", workdir)
  return found


def _arm_source(arm_name: str, run, sources) -> None:
  """An init='checkpoint' arm starts from the study's source: '' (no
  init_weights) is config.study.source, 'source:NAME' one of
  config.study.sources."""
  if run.init != "checkpoint":
    return
  weights = run.init_weights
  if not weights and "" in sources:
    run.init_weights = sources[""][0]
  elif weights.startswith(SOURCE_PREFIX):
    name = weights[len(SOURCE_PREFIX):]
    if name not in sources:
      raise UserError(f"study arm {arm_name}: init_weights={weights!r} names "
                      f"no source (config.study.sources: "
                      f"{', '.join(n for n in sources if n) or 'none'})")
    run.init_weights = sources[name][0]


def _autoencoder_dirs(runs: list[tuple[dict, Any]], workdir: str) -> dict:
  """One pre-trained autoencoder per distinct pre-training config among the
  autoencoder arms: the first in <workdir>/autoencoder, others beside it
  with a hash of their config. Sets each arm's ae_checkpoint."""
  dirs: dict[str, tuple[str, Any]] = {}
  for arm, run in runs:
    if run.init != "autoencoder" or run.ae_checkpoint or arm["status"] == "skipped":
      continue
    ae = experiment.pretrain_config(run)
    key = json.dumps(workdir_lib.identity(configlib.to_dict(ae)), sort_keys=True)
    if key not in dirs:
      name = initialization.AUTOENCODER_SUBDIR + (
          "" if not dirs else "-" + hashlib.sha256(key.encode()).hexdigest()[:8])
      dirs[key] = (os.path.join(workdir, name), ae)
    run.ae_checkpoint = dirs[key][0]
  return {path: ae for path, ae in dirs.values()}


def plan_study(config, workdir: str):
  """(plan for study.json, [(plan entry, run config)], autoencoders): every
  arm's config built and validated before anything is trained."""
  unknown = [k for k in config.study.keys() if k not in STUDY_FIELDS]
  if unknown:
    raise UserError(f"config.study: unknown field(s) {unknown}; known: "
                    f"{', '.join(STUDY_FIELDS)}")
  arms = plan_arms(config)
  fields = swept_fields(config)
  plan = {"arms": [], "axes": fields, "num_seeds": config.num_seeds,
          "num_epochs": config.num_epochs,
          "colour_by": _study_get(config, "colour_by") or "",
          "panel_by": _study_get(config, "panel_by") or ""}
  known = configlib.known_fields(ml_collections.ConfigDict(_base_dict(config)))
  for field in fields:  # a misspelt swept field, before what names it
    _check_known(field, known, "config.study.grid: swept" if field in dict(
        grid_axes(config)) else "config.study: arm")
  for key in ("colour_by", "panel_by"):
    if plan[key] and plan[key] not in fields:
      raise UserError(f"config.study.{key}={plan[key]!r} is not a swept field "
                      f"({', '.join(fields)})")
  sources = _sources(config, workdir)
  runs = []
  for arm in arms:
    run = arm_config(config, arm, workdir)
    _arm_source(arm.name, run, sources)
    reason = missing_input(run)
    if reason is None:
      try:
        validation.validate(run)
      except UserError as e:
        raise UserError(f"study arm {arm.name}: {e}") from None
    run_dict = configlib.to_dict(run)  # JSON values, for study.json
    values = {f: variants.get_field(run_dict, f) for f in fields}
    entry = {"name": arm.name, "values": values, "init": run.init,
             "freeze": run.freeze, "status": "skipped" if reason else "planned",
             "reason": reason, "notes": arm.notes}
    plan["arms"].append(entry)
    runs.append((entry, run))
  if all(arm["status"] == "skipped" for arm, _ in runs):
    raise UserError(f"config.study: no arm can run here: {runs[0][0]['name']}"
                    f" has {runs[0][0]['reason']}")
  plan["columns"] = list(_study_get(config, "columns") or ())
  autoencoders = _autoencoder_dirs(runs, workdir)
  if "" in sources:
    plan["source"] = SOURCE_SUBDIR
  if sources:
    plan["sources"] = [os.path.basename(d) for d, _ in sources.values()]
    autoencoders = {**dict(sources.values()), **autoencoders}
  return plan, runs, autoencoders

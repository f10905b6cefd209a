"""A study: named arms, each an ordinary run of `config.num_seeds` seeds
trained side by side, then a report.

The arms come from `config.study`:
  grid    a grid over any config fields: {'optimizer': ('sgd', 'adam'),
          'augment': {'hflip': (False, True)}} (a dict, nested for dotted
          fields; its keys come sorted) or ((field, values), ...) pairs in
          the order you want (dotted names allowed: ('augment.hflip', ...)).
  arms    an explicit list of named arms, each a dict of overrides:
          ({'name': 'case1', 'lr_values': (...), 'freeze': 'none'}, ...);
          with a grid as well, every arm is crossed with the grid.
  inits, freezes   shorthand for the grid over 'init' and 'freeze' (seed
          000's study, configs/study.py).
  colour_by, panel_by   which swept field colours the plots' lines and
          which makes their panels ('' = chosen from the swept fields).
  source  a dict of overrides for a classifier run trained first into
          <workdir>/source (resumable, as an arm); every arm with
          init='checkpoint' and no init_weights starts from it (seed 001's
          transfer with a jaxtransfer run as the source model).
  columns the report's table in a study's own terms (report_columns.py):
          metrics, config fields and per-arm notes, e.g. seed 001's
          ('train_accuracy', 'val_accuracy', 'lr', 'epochs', ...).
  An explicit arm may carry 'notes': {column: text} for the table (not a
  config field; e.g. {'technique': 'fine-tuning'}).

  <workdir>/study.json          the arms (name, swept values), and per arm:
                                done / skipped (why)
  <workdir>/autoencoder/        an autoencoder pre-trained once for all the
                                autoencoder arms that share its config
  <workdir>/source/             the source run of study.source
  <workdir>/<arm>/              each arm's run: config.json, metrics.jsonl
                                (a line per epoch and seed), checkpoints/
  <workdir>/report.md, *.png    the report (report.py)

A killed study started again with the same command skips finished arms and
resumes the unfinished one from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import itertools
import json
import os
import re
import time
from typing import Any

from absl import logging
import ml_collections
import tqdm

from jaxtransfer import (active, configlib, data, distributed, experiment,
                         initialization, report, stages, training,
                         workdir as workdir_lib)
from jaxtransfer.errors import UserError

STUDY_FILE = "study.json"
# config.study's own fields; everything else in a study config is the base
# config every arm starts from.
STUDY_FIELDS = ("grid", "arms", "inits", "freezes", "colour_by", "panel_by",
                "source", "columns")
SOURCE_SUBDIR = "source"
# Fields that change what data an arm reads: arms that agree on them share
# one read of the data.
DATA_FIELDS = ("dataset", "data_dir", "train_split", "val_split",
               "stored_size", "stored_resize", "train_subset", "train_sample",
               "validation", "holdout_size", "holdout_fraction", "val_subset",
               "classes", "class_fraction", "normalization")


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


def _safe(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.=+,-]+", "_", name)


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
    bases.append(Arm(_safe(str(name)), entry, notes))
  if not bases:
    bases = [Arm("", {})]
  arms = []
  for base in bases:
    for values in itertools.product(*(v for _, v in axes)):
      overrides = {**base.overrides,
                   **{f: v for (f, _), v in zip(axes, values)}}
      parts = [base.name] if base.name else []
      parts += [_format_value(f, v) for (f, _), v in zip(axes, values)]
      arms.append(Arm(_safe("-".join(parts)) or "base", overrides,
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


def _set(node: ml_collections.ConfigDict, field: str, value: Any, known) -> None:
  if field not in known:
    near = difflib.get_close_matches(field, known, n=1, cutoff=0.6)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"config.study: arm field {field!r} is not a config "
                    f"field{hint}")
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
    from jaxtransfer import conversion
    if not config.init_weights:
      return ("no converted ImageNet weights (config.init_weights is empty; "
              f"make them with: {conversion.CONVERT_COMMAND})")
    if not os.path.isdir(os.path.join(config.init_weights,
                                      conversion.PARAMS_SUBDIR)):
      return (f"no converted ImageNet weights in {config.init_weights} "
              f"(make them with: {conversion.CONVERT_COMMAND})")
  return None


def _source(config, workdir: str):
  """(<workdir>/source, its run config) when config.study.source asks for a
  source run, else None."""
  overrides = _study_get(config, "source")
  if not overrides:
    return None
  if not isinstance(overrides, (dict, ml_collections.ConfigDict)):
    raise UserError(f"config.study.source={overrides!r}: expected a dict of "
                    "field overrides for the source run")
  for field in ("stages", "active"):
    if field in overrides:
      raise UserError(f"config.study.source.{field}: the source is one "
                      "ordinary run")
  try:
    run = arm_config(config, Arm(SOURCE_SUBDIR, configlib.flatten(
        dict(overrides))), workdir)
    run.stages = ()
    run.active.strategy = ""
    configlib.validate(run)
  except UserError as e:
    text = str(e).replace("config.study: arm field", "field")
    raise UserError(f"config.study.source: {text}") from None
  return os.path.join(workdir, SOURCE_SUBDIR), run


def _autoencoder_dirs(runs: list[tuple[dict, Any]], workdir: str) -> dict:
  """One pre-trained autoencoder per distinct pre-training config among the
  autoencoder arms: the first in <workdir>/autoencoder, others beside it
  with a hash of their config. Sets each arm's ae_checkpoint."""
  dirs: dict[str, tuple[str, Any]] = {}
  for arm, run in runs:
    if run.init != "autoencoder" or run.ae_checkpoint or arm["status"] == "skipped":
      continue
    ae = experiment.pretrain_config(run)
    key = json.dumps(configlib.identity(configlib.to_dict(ae)), sort_keys=True)
    if key not in dirs:
      name = initialization.AUTOENCODER_SUBDIR + (
          "" if not dirs else "-" + hashlib.sha256(key.encode()).hexdigest()[:8])
      dirs[key] = (os.path.join(workdir, name), ae)
    run.ae_checkpoint = dirs[key][0]
  return {path: ae for path, ae in dirs.values()}


class _StudyProgress:
  """One bar for the whole study: epochs done of all arms, with an ETA."""

  def __init__(self, enabled: bool, total_epochs: int):
    self._bar = tqdm.tqdm(total=total_epochs, disable=not enabled,
                          dynamic_ncols=True, unit="epoch", position=0,
                          mininterval=1.0)

  def start(self, label: str) -> None:
    self._bar.set_description(label)

  def advance(self, epochs: int = 1) -> None:
    self._bar.update(epochs)

  def close(self) -> None:
    self._bar.close()


def _plan(config, workdir: str):
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
  for key in ("colour_by", "panel_by"):
    if plan[key] and plan[key] not in fields:
      raise UserError(f"config.study.{key}={plan[key]!r} is not a swept field "
                      f"({', '.join(fields)})")
  source = _source(config, workdir)
  runs = []
  for arm in arms:
    run = arm_config(config, arm, workdir)
    if source and run.init == "checkpoint" and not run.init_weights:
      run.init_weights = source[0]
    reason = missing_input(run)
    if reason is None:
      try:
        configlib.validate(run)
      except UserError as e:
        raise UserError(f"study arm {arm.name}: {e}") from None
    run_dict = configlib.to_dict(run)  # JSON values, for study.json
    values = {f: _dotted(run_dict, f) for f in fields}
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
  if source:
    plan["source"] = SOURCE_SUBDIR
    autoencoders = {source[0]: source[1], **autoencoders}
  return plan, runs, autoencoders


def _dotted(config, field: str):
  """config['a']['b'] for 'a.b' (a dict or a ConfigDict)."""
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def run(config, workdir: str, *, fresh: bool = False) -> dict[str, Any]:
  """Trains every arm that can run (resuming), then writes the report. The
  study's workdir stays locked throughout; each arm locks its own too."""
  plan, runs, autoencoders = _plan(config, workdir)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  datasets = _DatasetCache()
  runnable = [run for arm, run in runs if arm["status"] != "skipped"]
  if runnable:  # bad data fails before anything is written
    datasets.get(runnable[0])
  for run_config in runnable:  # as does a labelling budget the pool lacks
    if active.enabled(run_config):
      active.validate(run_config, len(datasets.get(run_config).train))
  with workdir_lib.claim(workdir, config_dict, fresh):
    workdir_lib.record_config(workdir, config_dict)
    return _run(config, workdir, plan, runs, autoencoders, datasets)


class _DatasetCache:
  """Arms that read the same data share one read of it."""

  def __init__(self):
    self._loaded: dict[str, data.Dataset] = {}

  @staticmethod
  def _key(config) -> str:
    fields = configlib.to_dict(config)
    key = {f: fields.get(f) for f in DATA_FIELDS}
    if key["class_fraction"] or key["train_sample"]:
      key["seed"] = fields["seed"]  # which examples a fraction/sample keeps
    return json.dumps(key, sort_keys=True)

  def get(self, config) -> data.Dataset:
    key = self._key(config)
    if key not in self._loaded:
      self._loaded[key] = data.load_dataset(config)
    return self._loaded[key]


def _run(config, workdir, plan, runs, autoencoders, datasets) -> dict[str, Any]:
  study_file = os.path.join(workdir, STUDY_FILE)
  primary = distributed.is_primary()
  if primary:
    workdir_lib.write_json_atomic(study_file, plan)
  runnable = [(arm, run) for arm, run in runs if arm["status"] != "skipped"]
  total = sum(_arm_epochs(run) for _, run in runnable) + sum(
      ae.num_epochs for ae in autoencoders.values())
  progress = _StudyProgress(config.progress_bar and primary, total)
  try:
    # Pre-trained runs the arms load: the source run, autoencoders.
    for index, (ae_dir, ae_config) in enumerate(autoencoders.items(), start=1):
      kind = ("source" if ae_config.task == "classifier" else "autoencoder")
      shared_by = [a["name"] for a, r in runnable
                   if ae_dir in (r.ae_checkpoint, r.init_weights)]
      progress.start(f"{kind} {index}/{len(autoencoders)} (shared by "
                     f"{len(shared_by)} arms)")
      progress.advance(_epochs_done(ae_config, ae_dir))
      training.train_and_evaluate(
          ae_config, ae_dir, name=kind, dataset=datasets.get(ae_config),
          hooks=training.Hooks(label=f"  {kind}", bar_position=1,
                               on_epoch_end=lambda _: progress.advance(),
                               verbose=False))
      if primary and kind == "autoencoder":
        experiment.write_reconstructions(ae_config, ae_dir)
    for index, (arm, run_config) in enumerate(runnable, start=1):
      label = f"arm {index}/{len(runnable)} {arm['name']}"
      progress.start(label)
      arm_dir = os.path.join(workdir, arm["name"])
      progress.advance(_epochs_done(run_config, arm_dir))
      started = time.perf_counter()
      hooks = training.Hooks(label=f"  {arm['name']}", bar_position=1,
                             on_epoch_end=lambda _: progress.advance(),
                             verbose=False)
      if active.enabled(run_config):
        rounds = active.run(run_config, arm_dir,
                            dataset=datasets.get(run_config), hooks=hooks)
        finals = [r for r in rounds if r["round"] == rounds[-1]["round"]]
      elif stages.enabled(run_config):
        history = stages.run(run_config, arm_dir,
                             dataset=datasets.get(run_config), hooks=hooks)
        finals = [r for r in history if r["epoch"] == history[-1]["epoch"]]
        if tuple(run_config.eval.attacks):  # the last stage's model
          experiment.evaluate(run_config, arm_dir, "latest")
      else:
        history = training.train_and_evaluate(
            run_config, arm_dir, name=arm["name"],
            dataset=datasets.get(run_config), hooks=hooks)
        finals = [r for r in history if r["epoch"] == history[-1]["epoch"]]
        if tuple(run_config.eval.attacks):  # robustness, for the report
          experiment.evaluate(run_config, arm_dir, "latest")
      arm["status"] = "done"
      logging.info("%s done in %.0f s: final val_loss %s", label,
                   time.perf_counter() - started,
                   ", ".join(f"{r['val_loss']:.4f}" for r in finals))
      if primary:
        workdir_lib.write_json_atomic(study_file, plan)
  finally:
    progress.close()
  if primary:
    logging.info("Report: %s", report.write_report(workdir))
  return plan


def _arm_epochs(config) -> int:
  """Epochs an arm trains in all (an active-learning arm: every round of
  every seed)."""
  if active.enabled(config):
    return config.num_epochs * config.num_seeds * len(active.round_sizes(config))
  if stages.enabled(config):
    return stages.total_epochs(config)
  return config.num_epochs


def _epochs_done(config, run_dir: str) -> int:
  """Epochs a run directory already holds (for the study's progress bar)."""
  if active.enabled(config):
    return len(active.read_rounds(run_dir)) * config.num_epochs
  records = workdir_lib.read_metrics(run_dir)  # a staged arm's: continuous
  return min(max((r["epoch"] for r in records), default=0),
             _arm_epochs(config))

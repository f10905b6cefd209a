"""Staged runs (seed 001: feature extraction, then fine-tuning, in one run).

  python -m jaxtransfer.main --config=configs/staged.py:smoke --workdir=DIR

With `config.stages` set, a run is an ordered chain of stages in one workdir.
Each stage is a dict of field overrides applied to the base config (as a
study's arms; dotted names or nested dicts), with an optional 'name':
its own `freeze` / `trainable_rules`, `num_epochs`, optimizer, learning rate
and schedule, augmentation, and `reinit`. Stage k trains as an ordinary
resumable run in <workdir>/stage_<k>_<name>/. Stage 0 starts from the base
config's `init` (and the base `reinit`); stage k > 0 from every weight of
stage k-1's final checkpoint (body, head, BatchNorm statistics:
init='checkpoint'), except the parameters its own `reinit` regexes match,
which start from a fresh random initialisation (the seed's classifier
retrained "from scratch"). Each stage's schedule runs over its own epochs.

<workdir>/metrics.jsonl is every stage's records in order, with `stage`,
`stage_name`, a continuous `epoch` and `step` across stages (the stage's own
as `stage_epoch`, `stage_step`): the report and plots show one curve. It is
rewritten after every epoch. A killed run resumes: finished stages are
skipped, an unfinished one resumes from its checkpoint, and a kill at a
boundary starts the next stage from the previous one's final checkpoint; the
result is bit-identical to an uninterrupted run. The feature cache applies
per stage (a frozen, un-augmented stage caches the body's features; a later
stage that unfreezes the body does not).

A stage may not change the data, the model or the seeds (those are the
run's), nor `init` (stage k > 0 starts from stage k-1).
"""

from __future__ import annotations

import glob
import json
import os
import re
from typing import Any

from absl import logging
import jax
import ml_collections

from jaxtransfer import data
from jaxtransfer.core import (checkpoints, configlib, distributed, provenance,
                              registry, workdir as workdir_lib)
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import (experiment, freezing, initialization, training,
                                validation)

RUN_KIND = "stages"
STAGE_PREFIX = "stage_"
# Fields a stage may not set (top-level names): the data, the model, the
# seeds, and where stage 0's weights come from.
FIXED_FIELDS = frozenset({
    "task", "model", "head", "head_hidden", "image_size", "seed", "num_seeds",
    "seed_parallelism", "init", "init_weights", "ae_checkpoint", "pretrain",
    "stages", "study", "active", "dataset", "data_dir", "train_split",
    "val_split", "stored_size", "stored_resize", "train_subset",
    "train_sample", "validation", "holdout_size", "holdout_fraction",
    "val_subset", "classes", "class_fraction", "normalization", "corruption",
    "resample", "arch", "encoder", "classifier", "low_level_skip",
})


def enabled(config) -> bool:
  return bool(tuple(config.get("stages", ()) or ()))


def stage_name(k: int, entry) -> str:
  """Stage k's name (its directory's suffix): its `name`, else stage<k>."""
  return workdir_lib.safe_name(str(entry.get("name", "") or f"stage{k}"))


def _entries(config) -> list[tuple[str, dict[str, Any]]]:
  """(name, {dotted field: value}) per stage, in order."""
  stages = config.stages
  if not isinstance(stages, (tuple, list)):
    raise UserError(f"config.stages={stages!r}: expected a tuple of dicts")
  entries = []
  for k, entry in enumerate(stages):
    if not isinstance(entry, (dict, ml_collections.ConfigDict)):
      raise UserError(f"config.stages[{k}]={entry!r}: expected a dict of "
                      "field overrides")
    entry = dict(entry)
    name = stage_name(k, entry)
    entry.pop("name", None)
    entries.append((name, configlib.flatten(entry)))
  names = [n for n, _ in entries]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise UserError(f"config.stages: several stages are named {duplicates}")
  return entries


def _set(run, k: int, field: str, value: Any, known) -> None:
  top = field.split(".")[0]
  if top in FIXED_FIELDS:
    raise UserError(f"config.stages[{k}].{field}={value!r}: a stage may not "
                    "change the data, model, seeds or init (those are the "
                    "run's; stage k > 0 starts from stage k-1)")
  # optimizer_kwargs' keys are optax argument names: any may be set
  if field not in known and not field.startswith("optimizer_kwargs."):
    message = configlib.unknown_field_message(field, run)
    raise UserError(f"config.stages[{k}]: {message.split(' (known')[0]}")
  *parents, leaf = field.split(".")
  node = run
  for parent in parents:
    node = node[parent]
  if isinstance(value, dict):
    value = ml_collections.ConfigDict(value)
  node[leaf] = value


def stage_dir(workdir: str, k: int, name: str) -> str:
  return os.path.join(workdir, f"{STAGE_PREFIX}{k}_{name}")


def stage_configs(config, workdir: str = "") -> list[tuple[str, Any]]:
  """[(name, ordinary run config)] per stage; stage k > 0 loads stage
  k-1's run in `workdir` (init='checkpoint')."""
  base = configlib.to_dict(config)
  base.pop("study", None)
  base["stages"] = []
  out = []
  for k, (name, overrides) in enumerate(_entries(config)):
    run = ml_collections.ConfigDict(base)
    known = configlib.known_fields(run)
    for field, value in overrides.items():
      _set(run, k, field, value, known)
    if "freeze" in overrides and "trainable_rules" not in overrides:
      run.trainable_rules = None
    if k > 0:
      run.init = "checkpoint"
      run.init_weights = os.path.abspath(
          stage_dir(workdir, k - 1, out[-1][0]))
      run.ae_checkpoint = ""
      if "reinit" not in overrides:  # the base reinit is stage 0's
        run.reinit = ()
    elif run.init == "autoencoder" and not run.ae_checkpoint:
      run.ae_checkpoint = os.path.abspath(
          initialization.autoencoder_run_dir(run, workdir))
    out.append((name, run))
  return out


def total_epochs(config) -> int:
  return sum(run.num_epochs for _, run in stage_configs(config, "."))


def _stage_error(k: int, name: str, error: UserError) -> UserError:
  text = str(error)
  if text.startswith("config."):
    return UserError(f"config.stages[{k}].{text[len('config.'):]}")
  return UserError(f"config.stages[{k}] ({name}): {text}")


def validate(config) -> None:
  """One line naming the field for a staged config that cannot work; reads
  nothing and writes nothing."""
  for other in registry.run_kinds():  # another kind of run in the same config
    if other.name != RUN_KIND and other.enabled(config):
      raise UserError(f"config.stages: not supported together with "
                      f"{other.title} ({other.switch(config)})")
  shapes = None
  for k, (name, run) in enumerate(stage_configs(config, ".")):
    if run.num_epochs < 1:
      raise UserError(f"config.stages[{k}].num_epochs={run.num_epochs}: "
                      "must be at least 1")
    if run.lr_schedule == "step" and run.lr_step_epochs >= run.num_epochs:
      raise UserError(
          f"config.stages[{k}].lr_step_epochs={run.lr_step_epochs}: the "
          f"stage's step schedule never steps within its num_epochs="
          f"{run.num_epochs} (each stage's schedule runs over its own epochs)")
    try:
      validation.validate(run)  # its piecewise boundaries below its epochs, ...
      shapes = shapes or initialization.param_shapes(run)
      mask = freezing.trainable_mask(shapes, freezing.resolve_rules(run))
    except UserError as e:
      raise _stage_error(k, name, e) from None
    if not any(jax.tree.leaves(mask)):
      field, value = (("trainable_rules", tuple(map(tuple, run.trainable_rules)))
                      if run.trainable_rules is not None
                      else ("freeze", run.freeze))
      raise UserError(f"config.stages[{k}].{field}={value!r}: freezes every "
                      "parameter (the stage would train nothing)")


def combined_metrics(staged, workdir: str) -> list[dict[str, Any]]:
  """Every stage's metrics records in order, with the stage and a
  continuous epoch and step."""
  records, epochs, steps = [], 0, 0
  for k, (name, run) in enumerate(staged):
    own = workdir_lib.read_metrics(stage_dir(workdir, k, name))
    for record in own:
      records.append({**record, "stage": k, "stage_name": name,
                      "stage_epoch": record["epoch"],
                      "stage_step": record["step"],
                      "epoch": record["epoch"] + epochs,
                      "step": record["step"] + steps})
    epochs += run.num_epochs
    steps += max((r["step"] for r in own), default=0)
  return records


def _write_metrics(staged, workdir: str) -> list[dict[str, Any]]:
  records = combined_metrics(staged, workdir)
  if distributed.is_primary():
    path = os.path.join(workdir, workdir_lib.METRICS_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
      for record in records:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    os.replace(tmp, path)
  return records


def run(config, workdir: str, *, fresh: bool = False, dataset=None,
        hooks=None, invocation=None) -> list[dict[str, Any]]:
  """Runs (or resumes) every stage in order; returns the combined metrics."""
  validation.validate(config)  # every stage too (validate above)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  staged = stage_configs(config, workdir)
  dirs = [stage_dir(workdir, k, name) for k, (name, _) in enumerate(staged)]
  if not fresh:
    for path, (_, run_config) in zip(dirs, staged):
      workdir_lib.check(path, configlib.to_dict(run_config))
    finished = [checkpoints.finished_history(d, c.num_epochs) is not None
                for d, (_, c) in zip(dirs, staged)]
    if all(finished):
      with workdir_lib.lock(workdir):
        return _write_metrics(staged, workdir)
    started = [checkpoints.latest_step(d) is not None for d in dirs]
    for k in range(len(staged) - 1):
      if not finished[k] and any(started[k + 1:]):
        raise UserError(
            f"{dirs[k]} has fewer epochs than config.stages[{k}] asks for "
            f"({staged[k][1].num_epochs}), but a later stage already started "
            "from it; use a new --workdir, or --fresh")
  dataset = dataset or data.load_dataset(staged[0][1])
  hooks = hooks or training.Hooks()
  # --fresh: the stage directories go to archive/ with the rest.
  with workdir_lib.claim(workdir, config_dict, fresh, whole=True):
    workdir_lib.record_config(workdir, config_dict)
    provenance.record(workdir, invocation)  # the command line, if main's
    first = staged[0][1]
    if first.init == "autoencoder" and not config.ae_checkpoint:
      # <workdir>/autoencoder, pre-trained once (resumable) for stage 0
      training.train_and_evaluate(experiment.pretrain_config(first),
                                  first.ae_checkpoint, name="autoencoder",
                                  dataset=dataset)
    _write_metrics(staged, workdir)
    offset = 0
    for k, ((name, run_config), path) in enumerate(zip(staged, dirs)):
      if k > 0 and training.stop_requested():  # at a stage boundary
        raise training.Interrupted(path, 0, 0, saved=False)
      stage_hooks = training.Hooks(
          label=hooks.label or f"stage {k} {name}",
          bar_position=hooks.bar_position, verbose=hooks.verbose,
          on_epoch_end=_after_epoch(staged, workdir, hooks, offset))
      logging.info("Stage %d %s (%d of %d) in %s", k, name, k + 1, len(staged),
                   path)
      training.train_and_evaluate(run_config, path, name=f"stage {k} {name}",
                                  dataset=dataset, hooks=stage_hooks)
      offset += run_config.num_epochs
    return _write_metrics(staged, workdir)


def _after_epoch(staged, workdir, hooks, offset: int):
  def callback(epoch: int) -> None:
    _write_metrics(staged, workdir)
    if hooks.on_epoch_end is not None:
      hooks.on_epoch_end(offset + epoch)
  return callback


def last_stage(config, workdir: str) -> tuple[Any, str]:
  """(config, run directory) of the last stage (what --mode=eval evaluates)."""
  staged = stage_configs(config, workdir)
  name, run_config = staged[-1]
  path = stage_dir(workdir, len(staged) - 1, name)
  stored = workdir_lib.read_config(path)
  if stored and len(staged) > 1:  # where stage k-1 was (a workdir moved since)
    run_config.init_weights = stored.get("init_weights", run_config.init_weights)
  return run_config, path


def _epochs_done(config, run_dir: str) -> int:
  """Epochs the staged run in `run_dir` has filed (its continuous epochs)."""
  records = workdir_lib.read_metrics(run_dir)
  return min(max((r["epoch"] for r in records), default=0),
             total_epochs(config))


def last_stage_config(arm_dir: str) -> dict[str, Any] | None:
  """The config of a staged arm's last stage that has one, else the arm's."""
  def stage_index(path):
    match = re.search(r"stage_(\d+)_", os.path.basename(os.path.dirname(path)))
    return int(match.group(1)) if match else -1
  stages = sorted(glob.glob(os.path.join(arm_dir, "stage_*", "config.json")),
                  key=stage_index)
  return workdir_lib.read_config(os.path.dirname(stages[-1]) if stages
                                 else arm_dir)


def report_values(arm_dir: str, values: dict[str, Any]) -> dict[str, Any]:
  """A staged study arm's swept values as its report row shows them: those
  of its last stage run so far, and `stages` as the stages' names."""
  stages = values.get("stages")
  if not stages:
    return values
  last = last_stage_config(arm_dir) or {}
  out = {}
  for field, value in values.items():
    found = configlib.get_dotted(last, field)
    out[field] = value if found is None else found
  out["stages"] = " -> ".join(stage_name(k, s) for k, s in enumerate(stages))
  return out


def _check(config) -> None:
  if enabled(config):
    validate(config)


registry.config_check(_check)
registry.default("stages", [])
registry.run_kind(registry.RunKind(
    name=RUN_KIND, title="staged runs", enabled=enabled,
    switch=lambda config: f"config.stages=({len(config.stages)} stages)",
    train=run, final_run=last_stage, total_epochs=total_epochs,
    epochs_done=_epochs_done, report_config=last_stage_config,
    report_values=report_values))

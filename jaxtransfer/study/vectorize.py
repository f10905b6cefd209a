"""config.study.vectorize=True: a study's arms that differ only in
variants.VECTOR_FIELDS train as one program (variants.py), then each arm gets
its own ordinary, finished run directory.

  <workdir>/sweep_<k>/   the program of group k: config.json with the arms
                         as config.variants, metrics.jsonl (a line per
                         epoch, arm and seed, with 'variant'), checkpoints/
                         of every model; resumable as any run
  <workdir>/<arm>/       written when the group finishes: the arm's config,
                         its records and a checkpoint of its models' slice
                         of the state, exactly what the arm would have
                         written alone (so --mode=eval, the report and a
                         rerun of the study treat it as any finished arm)

Arms join a group when their configs agree on everything but the vector
fields (and on whether weight decay is on at all); staged, active-learning
and autoencoder-initialised arms train alone.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections

from jaxtransfer.core import (checkpoints, configlib, registry,
                              tensorboard_events,
                              workdir as workdir_lib)
from jaxtransfer.data import augment
from jaxtransfer.engine import variants, training
from jaxtransfer.core.errors import UserError

GROUP_PREFIX = "sweep_"


def enabled(config) -> bool:
  return bool(config.get("study") and config.study.get("vectorize", False))


def _signature(config) -> str:
  """What must agree for two arms to share a program."""
  fields = configlib.to_dict(config)
  for field in variants.VECTOR_FIELDS:
    node, *rest = field.split(".")
    if rest:
      fields.get(node, {}).pop(rest[0], None)
    else:
      fields.pop(field, None)
  fields["weight_decay_on"] = float(config.weight_decay) > 0
  return json.dumps(fields, sort_keys=True, default=str)


def _can_join(config) -> bool:
  return not (registry.run_kind_of(config) is not None
              or config.init == "autoencoder" or config.get("variants"))


def groups(runnable) -> list[list[tuple[dict, Any]]]:
  """The (arm, config) pairs that share a program, two or more per group,
  in the order of their first arm. From the configs alone, so group k is the
  same group in every process and every rerun, whatever has finished (a
  finished group trains nothing again, and export skips finished arms)."""
  by_signature: dict[str, list] = {}
  for arm, config in runnable:
    if not _can_join(config):
      continue
    by_signature.setdefault(_signature(config), []).append((arm, config))
  return [members for members in by_signature.values() if len(members) > 1]


def group_config(members) -> ml_collections.ConfigDict:
  """The first arm's config with every arm as a variant (the vector fields
  in which it differs from the first)."""
  first = members[0][1]
  config = ml_collections.ConfigDict(first.to_dict())
  arms = []
  for arm, run in members:
    variant = {"name": arm["name"]}
    for field in variants.VECTOR_FIELDS:
      value = variants.get_field(run, field)
      if value != variants.get_field(first, field):
        variant[field] = value
    arms.append(variant)
  config.variants = tuple(arms)
  return config


def run_group(index: int, members, workdir: str, dataset, hooks) -> str:
  """Trains group `index` in <workdir>/sweep_<index>/ (resuming) and writes
  every member's arm directory. Returns the group's directory."""
  config = group_config(members)
  group_dir = os.path.join(workdir, f"{GROUP_PREFIX}{index}")
  training.train_and_evaluate(config, group_dir, name=f"sweep {index}",
                              dataset=dataset, hooks=hooks)
  unfinished = {arm["name"] for arm, run in members
                if checkpoints.finished_history(
                    os.path.join(workdir, arm["name"]), run.num_epochs) is None}
  if unfinished:
    export(config, group_dir, [(arm["name"], run) for arm, run in members],
           workdir, dataset, only=unfinished)
  return group_dir


def export(config, group_dir: str, members, workdir: str, dataset,
           only=None) -> None:
  """Each member's slice of the group's final state and records, as the
  finished run directory <workdir>/<name>/ of the member's own config
  (`only`: just these members' directories; None: every member's)."""
  steps_per_epoch = len(dataset.train) * augment.views_per_epoch(
      config.augment) // config.batch_size
  setup, init_state = training.build_setup(
      config, dataset.num_classes, steps_per_epoch, config.batch_size,
      pixel_stats=dataset.pixel_stats)
  keys = training.RunKeys.from_seeds(training.seeds_of(config))
  store = checkpoints.RunCheckpoints(group_dir, read_only=True)
  try:
    step = store.latest_step()
    state, history = store.restore(
        step, training.abstract_state(init_state, keys.init, setup))
  finally:
    store.close()
  state = jax.device_get(state)
  seeds = config.num_seeds
  for v, (name, arm_config) in enumerate(members):
    if only is not None and name not in only:
      continue
    arm_setup, arm_init = training.build_setup(
        arm_config, dataset.num_classes, steps_per_epoch,
        arm_config.batch_size, pixel_stats=dataset.pixel_stats)
    arm_keys = training.RunKeys.from_seeds(training.seeds_of(arm_config))
    expected = jax.eval_shape(arm_init, arm_keys.init)
    part = jax.tree.map(lambda a, v=v: a[v * seeds:(v + 1) * seeds], state)
    part = part.replace(metric_sums={k: part.metric_sums[k]
                                     for k in expected.metric_sums})
    if jax.tree.structure(part) != jax.tree.structure(expected):
      raise UserError(f"sweep {group_dir}: arm {name}'s slice of the state "
                      "does not have the arm's own structure")
    records = [{k: r for k, r in record.items() if k != "variant"}
               for record in history if record.get("variant") == name]
    arm_dir = os.path.join(workdir, name)
    arm_dict = configlib.to_dict(arm_config)
    workdir_lib.check(arm_dir, arm_dict)
    with workdir_lib.claim(arm_dir, arm_dict):
      workdir_lib.record_config(arm_dir, arm_dict)
      arm_store = checkpoints.RunCheckpoints(arm_dir,
                                             keep=arm_config.keep_checkpoints)
      try:
        last = [r["val_loss"] for r in records if r["step"] == step]
        arm_store.save(step, part, records, arm_dict,
                       sum(last) / len(last))
      finally:
        arm_store.close()
      workdir_lib.sync_metrics(arm_dir, records)
      tensorboard_events.EventWriters(arm_dir, records).close()

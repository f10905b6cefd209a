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
  vectorize  True: arms that differ only in seed, initialisers, learning
          rate, weight decay, regulariser strengths or joint loss weights
          train as one program (engine/variants.py, study/vectorize.py); each still
          gets its own <workdir>/<arm>/ run, records and report row.
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

import json
import os
import time
from typing import Any

from absl import logging
import tqdm

from jaxtransfer import data
from jaxtransfer.core import (configlib, distributed, registry,
                              workdir as workdir_lib)
from jaxtransfer.engine import experiment, training
from jaxtransfer.study import report, vectorize
from jaxtransfer.study.planning import (DATA_FIELDS, SOURCE_SUBDIR,
                                        STUDY_FIELDS, Arm, arm_config,
                                        plan_study, is_study, plan_arms,
                                        swept_fields)

STUDY_FILE = "study.json"


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


def run(config, workdir: str, *, fresh: bool = False) -> dict[str, Any]:
  """Trains every arm that can run (resuming), then writes the report. The
  study's workdir stays locked throughout; each arm locks its own too."""
  plan, runs, autoencoders = plan_study(config, workdir)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  datasets = _DatasetCache()
  runnable = [run for arm, run in runs if arm["status"] != "skipped"]
  if runnable:  # bad data fails before anything is written
    datasets.get(runnable[0])
  for run_config in runnable:  # as does a labelling budget the pool lacks
    kind = registry.run_kind_of(run_config)
    if kind is not None and kind.prepare is not None:
      kind.prepare(run_config, datasets.get(run_config))
  # --fresh starts the whole study over: its plan, report and the arms'
  # and sources' runs move to archive/ too (they belong to the old config).
  with workdir_lib.claim(workdir, config_dict, fresh, whole=True):
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
    if key["class_fraction"] or key["train_sample"] or key["resample"]:
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
    swept = _run_sweeps(config, workdir, runnable, datasets, progress, plan)
    for index, (arm, run_config) in enumerate(runnable, start=1):
      label = f"arm {index}/{len(runnable)} {arm['name']}"
      progress.start(label)
      arm_dir = os.path.join(workdir, arm["name"])
      if arm["name"] not in swept:  # (a sweep's arms advanced with it)
        progress.advance(_epochs_done(run_config, arm_dir))
      started = time.perf_counter()
      hooks = training.Hooks(label=f"  {arm['name']}", bar_position=1,
                             on_epoch_end=lambda _: progress.advance(),
                             verbose=False)
      kind = registry.run_kind_of(run_config)
      if kind is not None:  # a feature's kind of run (staged, active, ...)
        history = kind.train(run_config, arm_dir,
                             dataset=datasets.get(run_config), hooks=hooks)
        last = history[-1]
        finals = [r for r in history
                  if all(r.get(k) == last.get(k) for k in ("round", "epoch"))]
        if tuple(run_config.eval.attacks) and kind.final_run is not None:
          experiment.evaluate(run_config, arm_dir, "latest")  # its final model
      else:
        history = training.train_and_evaluate(
            run_config, arm_dir, name=arm["name"],
            dataset=datasets.get(run_config), hooks=hooks)
        finals = [r for r in history if r["epoch"] == history[-1]["epoch"]]
        if primary and run_config.task == "joint":  # the report's pictures
          experiment.write_reconstructions(run_config, arm_dir)
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


def _run_sweeps(config, workdir, runnable, datasets, progress, plan):
  """config.study.vectorize: trains each group of arms that can share a
  program as one run (study/vectorize.py), leaving each arm's directory
  finished. Returns the names of the arms so trained."""
  if not vectorize.enabled(config):
    return set()
  swept = set()
  for index, members in enumerate(vectorize.groups(runnable)):
    names = [arm["name"] for arm, _ in members]
    group = f"{vectorize.GROUP_PREFIX}{index}"
    progress.start(f"{group}: {len(names)} arms in one program")
    progress.advance(len(names) * _epochs_done(
        members[0][1], os.path.join(workdir, group)))
    hooks = training.Hooks(
        label=f"  {group}", bar_position=1, verbose=False,
        on_epoch_end=lambda _, n=len(names): progress.advance(n))
    vectorize.run_group(index, members, workdir,
                              datasets.get(members[0][1]), hooks)
    for arm, _ in members:
      arm["vectorized_in"] = group
    swept.update(names)
    logging.info("%s: arms %s trained as one program", group,
                 ", ".join(names))
    if distributed.is_primary():
      workdir_lib.write_json_atomic(os.path.join(workdir, STUDY_FILE), plan)
  return swept


def _arm_epochs(config) -> int:
  """Epochs an arm trains in all (its kind of run's count: e.g. every
  round of every seed of an active-learning arm)."""
  kind = registry.run_kind_of(config)
  return config.num_epochs if kind is None else kind.total_epochs(config)


def _epochs_done(config, run_dir: str) -> int:
  """Epochs a run directory already holds (for the study's progress bar)."""
  kind = registry.run_kind_of(config)
  if kind is not None:
    return kind.epochs_done(config, run_dir)
  records = workdir_lib.read_metrics(run_dir)
  return min(max((r["epoch"] for r in records), default=0),
             _arm_epochs(config))

"""A study's work as units: each is trained in its own directory under the
study, and whoever holds that directory's lock trains it (workers.py):

  source       <workdir>/source, source_<name>: a classifier run that the
               init='checkpoint' arms start from (study.source / sources)
  autoencoder  <workdir>/autoencoder[-<hash>]: pre-trained once for the
               autoencoder arms that share its config
  group        <workdir>/sweep_<k>: arms trained as one program
               (study.vectorize, vectorize.py), then each arm finished
  arm          <workdir>/<arm>: one arm alone

The order is the one-process study's: the shared runs, then the groups,
then the other arms in the plan's order. A group or an arm needs the shared
runs it loads (`needs`) finished first. Nothing here claims anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from absl import logging
import tqdm

from jaxtransfer import data
from jaxtransfer.core import configlib, distributed, registry
from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.engine import experiment, training
from jaxtransfer.study import vectorize
from jaxtransfer.study.planning import DATA_FIELDS, plan_study


@dataclasses.dataclass
class Unit:
  name: str     # its directory under the study (the lock, the claim file)
  kind: str     # "source", "autoencoder", "group" or "arm"
  config: Any   # the run config (a group's: its first arm's)
  members: list  # [(plan entry, run config)]: the arms it finishes
  label: str    # for logs and the progress bar
  needs: tuple[str, ...] = ()  # the shared units it loads
  index: int = 0  # a group's number (sweep_<index>)
  member_labels: dict[str, str] = dataclasses.field(default_factory=dict)

  @property
  def arms(self) -> list[str]:
    return [arm["name"] for arm, _ in self.members]

  def epochs(self) -> int:
    """Epochs it trains in all (every member's, for a group)."""
    if self.kind in ("source", "autoencoder"):
      return self.config.num_epochs
    return sum(arm_epochs(run) for _, run in self.members)

  def describe(self) -> dict[str, Any]:
    return {"name": self.name, "kind": self.kind, "arms": self.arms,
            "needs": list(self.needs), "epochs": self.epochs(),
            "label": self.label}


class DatasetCache:
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


class StudyProgress:
  """One bar for the whole study: epochs done of all units, with an ETA."""

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


@dataclasses.dataclass
class Prepared:
  """A study planned and checked, before anything is written."""
  config: Any
  workdir: str
  plan: dict[str, Any]
  units: list[Unit]
  datasets: DatasetCache

  @property
  def config_dict(self) -> dict[str, Any]:
    return configlib.to_dict(self.config)


def prepare(config, workdir: str, fresh: bool = False) -> Prepared:
  """Plans the study and checks everything that can be checked (the arms'
  configs, the study directory's config, the data, a feature's inputs)
  without writing anything."""
  plan, runs, autoencoders = plan_study(config, workdir)
  workdir_lib.check(workdir, configlib.to_dict(config), fresh)
  datasets = DatasetCache()
  runnable = [(arm, run) for arm, run in runs if arm["status"] != "skipped"]
  if runnable:  # bad data fails before anything is written
    datasets.get(runnable[0][1])
  for _, run_config in runnable:  # as does a labelling budget the pool lacks
    kind = registry.run_kind_of(run_config)
    if kind is not None and kind.prepare is not None:
      kind.prepare(run_config, datasets.get(run_config))
  return Prepared(config, workdir, plan,
                  _units(config, workdir, runnable, autoencoders), datasets)


def _units(config, workdir, runnable, autoencoders) -> list[Unit]:
  units = []
  shared = {}  # directory -> unit name
  for index, (ae_dir, ae_config) in enumerate(autoencoders.items(), start=1):
    kind = "source" if ae_config.task == "classifier" else "autoencoder"
    shared_by = [a["name"] for a, r in runnable
                 if ae_dir in (r.ae_checkpoint, r.init_weights)]
    name = os.path.basename(ae_dir)
    shared[ae_dir] = name
    units.append(Unit(name, kind, ae_config, [],
                      f"{kind} {index}/{len(autoencoders)} (shared by "
                      f"{len(shared_by)} arms)"))

  def needs(members) -> tuple[str, ...]:
    return tuple(dict.fromkeys(
        shared[d] for _, run in members
        for d in (run.ae_checkpoint, run.init_weights) if d in shared))

  labels = {arm["name"]: f"arm {i}/{len(runnable)} {arm['name']}"
            for i, (arm, _) in enumerate(runnable, start=1)}
  grouped = set()
  if vectorize.enabled(config):
    for index, members in enumerate(vectorize.groups(runnable)):
      name = f"{vectorize.GROUP_PREFIX}{index}"
      units.append(Unit(name, "group", members[0][1], members,
                        f"{name}: {len(members)} arms in one program",
                        needs(members), index))
      grouped.update(arm["name"] for arm, _ in members)
  for arm, run in runnable:
    if arm["name"] not in grouped:
      units.append(Unit(arm["name"], "arm", run, [(arm, run)],
                        labels[arm["name"]], needs([(arm, run)])))
  for unit in units:  # a group's arms keep their labels as arms
    unit.member_labels.update((a["name"], labels[a["name"]])
                              for a, _ in unit.members)
  return units


def train(unit: Unit, study: Prepared, progress: StudyProgress) -> None:
  """Trains a unit in its directory (resuming), as the one-process study
  always did; marks its members' plan entries done."""
  workdir, datasets = study.workdir, study.datasets
  primary = distributed.is_primary()
  unit_dir = os.path.join(workdir, unit.name)
  progress.start(unit.label)
  if unit.kind in ("source", "autoencoder"):
    progress.advance(epochs_done(unit.config, unit_dir))
    training.train_and_evaluate(
        unit.config, unit_dir, name=unit.kind,
        dataset=datasets.get(unit.config),
        hooks=training.Hooks(label=f"  {unit.kind}", bar_position=1,
                             on_epoch_end=lambda _: progress.advance(),
                             verbose=False))
    if primary and unit.kind == "autoencoder":
      experiment.write_reconstructions(unit.config, unit_dir)
    return
  swept = unit.kind == "group"
  if swept:
    count = len(unit.members)
    progress.advance(count * epochs_done(unit.members[0][1], unit_dir))
    hooks = training.Hooks(
        label=f"  {unit.name}", bar_position=1, verbose=False,
        on_epoch_end=lambda _: progress.advance(count))
    vectorize.run_group(unit.index, unit.members, workdir,
                        datasets.get(unit.members[0][1]), hooks)
    for arm, _ in unit.members:
      arm["vectorized_in"] = unit.name
    logging.info("%s: arms %s trained as one program", unit.name,
                 ", ".join(unit.arms))
  for arm, run_config in unit.members:
    _finish_arm(arm, run_config, unit.member_labels[arm["name"]], study,
                progress, swept)


def _finish_arm(arm, run_config, label, study, progress, swept) -> None:
  """Trains one arm (a group's arm: finds it trained), then what the report
  needs of it (reconstructions, attacks)."""
  primary = distributed.is_primary()
  datasets = study.datasets
  progress.start(label)
  arm_dir = os.path.join(study.workdir, arm["name"])
  if not swept:  # (a group's arms advanced with it)
    progress.advance(epochs_done(run_config, arm_dir))
  started = time.perf_counter()
  hooks = training.Hooks(label=f"  {arm['name']}", bar_position=1,
                         on_epoch_end=lambda _: progress.advance(),
                         verbose=False)  # (per-epoch lines without a bar)
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
  how = (f"filed from {arm['vectorized_in']} (trained there, one program for "
         "its arms)" if swept and arm.get("vectorized_in")
         else f"done in {time.perf_counter() - started:.0f} s")
  logging.info("%s %s: final val_loss %s", label, how,
               ", ".join(f"{r['val_loss']:.4f}" for r in finals))


def arm_epochs(config) -> int:
  """Epochs an arm trains in all (its kind of run's count: e.g. every
  round of every seed of an active-learning arm)."""
  kind = registry.run_kind_of(config)
  return config.num_epochs if kind is None else kind.total_epochs(config)


def epochs_done(config, run_dir: str) -> int:
  """Epochs a run directory already holds (for the progress bar)."""
  kind = registry.run_kind_of(config)
  if kind is not None:
    return kind.epochs_done(config, run_dir)
  records = workdir_lib.read_metrics(run_dir)
  return min(max((r["epoch"] for r in records), default=0),
             arm_epochs(config))

"""A study: a grid of arms (initialisation x freezing regime), each an ordinary
run of `config.num_seeds` seeds trained side by side, then a report.

  <workdir>/study.json          the grid, and per arm: done / skipped (why)
  <workdir>/autoencoder/        the autoencoder, pre-trained once for all
                                autoencoder arms (with reconstructions.npz)
  <workdir>/<init>-<freeze>/    each arm's run: config.json, metrics.jsonl
                                (a line per epoch and seed), checkpoints/
  <workdir>/report.md, *.png    the report (report.py)

A killed study started again with the same command skips finished arms and
resumes the unfinished one from its latest checkpoint.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging
import ml_collections
import tqdm

from jaxtransfer import (configlib, data, distributed, experiment,
                         initialization,
                         report,
                         training, workdir as workdir_lib)
from jaxtransfer.errors import UserError

STUDY_FILE = "study.json"


def is_study(config) -> bool:
  return "study" in config


def arm_name(init: str, freeze: str) -> str:
  return f"{init}-{freeze}"


def arm_config(config, init: str, freeze: str, workdir: str):
  """An ordinary run config for one arm: the study's fields minus the grid."""
  fields = configlib.to_dict(config)
  del fields["study"]
  arm = ml_collections.ConfigDict(fields)
  arm.init, arm.freeze, arm.trainable_rules = init, freeze, None
  if init == "autoencoder" and not arm.ae_checkpoint:
    arm.ae_checkpoint = os.path.join(workdir, initialization.AUTOENCODER_SUBDIR)
  if init != "imagenet":
    arm.init_weights = ""
  return arm


def missing_input(config, init: str) -> str | None:
  """Why an arm cannot run here, or None."""
  if init == "imagenet":
    from jaxtransfer import conversion
    if not config.init_weights:
      return ("no converted ImageNet weights (config.init_weights is empty; "
              f"make them with: {conversion.CONVERT_COMMAND})")
    if not os.path.isdir(os.path.join(config.init_weights,
                                      conversion.PARAMS_SUBDIR)):
      return (f"no converted ImageNet weights in {config.init_weights} "
              f"(make them with: {conversion.CONVERT_COMMAND})")
  return None


def _validate(config) -> None:
  for init in config.study.inits:
    if init not in configlib.INITS:
      raise UserError(f"config.study.inits: {init!r} is not one of "
                      f"{', '.join(configlib.INITS)}")
    if init == "checkpoint":
      raise UserError("config.study.inits: 'checkpoint' arms are not supported "
                      "in a study; run them as single runs")
  from jaxtransfer import freezing
  for freeze in config.study.freezes:
    if freeze not in freezing.PRESETS:
      raise UserError(f"config.study.freezes: {freeze!r} is not one of "
                      f"{', '.join(freezing.PRESETS)}")
  if not config.study.inits or not config.study.freezes:
    raise UserError("config.study needs at least one init and one freeze")


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
  _validate(config)
  config_dict = configlib.to_dict(config)
  workdir_lib.check(workdir, config_dict, fresh)
  dataset = data.load_dataset(config)  # read once, shared by every arm
  with workdir_lib.claim(workdir, config_dict, fresh):
    workdir_lib.record_config(workdir, config_dict)
    return _run(config, workdir, dataset)


def _run(config, workdir: str, dataset) -> dict[str, Any]:
  arms = [(init, freeze) for init in config.study.inits
          for freeze in config.study.freezes]
  plan = {"arms": [], "num_seeds": config.num_seeds,
          "num_epochs": config.num_epochs}
  for init, freeze in arms:
    reason = missing_input(config, init)
    plan["arms"].append({"name": arm_name(init, freeze), "init": init,
                         "freeze": freeze,
                         "status": "skipped" if reason else "planned",
                         "reason": reason})
  study_file = os.path.join(workdir, STUDY_FILE)
  primary = distributed.is_primary()
  if primary:
    workdir_lib.write_json_atomic(study_file, plan)

  needs_autoencoder = any(a["init"] == "autoencoder" and a["status"] != "skipped"
                          for a in plan["arms"]) and not config.ae_checkpoint
  runnable = [a for a in plan["arms"] if a["status"] != "skipped"]
  total = len(runnable) * config.num_epochs + (
      config.pretrain.num_epochs if needs_autoencoder else 0)
  progress = _StudyProgress(config.progress_bar and primary, total)
  try:
    if needs_autoencoder:
      progress.start(f"autoencoder (shared by the autoencoder arms)")
      ae_config = experiment.pretrain_config(config)
      ae_dir = os.path.join(workdir, initialization.AUTOENCODER_SUBDIR)
      done = _epochs_done(ae_config, ae_dir)
      progress.advance(done)
      training.train_and_evaluate(
          ae_config, ae_dir, name="autoencoder", dataset=dataset,
          hooks=training.Hooks(label="  autoencoder", bar_position=1,
                               on_epoch_end=lambda _: progress.advance(),
                               verbose=False))
      if primary:
        experiment.write_reconstructions(ae_config, ae_dir)
    for index, arm in enumerate(runnable, start=1):
      label = f"arm {index}/{len(runnable)} {arm['name']}"
      progress.start(label)
      run_config = arm_config(config, arm["init"], arm["freeze"], workdir)
      arm_dir = os.path.join(workdir, arm["name"])
      progress.advance(_epochs_done(run_config, arm_dir))
      started = time.perf_counter()
      history = training.train_and_evaluate(
          run_config, arm_dir, name=arm["name"], dataset=dataset,
          hooks=training.Hooks(label=f"  {arm['name']}", bar_position=1,
                               on_epoch_end=lambda _: progress.advance(),
                               verbose=False))
      arm["status"] = "done"
      finals = [r for r in history if r["epoch"] == history[-1]["epoch"]]
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


def _epochs_done(config, run_dir: str) -> int:
  """Epochs a run directory already holds (for the study's progress bar)."""
  records = workdir_lib.read_metrics(run_dir)
  return min(max((r["epoch"] for r in records), default=0), config.num_epochs)

"""The study report, from the files a study wrote (no model is run):

  jaxtransfer report <workdir>

writes <workdir>/report.md with how the study was made (command, config and
its arguments, commit, date: <workdir>/provenance.json), a summary table (a
row per arm: a column per swept field, best validation loss and its epoch,
final validation accuracy, each as mean +/- std over seeds; seconds per
epoch; compile seconds; parameters trained), a table per arm with its seeds,
the skipped arms and why, and the plots:

  val_loss.png                   validation loss per epoch, a panel per value
                                 of one swept field (`study.panel_by`; the
                                 freezing regime in seed 000's study), a
                                 colour per value of another (`colour_by`;
                                 the initialisation), mean line and min-max
                                 band over seeds
  val_accuracy.png               the same for accuracy
  autoencoder_reconstructions.png  validation images and their reconstructions
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxtransfer.core import provenance, registry, workdir as workdir_lib
from jaxtransfer.engine import experiment
from jaxtransfer.study import report_columns
from jaxtransfer.study.analysis import analysis_report
from jaxtransfer.study.report_plots import (by_seed, curves, plot_axes,
                                            plot_metric, plot_reconstructions,
                                            plot_train_val_loss)
from jaxtransfer.core.errors import UserError

REPORT_FILE = workdir_lib.REPORT_FILE
write_lines = workdir_lib.write_lines
RECONSTRUCTIONS_FILE = experiment.RECONSTRUCTIONS_FILE  # (written there)

def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def load_study(workdir: str) -> dict[str, Any]:
  """The study plan (study.json), or one inferred from the arm directories.
  Every arm gets `values` (swept field -> value) and the plan `axes`; plans
  written before studies swept any field are read as the init x freeze grid."""
  study_path = os.path.join(workdir, "study.json")
  if os.path.exists(study_path):
    study = _read_json(study_path)
  else:
    arms = []
    for name in sorted(os.listdir(workdir)):
      arm_dir = os.path.join(workdir, name)
      config = workdir_lib.read_config(arm_dir) if os.path.isdir(arm_dir) else None
      if config and config.get("task") == "classifier":
        arms.append({"name": name, "init": config["init"],
                     "freeze": config["freeze"], "status": "done",
                     "reason": None})
    if not arms:
      raise UserError(f"{workdir} holds no study (no study.json and no arm "
                      "directories with a classifier run)")
    study = {"arms": arms}
  study.setdefault("axes", ["init", "freeze"])
  for arm in study["arms"]:
    arm.setdefault("values", {f: arm.get(f) for f in study["axes"]})
  return study


def summarize_arm(records: list[dict]) -> dict[str, Any]:
  """Per-seed and across-seed numbers of one arm's metrics."""
  seeds = by_seed(records)
  per_seed = []
  for seed, rs in sorted(seeds.items()):
    best = min(rs, key=lambda r: r["val_loss"])
    per_seed.append({"seed": seed, "best_val_loss": best["val_loss"],
                     "best_epoch": best["epoch"], "epochs": rs[-1]["epoch"],
                     "final_val_loss": rs[-1]["val_loss"],
                     "final_val_accuracy": rs[-1].get("val_accuracy")})
  column = lambda key: np.array([s[key] for s in per_seed], dtype=float)
  one_seed = next(iter(seeds.values()))
  epoch_seconds = [r["epoch_seconds"] for r in one_seed
                   if r.get("steps_in_this_process", 1) > 0]
  return {
      "seeds": per_seed,
      "best_val_loss": (column("best_val_loss").mean(), column("best_val_loss").std()),
      "best_epoch": (column("best_epoch").mean(), column("best_epoch").std()),
      "final_val_accuracy": (
          (column("final_val_accuracy").mean(), column("final_val_accuracy").std())
          if per_seed[0]["final_val_accuracy"] is not None else None),
      "seconds_per_epoch": float(np.median(epoch_seconds)) if epoch_seconds else None,
      "final_train_accuracy": _mean_std([r.get("train_accuracy") for r in
                                         (rs[-1] for rs in seeds.values())]),
      # With a cached frozen body: its length and the seconds the body took
      # per 1,000 images (train + validation, computed once).
      "feature_length": records[-1].get("feature_length"),
      "body_seconds_per_1000": (
          1000 * records[-1]["feature_seconds"] / (
              records[-1]["train_examples"] + records[-1]["val_examples"])
          if "feature_seconds" in records[-1] else None),
      "compile_seconds": max(r.get("compile_seconds", 0.0) for r in records),
      "trainable_parameters": records[-1].get("trainable_parameters"),
      "epochs": max(r["epoch"] for r in records),
      "num_seeds": len(seeds),
  }


def _attack_accuracies(workdir: str, arms) -> dict[str, dict[str, tuple]]:
  """arm -> attack -> (mean, std) over seeds of the validation accuracy
  under attack, from the arm's eval.json (--mode=eval with eval.attacks)."""
  found = {}
  for arm in arms:
    path = os.path.join(workdir, arm["name"], workdir_lib.EVAL_FILE)
    if not os.path.exists(path):
      continue
    results = _read_json(path)
    results = results if isinstance(results, list) else [results]
    by_attack: dict[str, list[float]] = {}
    for result in results:
      for name, value in result.get("val_attack_accuracy", {}).items():
        by_attack.setdefault(name, []).append(value)
    found[arm["name"]] = {name: (float(np.mean(v)), float(np.std(v)))
                          for name, v in by_attack.items()}
  return found


def _mean_std(values):
  if any(v is None for v in values):
    return None
  return float(np.mean(values)), float(np.std(values))


def _cell(value: Any) -> str:
  if isinstance(value, (list, tuple)):
    return ", ".join(str(v) for v in value)
  return str(value)


def _pm(pair, digits=3) -> str:
  if pair is None:
    return "-"
  mean, std = pair
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


OPTIMIZER_FIELDS = ("optimizer", "framework", "learning_rate", "lr_schedule",
                    "lr_values", "lr_boundaries", "momentum", "weight_decay")


def _scale_line(config: dict | None, summary: dict | None,
                records: list[dict] | None, swept=()) -> str:
  """The run's scale (data, size, epochs, seeds, optimizer), from the first
  arm; fields the arms differ in are left to the table."""
  if not config:
    return ""
  optimizer = ("optimizer per arm" if set(swept) & set(OPTIMIZER_FIELDS)
               else _optimizer_line(config))
  train = (records[-1].get("train_examples") if records else None) or (
      config.get("train_subset") or "all")
  val = (records[-1].get("val_examples") if records else None) or (
      config.get("val_subset") or "all")
  classes = config.get("classes") or []
  fractions = config.get("class_fraction") or {}
  dataset = config.get("dataset") + (
      f" classes {', '.join(map(str, classes))}" if classes else "") + (
      " (training fractions " + ", ".join(
          f"{k} {v:g}" for k, v in sorted(fractions.items())) + ")"
      if fractions else "")
  return (f"{dataset}: {train} training images, {val} validation "
          f"images ({config.get('validation')}), {config.get('image_size')} px, "
          f"{summary['epochs'] if summary else '?'} epochs, "
          f"{summary['num_seeds'] if summary else '?'} seeds, batch "
          f"{config.get('batch_size')}, {optimizer}"
          + (f"; per arm: {', '.join(swept)}" if swept else ""))


def _optimizer_line(config: dict) -> str:
  name = config.get("optimizer", "adam")
  schedule = config.get("lr_schedule", "constant")
  if schedule == "piecewise":
    rate = f"lr {config.get('lr_values')} until epochs {config.get('lr_boundaries')}"
  else:
    rate = f"lr {config.get('learning_rate')}" + (
        f" ({schedule})" if schedule != "constant" else "")
  label = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD",
           "rmsprop": "RMSProp", "adagrad": "Adagrad"}.get(name, name)
  return f"{label} {rate}"


def write_report(workdir: str) -> str:
  """Writes report.md and the PNGs into `workdir`; returns report.md's path."""
  workdir = os.path.abspath(workdir)
  if not os.path.isdir(workdir):
    raise UserError(f"{workdir} " + ("is a file, not a study or run directory"
                                     if os.path.exists(workdir)
                                     else "does not exist"))
  sections = registry.report_sections()
  if not os.path.exists(os.path.join(workdir, "study.json")):
    for section in sections:  # one run of a feature (e.g. active learning)
      path = section.lone_run(workdir) if section.lone_run else None
      if path is not None:
        return path
  study = load_study(workdir)
  arms = study["arms"]
  metrics, summaries, configs = {}, {}, {}
  filed_by = {}  # section name -> arm dirs a feature filed in its own files
  for arm in arms:
    arm_dir = os.path.join(workdir, arm["name"])
    records = workdir_lib.read_metrics(arm_dir)
    if records:
      metrics[arm["name"]] = records
      summaries[arm["name"]] = summarize_arm(records)
      configs[arm["name"]] = workdir_lib.read_config(arm_dir)
      continue
    section = next((s for s in sections if s.files_arm(arm_dir)), None)
    if section is not None:
      filed_by.setdefault(section.name, []).append(arm_dir)
      arm["filed"] = True
  ran = [a for a in arms if a["name"] in metrics]
  skipped = [a for a in arms if a["status"] == "skipped"]
  not_yet = [a for a in arms if a["status"] != "skipped"
             and a["name"] not in metrics and not a.get("filed")]

  first = ran[0]["name"] if ran else None
  scale = _scale_line(configs.get(first), summaries.get(first),
                      metrics.get(first), study["axes"]) if first else ""
  lines = ["# Study report", ""]
  if scale:
    lines += [f"Scale: {scale}.", ""]
  lines += [f"Arms run: {len(ran) + sum(1 for a in arms if a.get('filed'))} "
            f"of {len(arms)}."]
  for arm in skipped:
    lines.append(f"- skipped **{arm['name']}**: {arm['reason']}")
  for arm in not_yet:
    lines.append(f"- not run yet: **{arm['name']}**")
  lines += provenance.report_lines(workdir)
  axes = study["axes"]
  for section in sections:  # the features' own arms
    if section.name in filed_by:
      lines += section.lines(workdir, filed_by[section.name])
  if not ran:
    return write_lines(workdir, lines)
  # Frozen-body arms (a backbone comparison): what the body gives and costs.
  cached = any(summaries[a["name"]]["feature_length"] for a in ran)
  attacked = _attack_accuracies(workdir, ran)
  attacks_run = sorted({name for by in attacked.values() for name in by})
  lines += ["", "## Summary (mean ± std over seeds)", "",
            "| arm | " + "".join(f"{a} | " for a in axes) +
            "seeds | best val loss | epoch of best | "
            "final val accuracy | s/epoch (all seeds) | compile s | params trained |"
            + (" final train accuracy | feature length | body s / 1,000 images |"
               if cached else "")
            + "".join(f" {name} accuracy |" for name in attacks_run),
            "|---|" + "---|" * len(axes) + "---|---|---|---|---|---|---|"
            + ("---|---|---|" if cached else "") + "---|" * len(attacks_run)]
  for arm in ran:
    s = summaries[arm["name"]]
    values = report_columns.arm_values(os.path.join(workdir, arm["name"]),
                                       arm["values"])
    seconds = f"{s['seconds_per_epoch']:.1f}" if s["seconds_per_epoch"] else "-"
    extra = ""
    if cached:
      body = s["body_seconds_per_1000"]
      extra = (f" {_pm(s['final_train_accuracy'])} | "
               f"{format(s['feature_length'], ',') if s['feature_length'] else '-'} | "
               f"{'-' if body is None else f'{body:.2f}'} |")
    lines.append(
        f"| {arm['name']} | " + "".join(
            f"{_cell(values.get(a))} | " for a in axes) +
        f"{s['num_seeds']} | "
        f"{_pm(s['best_val_loss'])} | {_pm(s['best_epoch'], 1)} | "
        f"{_pm(s['final_val_accuracy'])} | {seconds} | {s['compile_seconds']:.1f} | "
        f"{s['trainable_parameters']:,} |" + extra + "".join(
            f" {_pm(attacked.get(arm['name'], {}).get(name))} |"
            for name in attacks_run))

  folded = [a for a in ran if len({r.get("fold") for r in metrics[a["name"]]
                                    if "fold" in r}) > 1]
  lines += report_columns.cross_validation_lines(folded, summaries)
  own = report_columns.table_lines(workdir, study, metrics)
  if own:
    lines += ["", "## The study's table (final epoch, mean ± std over seeds;"
              " accuracy in %)", ""] + own
  per_class = report_columns.class_accuracy_lines(ran, metrics)
  if per_class:
    lines += ["", "## Validation accuracy per class (final epoch, mean ± std "
              "over seeds, %)", ""] + per_class
  sources = study.get("sources") or (
      [study["source"]] if study.get("source") else [])
  described = []
  for source in sources:
    source_records = workdir_lib.read_metrics(os.path.join(workdir, source))
    if source_records:
      last = source_records[-1]
      described.append(
          f"<workdir>/{source}: {last['train_examples']} training images,"
          f" {last['epoch']} epochs; final validation accuracy "
          f"{last.get('val_accuracy', float('nan')):.4f}, loss "
          f"{last['val_loss']:.4f} ({last['val_examples']} images).")
  if described:
    lines += ["", "## Source run" + ("s" if len(described) > 1 else ""), ""]
    lines += [f"- {d}" for d in described] if len(described) > 1 else described

  lines += analysis_report.section(workdir)
  plots = []
  colour_by, panel_by = plot_axes(study)
  if ran:
    plot_metric(ran, metrics, "val_loss", "validation loss (cross-entropy)",
                 "Validation loss per epoch", os.path.join(workdir, "val_loss.png"),
                 scale, colour_by, panel_by)
    plots.append(("Validation loss per epoch", "val_loss.png"))
    if all(summaries[a["name"]]["final_val_accuracy"] is not None for a in ran):
      plot_metric(ran, metrics, "val_accuracy", "validation accuracy",
                   "Validation accuracy per epoch",
                   os.path.join(workdir, "val_accuracy.png"), scale,
                   colour_by, panel_by)
      plots.append(("Validation accuracy per epoch", "val_accuracy.png"))

  ae_dir = os.path.join(workdir, "autoencoder")
  ae_records = workdir_lib.read_metrics(ae_dir)
  npz = os.path.join(ae_dir, RECONSTRUCTIONS_FILE)
  if ae_records:
    last = ae_records[-1]
    lines += ["", "## Autoencoder pre-training", "",
              f"{last['epoch']} epochs; final train MSE {last['train_loss']:.4f}, "
              f"validation MSE {last['val_loss']:.4f} (on normalised pixels); "
              f"{last['epoch_seconds']:.1f} s per epoch."]
  if os.path.exists(npz):
    plot_reconstructions(npz, os.path.join(workdir, "autoencoder_reconstructions.png"))
    plots.append(("Autoencoder reconstructions", "autoencoder_reconstructions.png"))
  if any("val_classification_loss" in metrics[a["name"]][-1] for a in ran):
    plot_train_val_loss(ran, metrics, "classification_loss",
                        os.path.join(workdir, "classification_loss.png"), scale)
    plots.append(("Train vs validation classification loss",
                  "classification_loss.png"))
  for arm in ran:  # joint arms (seed 002): one validation image per class
    arm_npz = os.path.join(workdir, arm["name"], RECONSTRUCTIONS_FILE)
    if os.path.exists(arm_npz):
      file = f"{arm['name']}_reconstructions.png"
      plot_reconstructions(arm_npz, os.path.join(workdir, file),
                           f"{arm['name']}: a validation image per class "
                           "(top) and its reconstruction (bottom)")
      plots.append((f"Reconstructions: {arm['name']}", file))

  for title, file in plots:
    lines += ["", f"## {title}", "", f"![{title}]({file})"]

  lines += ["", "## Per arm", ""]
  for arm in ran:
    s = summaries[arm["name"]]
    lines += [f"### {arm['name']}", "",
              "| seed | best val loss | epoch of best | final val loss | final val accuracy |",
              "|---|---|---|---|---|"]
    for seed in s["seeds"]:
      accuracy = (f"{seed['final_val_accuracy']:.4f}"
                  if seed["final_val_accuracy"] is not None else "-")
      lines.append(f"| {seed['seed']} | {seed['best_val_loss']:.4f} | "
                   f"{seed['best_epoch']} | {seed['final_val_loss']:.4f} | {accuracy} |")
    lines.append("")

  return write_lines(workdir, lines)

"""A study's table in its own terms: `config.study.columns`.

Seed 001's table has a row per case and the columns train_acc, val_acc, lr,
epoch, train_loss, val_loss, Normalization, Synthetic Data, Transfer Learning
Technique. A study names its columns; each is, in this order of lookup:

  a metric      train_accuracy, val_accuracy (in %), train_loss, val_loss:
                the final epoch's value, mean ± std over seeds (a staged
                arm's final epoch is its last stage's)
  lr            the learning rate(s): a piecewise schedule's values, else
                learning_rate (and the schedule's name)
  epochs        a piecewise schedule's epochs per value ("7, 7, 7, 4", as the
                seed writes them), else num_epochs
  synthetic_data  "yes" when seed 001's six views are on
  a note        the arm's `notes` entry of that name (study.arms[i]['notes'])
  a field       any config field, dotted ('normalization', 'augment.hflip')

Config-derived columns describe the arm's last stage (seed 001 gives cases 7
and 8 the fine-tuning stage's lr and epochs; their technique note says what
came before).
"""

from __future__ import annotations

import math
import os
from typing import Any

import ml_collections
import numpy as np

from jaxtransfer.core import configlib, registry, workdir as workdir_lib

METRICS = {"train_accuracy": 100.0, "val_accuracy": 100.0,
           "train_loss": 1.0, "val_loss": 1.0}


def _kind(arm_dir: str):
  """The registered kind of run of the arm in arm_dir (None: a plain run)."""
  config = workdir_lib.read_config(arm_dir)
  return (registry.run_kind_of(ml_collections.ConfigDict(config))
          if config else None)


def report_config(arm_dir: str) -> dict[str, Any] | None:
  """The config a report describes an arm by: its own, or what its kind of
  run says (a staged arm's last stage: RunKind.report_config)."""
  kind = _kind(arm_dir)
  if kind is not None and kind.report_config is not None:
    return kind.report_config(arm_dir)
  return workdir_lib.read_config(arm_dir)


def arm_values(arm_dir: str, values: dict[str, Any]) -> dict[str, Any]:
  """A study arm's swept values (study.json) as the report shows them: as
  they are, unless the arm's kind of run says otherwise (a staged arm's are
  those of its last stage so far: RunKind.report_values)."""
  kind = _kind(arm_dir)
  if kind is None or kind.report_values is None:
    return values
  return kind.report_values(arm_dir, values)


def _number(value) -> str:
  return f"{value:g}"


def _schedule_epochs(config: dict) -> list[int]:
  edges = [0, *config.get("lr_boundaries", ()), config["num_epochs"]]
  return [int(b - a) for a, b in zip(edges, edges[1:])]


def _final_metric(records: list[dict], key: str, scale: float) -> str:
  by_seed: dict[int, dict] = {}
  for record in records:
    seed = record.get("seed", 0)
    if record["epoch"] >= by_seed.get(seed, {"epoch": -1})["epoch"]:
      by_seed[seed] = record
  values = [r.get(key) for r in by_seed.values()]
  if not values or any(v is None for v in values):
    return "-"
  values = np.asarray(values, dtype=float) * scale
  digits = 2 if scale != 1.0 else 4
  return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def cell(column: str, arm: dict, records: list[dict],
         config: dict | None) -> str:
  """The table's entry for one arm (a study.json arm entry)."""
  if column in METRICS:
    return _final_metric(records, column, METRICS[column])
  config = config or {}
  piecewise = config.get("lr_schedule") == "piecewise"
  if column == "lr":
    if piecewise:
      return ", ".join(map(_number, config["lr_values"]))
    rate = config.get("learning_rate")
    if rate is None:
      return "-"
    schedule = config.get("lr_schedule", "constant")
    return _number(rate) + ("" if schedule == "constant" else f" ({schedule})")
  if column == "epochs":
    if piecewise:
      return ", ".join(map(str, _schedule_epochs(config)))
    return str(config.get("num_epochs", "-"))
  if column == "synthetic_data":
    return "yes" if configlib.get_dotted(config, "augment.six_views") else "no"
  notes = arm.get("notes") or {}
  if column in notes:
    return notes[column]
  value = configlib.get_dotted(config, column)
  if value is None:
    return "-"
  if isinstance(value, (list, tuple)):
    return ", ".join(map(str, value)) or "()"
  return str(value)


def class_accuracy_lines(arms: list[dict], metrics: dict[str, list[dict]]
                         ) -> list[str]:
  """Validation accuracy per class (config.per_class_metrics): a row per
  arm, the final epoch's, mean ± std over seeds, in %; [] without any."""
  rows, names = [], None
  for arm in arms:
    records = metrics.get(arm["name"]) or []
    finals = {}
    for record in records:
      if "val_class_accuracy" in record:
        finals[record.get("seed", 0)] = record  # the last epoch's wins
    if not finals:
      continue
    names = names or next(iter(finals.values())).get("class_names")
    values = np.array([[np.nan if v is None else 100 * v for v in
                        r["val_class_accuracy"]] for r in finals.values()])
    rows.append(f"| {arm['name']} | " + " | ".join(
        f"{m:.1f} ± {s:.1f}" for m, s in zip(np.nanmean(values, 0),
                                              np.nanstd(values, 0))) + " |")
  if not rows:
    return []
  width = rows[0].count("±")
  names = names or [str(i) for i in range(width)]
  return ["| arm | " + " | ".join(names) + " |",
          "|---|" + "---|" * width, *rows]


def table_lines(workdir: str, study: dict, metrics: dict[str, list[dict]]
                ) -> list[str]:
  """The study's own table (a markdown list of lines), or [] without one."""
  columns = study.get("columns") or []
  if not columns:
    return []
  lines = ["| arm | seeds | " + " | ".join(columns) + " |",
           "|---|---|" + "---|" * len(columns)]
  for arm in study["arms"]:
    records = metrics.get(arm["name"])
    if not records:
      continue
    config = report_config(os.path.join(workdir, arm["name"]))
    seeds = len({r.get("seed", 0) for r in records})
    lines.append(f"| {arm['name']} | {seeds} | " + " | ".join(
        cell(c, arm, records, config) for c in columns) + " |")
  return lines


def cross_validation_lines(ran: list[dict], summaries: dict) -> list[str]:
  """The cross-validation table of a study whose arms ran all folds: mean
  +/- std over folds of the final validation accuracy and loss, and the
  arm cross-validation picks (highest mean accuracy)."""
  rows = []
  for arm in ran:
    summary = summaries[arm["name"]]
    finals = [s for s in summary["seeds"]]
    accuracies = [s["final_val_accuracy"] for s in finals]
    losses = [s["final_val_loss"] for s in finals]
    if any(a is None for a in accuracies):
      continue
    rows.append((arm["name"], len(finals), np.mean(accuracies),
                 np.std(accuracies), np.mean(losses), np.std(losses)))
  if not rows:
    return []
  choice = max(rows, key=lambda r: r[2])[0]
  lines = ["", "## Cross-validation (final epoch, mean ± std over folds)", "",
           "| arm | folds | val accuracy | val loss | CV choice |",
           "|---|---|---|---|---|"]
  for name, folds, acc, acc_sd, loss, loss_sd in rows:
    lines.append(f"| {name} | {folds} | {acc:.4f} ± {acc_sd:.4f} | "
                 f"{loss:.4f} ± {loss_sd:.4f} | "
                 f"{'**chosen**' if name == choice else ''} |")
  best, runner_up = sorted(rows, key=lambda r: -r[2])[:2] if len(rows) > 1 \
      else (rows[0], None)
  if runner_up is not None:
    gap = best[2] - runner_up[2]
    spread = math.hypot(best[3], runner_up[3])
    lines += ["", f"Cross-validation picks **{best[0]}**: {gap:.4f} above "
              f"{runner_up[0]} in mean validation accuracy (fold spread "
              f"{spread:.4f}{'; within it' if gap <= spread else ''})."]
  return lines

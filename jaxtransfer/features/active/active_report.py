"""The active-learning section of a report (from rounds.jsonl files; no
model is run): validation accuracy against labelled-set size per strategy,
as a table (mean ± std over seeds, and each strategy's paired gain over
`random`) and a plot (mean line, min-max band over seeds)."""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxtransfer.core import registry, workdir as workdir_lib

PLOT_FILE = "active_learning.png"
ROUNDS_FILE = "rounds.jsonl"  # a line per seed and round (active_learning.py)


def read_rounds(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, ROUNDS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def accuracy_table(records: list[dict[str, Any]]) -> dict[str, dict[int, np.ndarray]]:
  """strategy -> labelled count -> validation accuracies over seeds."""
  table: dict[str, dict[int, list[float]]] = {}
  for r in records:
    table.setdefault(r["strategy"], {}).setdefault(r["labelled"], []).append(
        r["val_accuracy"])
  return {s: {n: np.array(v) for n, v in sorted(by_size.items())}
          for s, by_size in table.items()}


def _paired_gain(records, strategy: str, control: str, size: int):
  """strategy - control accuracy at `size`, per seed present in both."""
  find = lambda s: {r["seed"]: r["val_accuracy"] for r in records
                    if r["strategy"] == s and r["labelled"] == size}
  a, b = find(strategy), find(control)
  return np.array([a[s] - b[s] for s in sorted(set(a) & set(b))])


def report_lines(records: list[dict[str, Any]], plot_path: str,
                 scale: str = "") -> list[str]:
  """The report's active-learning section (a table and the plot)."""
  table = accuracy_table(records)
  strategies = sorted(table, key=lambda s: (s == "random", s))
  sizes = sorted({n for by_size in table.values() for n in by_size})
  lines = ["## Active learning: validation accuracy by labelled-set size", "",
           "Mean ± std over seeds (seeds per cell in brackets); the last "
           "columns are each strategy's paired gain over `random` (same "
           "seed, same initial set).", "",
           "| labelled | " + " | ".join(strategies) + " | " + " | ".join(
               f"{s} − random" for s in strategies if s != "random"
               and "random" in table) + " |",
           "|---|" + "---|" * (len(strategies) + sum(
               1 for s in strategies if s != "random" and "random" in table))]
  for size in sizes:
    cells = []
    for s in strategies:
      values = table[s].get(size)
      cells.append("-" if values is None else
                   f"{values.mean():.4f} ± {values.std():.4f} ({len(values)})")
    for s in strategies:
      if s != "random" and "random" in table:
        gain = _paired_gain(records, s, "random", size)
        cells.append(f"{gain.mean():+.4f} ± {gain.std():.4f}" if len(gain)
                     else "-")
    lines.append(f"| {size} | " + " | ".join(cells) + " |")
  _plot(table, plot_path, scale)
  lines += ["", f"![accuracy vs labelled]({os.path.basename(plot_path)})"]
  return lines


def _plot(table, path: str, scale: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  for strategy, by_size in sorted(table.items()):
    sizes = np.array(sorted(by_size))
    values = [by_size[n] for n in sizes]
    mean = np.array([v.mean() for v in values])
    line, = ax.plot(sizes, mean, marker="o", label=strategy,
                    linestyle="--" if strategy == "random" else "-")
    ax.fill_between(sizes, [v.min() for v in values], [v.max() for v in values],
                    color=line.get_color(), alpha=0.2)
  ax.set_xlabel("labelled training images")
  ax.set_ylabel("validation accuracy")
  seeds = max((len(v) for by in table.values() for v in by.values()), default=0)
  ax.set_title(f"Active learning: mean and min-max over {seeds} seed(s)")
  if scale:
    fig.text(0.01, 0.01, scale, fontsize=7)
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout(rect=(0, 0.04, 1, 1))
  fig.savefig(path, dpi=120)
  plt.close(fig)


def scale_line(config: dict | None, records) -> str:
  if not config:
    return ""
  seeds = len({r["seed"] for r in records})
  return (f"{config['dataset']} pool of {records[0]['pool_size']:,} images, "
          f"{config['model']} ({config['init']} init, freeze {config['freeze']}), "
          f"{config['image_size']} px, {config['num_epochs']} epochs per round, "
          f"{seeds} seed(s)")


def write_report(workdir: str) -> str:
  """report.md of a single active-learning run (a study's report includes
  the same section for its active-learning arms)."""
  records = read_rounds(workdir)
  config = workdir_lib.read_config(workdir)
  scale = scale_line(config, records) if records else ""
  lines = ["# Active learning report", ""]
  if scale:
    lines += [f"Scale: {scale}.", ""]
  lines += report_lines(records, os.path.join(workdir, PLOT_FILE), scale)
  return workdir_lib.write_lines(workdir, lines)


def study_lines(workdir: str, arm_dirs: list[str]) -> list[str]:
  """The section of a study's report for its active-learning arms."""
  rounds = [r for arm_dir in arm_dirs for r in read_rounds(arm_dir)]
  scale = scale_line(workdir_lib.read_config(arm_dirs[0]), rounds)
  return (["", f"Active learning: {scale}.", ""]
          + report_lines(rounds, os.path.join(workdir, PLOT_FILE), scale))


def _lone_run(workdir: str) -> str | None:
  if os.path.exists(os.path.join(workdir, ROUNDS_FILE)):
    return write_report(workdir)
  return None


registry.report_section(registry.ReportSection(
    name="active learning", files_arm=lambda arm_dir: bool(read_rounds(arm_dir)),
    lines=study_lines, lone_run=_lone_run))

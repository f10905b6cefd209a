"""The study report's plots: a metric per epoch (colour per value of one
swept field, panel per value of another, min-max band over seeds) and the
autoencoder's reconstructions."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import numpy as np


INIT_COLOURS = {"random": "tab:gray", "imagenet": "tab:blue",
                "autoencoder": "tab:orange", "checkpoint": "tab:green"}
INIT_LABELS = {"random": "random init", "imagenet": "ImageNet weights",
               "autoencoder": "autoencoder encoder", "checkpoint": "checkpoint"}


def plot_axes(study: dict[str, Any]) -> tuple[str | None, str | None]:
  """(colour_by, panel_by): the study's choice, else 'init' / 'freeze' when
  swept (seed 000's study), else the first / second swept field."""
  axes = [a for a in study["axes"]
          if len({json.dumps(arm["values"].get(a)) for arm in study["arms"]}) > 1]
  colour = study.get("colour_by") or ("init" if "init" in axes else
                                      (axes[0] if axes else None))
  rest = [a for a in axes if a != colour]
  panel = study.get("panel_by") or ("freeze" if "freeze" in rest else
                                    (rest[0] if rest else None))
  return colour, panel


def by_seed(records: list[dict]) -> dict[int, list[dict]]:
  seeds: dict[int, list[dict]] = {}
  for record in records:
    seeds.setdefault(record.get("seed", 0), []).append(record)
  return {seed: sorted(rs, key=lambda r: r["epoch"]) for seed, rs in seeds.items()}



def curves(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, values[seed, epoch]) of one metric, over the epochs all seeds have."""
  seeds = by_seed(records)
  epochs = sorted(set.intersection(*(set(r["epoch"] for r in rs)
                                     for rs in seeds.values())))
  values = np.array([[next(r[key] for r in rs if r["epoch"] == e) for e in epochs]
                     for rs in seeds.values()], dtype=float)
  return np.array(epochs), values


FREEZE_TITLES = {"none": " (all layers train)", "head": " (only the head trains)",
                 "head+conv5": " (head and conv5 train)"}


def _value_label(field: str | None, value: Any) -> str:
  if field == "init":
    return INIT_LABELS.get(value, str(value))
  return f"{field} = {value}" if field else "all arms"


def plot_metric(arms: list[dict], metrics: dict[str, list[dict]], key: str,
                 ylabel: str, title: str, path: str, scale: str,
                 colour_by: str | None = "init",
                 panel_by: str | None = "freeze") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator

  value = lambda arm, field: (json.dumps(arm["values"].get(field))
                              if field else "")
  panels = list(dict.fromkeys(value(a, panel_by) for a in arms))
  colour_values = list(dict.fromkeys(value(a, colour_by) for a in arms))
  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  # Two arms in one panel with one colour: a colour (and label) per arm.
  keys = [(value(a, panel_by), value(a, colour_by)) for a in arms]
  by_arm = len(set(keys)) < len(keys)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4),
                           sharey=True, squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for arm in arms:
      if value(arm, panel_by) != panel or arm["name"] not in metrics:
        continue
      epochs, values = curves(metrics[arm["name"]], key)
      shade = value(arm, colour_by)
      colour = (INIT_COLOURS.get(arm["values"].get("init"))
                if colour_by == "init" and not by_arm else None) or cycle[
                    (arms.index(arm) if by_arm else colour_values.index(shade))
                    % len(cycle)]
      others = [f"{f.rsplit('.', 1)[-1]}={arm['values'][f]}"
                for f in arm["values"] if f not in (colour_by, panel_by)]
      label = (_value_label(colour_by, arm["values"].get(colour_by))
               if colour_by and not by_arm else arm["name"])
      if others and not by_arm:
        label += f" [{', '.join(others)}]"
      label += f" (n={len(values)})"
      ax.plot(epochs, values.mean(axis=0), color=colour, marker="o",
              markersize=3, label=label)
      if len(values) > 1:
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                        color=colour, alpha=0.2, linewidth=0)
    if panel_by:
      panel_value = json.loads(panel)
      ax.set_title(f"{panel_by} = {panel_value}" + (
          FREEZE_TITLES.get(panel_value, "") if panel_by == "freeze" else ""))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel(ylabel)
  fig.suptitle(f"{title}\n{textwrap.fill(scale, 60 + 50 * len(panels))}",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_train_val_loss(arms: list[dict], metrics: dict[str, list[dict]],
                        key: str, path: str, scale: str) -> None:
  """Seed 002's overfitting graphs: train (dashed) and validation (solid)
  `key` per epoch, a colour per arm, mean over seeds."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator

  cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  fig, ax = plt.subplots(figsize=(8, 4.5))
  for index, arm in enumerate(arms):
    records = metrics.get(arm["name"]) or []
    if not records or f"val_{key}" not in records[-1]:
      continue
    colour = cycle[index % len(cycle)]
    for split, style in (("train", "--"), ("val", "-")):
      epochs, values = curves(records, f"{split}_{key}")
      ax.plot(epochs, values.mean(axis=0), style, color=colour, marker="o",
              markersize=3, label=f"{arm['name']} "
              f"({'train' if split == 'train' else 'validation'})")
  ax.set_xlabel("epoch")
  ax.set_ylabel(key.replace("_", " "))
  ax.xaxis.set_major_locator(MaxNLocator(integer=True))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, ncol=2)
  fig.suptitle(f"Train (dashed) vs validation (solid) {key.replace('_', ' ')}"
               f"\n{textwrap.fill(scale, 110)}", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_reconstructions(npz_path: str, path: str, title: str = "") -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  with np.load(npz_path) as saved:
    inputs, outputs = saved["inputs"], saved["reconstructions"]
  n = len(inputs)
  fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 3), squeeze=False)
  for i in range(n):
    for row, images in enumerate((inputs, outputs)):
      axes[row][i].imshow(np.clip(images[i], 0.0, 1.0))
      axes[row][i].axis("off")
  axes[0][0].set_title("input", fontsize=8, loc="left")
  axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
  fig.suptitle(title or "Autoencoder: validation images (top) and "
               "reconstructions (bottom)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)

"""The study report, from the files a study wrote (no model is run):

  jaxtransfer report <workdir>

writes <workdir>/report.md with a summary table (a row per arm: best
validation loss and its epoch, final validation accuracy, each as mean +/- std
over seeds; seconds per epoch; compile seconds; parameters trained), a table
per arm with its seeds, the skipped arms and why, and the plots:

  val_loss.png                   validation loss per epoch, a panel per
                                 freezing regime, a colour per initialisation,
                                 mean line and min-max band over seeds
  val_accuracy.png               the same for accuracy
  autoencoder_reconstructions.png  validation images and their reconstructions
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from jaxtransfer import workdir as workdir_lib
from jaxtransfer.errors import UserError

REPORT_FILE = "report.md"
RECONSTRUCTIONS_FILE = "reconstructions.npz"
INIT_COLOURS = {"random": "tab:gray", "imagenet": "tab:blue",
                "autoencoder": "tab:orange", "checkpoint": "tab:green"}
INIT_LABELS = {"random": "random init", "imagenet": "ImageNet weights",
               "autoencoder": "autoencoder encoder", "checkpoint": "checkpoint"}


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def load_study(workdir: str) -> dict[str, Any]:
  """The study plan (study.json), or one inferred from the arm directories."""
  study_path = os.path.join(workdir, "study.json")
  if os.path.exists(study_path):
    return _read_json(study_path)
  arms = []
  for name in sorted(os.listdir(workdir)):
    arm_dir = os.path.join(workdir, name)
    config = workdir_lib.read_config(arm_dir) if os.path.isdir(arm_dir) else None
    if config and config.get("task") == "classifier":
      arms.append({"name": name, "init": config["init"],
                   "freeze": config["freeze"], "status": "done", "reason": None})
  if not arms:
    raise UserError(f"{workdir} holds no study (no study.json and no arm "
                    "directories with a classifier run)")
  return {"arms": arms}


def _by_seed(records: list[dict]) -> dict[int, list[dict]]:
  seeds: dict[int, list[dict]] = {}
  for record in records:
    seeds.setdefault(record.get("seed", 0), []).append(record)
  return {seed: sorted(rs, key=lambda r: r["epoch"]) for seed, rs in seeds.items()}


def summarize_arm(records: list[dict]) -> dict[str, Any]:
  """Per-seed and across-seed numbers of one arm's metrics."""
  seeds = _by_seed(records)
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
      "compile_seconds": max(r.get("compile_seconds", 0.0) for r in records),
      "trainable_parameters": records[-1].get("trainable_parameters"),
      "epochs": max(r["epoch"] for r in records),
      "num_seeds": len(seeds),
  }


def curves(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, values[seed, epoch]) of one metric, over the epochs all seeds have."""
  seeds = _by_seed(records)
  epochs = sorted(set.intersection(*(set(r["epoch"] for r in rs)
                                     for rs in seeds.values())))
  values = np.array([[next(r[key] for r in rs if r["epoch"] == e) for e in epochs]
                     for rs in seeds.values()], dtype=float)
  return np.array(epochs), values


def _pm(pair, digits=3) -> str:
  if pair is None:
    return "-"
  mean, std = pair
  return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _plot_metric(arms: list[dict], metrics: dict[str, list[dict]], key: str,
                 ylabel: str, title: str, path: str, scale: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from matplotlib.ticker import MaxNLocator

  freezes = list(dict.fromkeys(a["freeze"] for a in arms))
  fig, axes = plt.subplots(1, len(freezes), figsize=(5 * len(freezes), 4),
                           sharey=True, squeeze=False)
  for ax, freeze in zip(axes[0], freezes):
    for arm in arms:
      if arm["freeze"] != freeze or arm["name"] not in metrics:
        continue
      epochs, values = curves(metrics[arm["name"]], key)
      colour = INIT_COLOURS.get(arm["init"], None)
      label = f"{INIT_LABELS.get(arm['init'], arm['init'])} (n={len(values)})"
      ax.plot(epochs, values.mean(axis=0), color=colour, marker="o",
              markersize=3, label=label)
      if len(values) > 1:
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0),
                        color=colour, alpha=0.2, linewidth=0)
    ax.set_title(f"freeze = {freeze}" + {"none": " (all layers train)",
                                        "head": " (only the head trains)",
                                        "head+conv5": " (head and conv5 train)"
                                        }.get(freeze, ""))
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel(ylabel)
  fig.suptitle(f"{title}\n{scale}", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _plot_reconstructions(npz_path: str, path: str) -> None:
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
  fig.suptitle("Autoencoder: validation images (top) and reconstructions "
               "(bottom)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _scale_line(config: dict | None, summary: dict | None,
                records: list[dict] | None) -> str:
  if not config:
    return ""
  train = (records[-1].get("train_examples") if records else None) or (
      config.get("train_subset") or "all")
  val = (records[-1].get("val_examples") if records else None) or (
      config.get("val_subset") or "all")
  return (f"{config.get('dataset')}: {train} training images, {val} validation "
          f"images ({config.get('validation')}), {config.get('image_size')} px, "
          f"{summary['epochs'] if summary else '?'} epochs, "
          f"{summary['num_seeds'] if summary else '?'} seeds, batch "
          f"{config.get('batch_size')}, Adam lr {config.get('learning_rate')}")


def write_report(workdir: str) -> str:
  """Writes report.md and the PNGs into `workdir`; returns report.md's path."""
  workdir = os.path.abspath(workdir)
  study = load_study(workdir)
  arms = study["arms"]
  metrics, summaries, configs = {}, {}, {}
  for arm in arms:
    arm_dir = os.path.join(workdir, arm["name"])
    records = workdir_lib.read_metrics(arm_dir)
    if records:
      metrics[arm["name"]] = records
      summaries[arm["name"]] = summarize_arm(records)
      configs[arm["name"]] = workdir_lib.read_config(arm_dir)
  ran = [a for a in arms if a["name"] in metrics]
  skipped = [a for a in arms if a["status"] == "skipped"]
  not_yet = [a for a in arms if a["status"] != "skipped" and a["name"] not in metrics]

  first = ran[0]["name"] if ran else None
  scale = _scale_line(configs.get(first), summaries.get(first),
                      metrics.get(first)) if first else ""
  lines = ["# Study report", ""]
  if scale:
    lines += [f"Scale: {scale}.", ""]
  lines += [f"Arms run: {len(ran)} of {len(arms)}."]
  for arm in skipped:
    lines.append(f"- skipped **{arm['name']}**: {arm['reason']}")
  for arm in not_yet:
    lines.append(f"- not run yet: **{arm['name']}**")
  lines += ["", "## Summary (mean ± std over seeds)", "",
            "| arm | init | freeze | seeds | best val loss | epoch of best | "
            "final val accuracy | s/epoch (all seeds) | compile s | params trained |",
            "|---|---|---|---|---|---|---|---|---|---|"]
  for arm in ran:
    s = summaries[arm["name"]]
    seconds = f"{s['seconds_per_epoch']:.1f}" if s["seconds_per_epoch"] else "-"
    lines.append(
        f"| {arm['name']} | {arm['init']} | {arm['freeze']} | {s['num_seeds']} | "
        f"{_pm(s['best_val_loss'])} | {_pm(s['best_epoch'], 1)} | "
        f"{_pm(s['final_val_accuracy'])} | {seconds} | {s['compile_seconds']:.1f} | "
        f"{s['trainable_parameters']:,} |")

  plots = []
  if ran:
    _plot_metric(ran, metrics, "val_loss", "validation loss (cross-entropy)",
                 "Validation loss per epoch", os.path.join(workdir, "val_loss.png"),
                 scale)
    plots.append(("Validation loss per epoch", "val_loss.png"))
    if all(summaries[a["name"]]["final_val_accuracy"] is not None for a in ran):
      _plot_metric(ran, metrics, "val_accuracy", "validation accuracy",
                   "Validation accuracy per epoch",
                   os.path.join(workdir, "val_accuracy.png"), scale)
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
    _plot_reconstructions(npz, os.path.join(workdir, "autoencoder_reconstructions.png"))
    plots.append(("Autoencoder reconstructions", "autoencoder_reconstructions.png"))

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

  path = os.path.join(workdir, REPORT_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  os.replace(tmp, path)
  return path

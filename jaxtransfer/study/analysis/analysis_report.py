"""The analysis section of a report (study/analysis/analyze.py's results): probe accuracy
per layer (a plot, one line per arm, and tables), CKA before vs after
training per arm and between arms (heat maps), conv1's filters before and
after, accuracy under corruptions, and a paragraph written from the
numbers. A study's report.md gets it under seed 000's unwritten heading;
a single run's goes to <run>/analysis/report.md."""

from __future__ import annotations

import json
import os

import numpy as np

from jaxtransfer.study.analysis import probes, runs

HEADING = "## Why partially training works: feature introspection"


def _results(workdir: str) -> dict[str, dict]:
  """{run name: its analysis json}, in the order runs.run_dirs gives."""
  out_dir = os.path.join(workdir, runs.ANALYSIS_DIR)
  found = {}
  for name, _ in runs.run_dirs(workdir):
    path = os.path.join(out_dir, f"{name}.json")
    if os.path.exists(path):
      with open(path) as f:
        found[name] = json.load(f)
  return found


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def plot_probes(results: dict, path: str) -> None:
  plt = _plt()
  fig, ax = plt.subplots(figsize=(7, 4))
  for name, result in results.items():
    layers = result["probes"]["layers"]
    ax.plot(range(len(layers)), [result["probes"]["results"][l]["val_accuracy"]
                                 for l in layers], marker="o", label=name)
    ax.set_xticks(range(len(layers)), layers)
  ax.set_ylabel("linear probe accuracy (validation)")
  ax.set_xlabel("layer")
  ax.set_title("Probe accuracy per layer")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_heat_map(matrix, rows, columns, title, path, row_label, column_label):
  plt = _plt()
  fig, ax = plt.subplots(figsize=(4.5, 4))
  image = ax.imshow(np.asarray(matrix), vmin=0, vmax=1, cmap="magma",
                    origin="lower")
  ax.set_xticks(range(len(columns)), columns, rotation=45, fontsize=7)
  ax.set_yticks(range(len(rows)), rows, fontsize=7)
  ax.set_xlabel(column_label)
  ax.set_ylabel(row_label)
  ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, fraction=0.046)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def filter_grid(kernel: np.ndarray) -> np.ndarray:
  """[k, k, in, out] -> one image of the `out` filters (each scaled to
  [0, 1] on its own; grey when in != 3)."""
  k, _, channels, count = kernel.shape
  tiles = np.moveaxis(kernel, 3, 0)  # [out, k, k, in]
  if channels != 3:
    tiles = np.repeat(tiles.mean(-1, keepdims=True), 3, -1)
  low = tiles.min(axis=(1, 2, 3), keepdims=True)
  high = tiles.max(axis=(1, 2, 3), keepdims=True)
  tiles = (tiles - low) / np.maximum(high - low, 1e-12)
  columns = int(np.ceil(np.sqrt(count)))
  rows = int(np.ceil(count / columns))
  grid = np.ones((rows * (k + 1) + 1, columns * (k + 1) + 1, 3))
  for i, tile in enumerate(tiles):
    r, c = divmod(i, columns)
    grid[1 + r * (k + 1):1 + r * (k + 1) + k,
         1 + c * (k + 1):1 + c * (k + 1) + k] = tile
  return grid


def plot_filters(npz_path: str, path: str, title: str) -> bool:
  with np.load(npz_path) as saved:
    kernels = {k: saved[k] for k in ("before", "after") if k in saved}
  if not kernels:
    return False
  plt = _plt()
  fig, axes = plt.subplots(1, len(kernels), figsize=(4 * len(kernels), 4.2))
  for ax, (when, kernel) in zip(np.atleast_1d(axes), kernels.items()):
    ax.imshow(filter_grid(kernel))
    ax.set_title(f"{when} training", fontsize=9)
    ax.axis("off")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True


def paragraph(results: dict) -> list[str]:
  """What the numbers say: the layer each arm's training changed most,
  where its probe accuracy rises most, and its corruption drop."""
  lines = []
  for name, result in results.items():
    cka = result.get("cka", {}).get("per_layer", {})
    layers = result["probes"]["layers"]
    accuracy = [result["probes"]["results"][l]["val_accuracy"] for l in layers]
    parts = []
    if cka:
      changed = min(cka, key=lambda l: cka[l]["linear"])
      kept = max(cka, key=lambda l: cka[l]["linear"])
      if cka[changed]["linear"] > 0.999:
        parts.append("training left every body layer's features as they "
                     f"were (linear CKA >= {cka[changed]['linear']:.3f} "
                     "between initial and final: a frozen body)")
      else:
        parts.append(f"training changed **{changed}** most (linear CKA "
                     f"{cka[changed]['linear']:.2f} between its initial and "
                     f"final features) and {kept} least "
                     f"({cka[kept]['linear']:.2f})")
    if len(layers) > 1:
      jumps = np.diff(accuracy)
      at = int(np.argmax(jumps))
      peak = int(np.argmax(accuracy))
      rise = (f"rises most from {layers[at]} to {layers[at + 1]} "
              f"({accuracy[at]:.3f} -> {accuracy[at + 1]:.3f})"
              if jumps[at] > 0 else "never rises from one layer to the next")
      parts.append(f"probe accuracy {rise} and peaks at {layers[peak]} "
                   f"({accuracy[peak]:.3f})")
    corruptions = result.get("corruptions")
    if corruptions:
      mean = np.mean([np.mean(v) for v in corruptions["accuracy"].values()])
      clean = np.mean(corruptions["clean"])
      parts.append(f"under corruptions its accuracy averages {mean:.3f} "
                   f"against {clean:.3f} clean")
    if parts:
      lines.append(f"- **{name}**: " + "; ".join(parts) + ".")
  return lines


def section(workdir: str, inside: bool = False) -> list[str]:
  """The report lines (and the plots they show, written beside them);
  [] when nothing was analysed. inside: the lines go into a file in the
  analysis directory itself (links without its name)."""
  results = _results(workdir) if os.path.isdir(
      os.path.join(workdir, runs.ANALYSIS_DIR)) else {}
  results = {n: r for n, r in results.items() if "probes" in r}
  if not results:
    return []
  out_dir = os.path.join(workdir, runs.ANALYSIS_DIR)
  rel = lambda f: f if inside else f"{runs.ANALYSIS_DIR}/{f}"
  plot_probes(results, os.path.join(out_dir, "probes.png"))
  first = next(iter(results.values()))["probes"]
  lines = ["", HEADING, "",
           f"`jaxtransfer analyze` (seed 0 of each arm): ridge probes on "
           f"{first['train_examples']:,} training images ({first['held_out']:,} "
           f"more held out to choose the regulariser), judged on "
           f"{first['val_examples']:,} validation images; features pooled to "
           f"at most {max(r['dim'] for r in first['results'].values()):,} "
           "numbers per layer (probes.py).", "", *paragraph(results), "",
           f"![Probe accuracy per layer]({rel('probes.png')})", "",
           "### Probe accuracy per layer (validation)", ""]
  layers = sorted({l for r in results.values() for l in r["probes"]["layers"]},
                  key=probes.layer_order)
  lines += ["| arm | " + " | ".join(layers) + " |",
            "|---|" + "---|" * len(layers)]
  for name, result in results.items():
    cells = [f"{result['probes']['results'][l]['val_accuracy']:.3f}"
             if l in result["probes"]["results"] else "-" for l in layers]
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  shots = sorted({int(k) for r in results.values()
                  for l in r["probes"]["results"].values() for k in l["kshot"]})
  if shots:
    last = {n: r["probes"]["layers"][-1] for n, r in results.items()}
    lines += ["", "### k-shot probes at the last layer (mean ± std over draws)",
              "", "| arm | layer | " + " | ".join(f"{k}-shot" for k in shots)
              + " |", "|---|---|" + "---|" * len(shots)]
    for name, result in results.items():
      kshot = result["probes"]["results"][last[name]]["kshot"]
      lines.append(f"| {name} | {last[name]} | " + " | ".join(
          f"{kshot[str(k)]['mean']:.3f} ± {kshot[str(k)]['std']:.3f}"
          if str(k) in kshot else "-" for k in shots) + " |")
  lines += _cka_lines(workdir, results, out_dir, rel)
  lines += _filter_lines(results, out_dir, rel)
  lines += _corruption_lines(results)
  return lines


def _cka_lines(workdir, results, out_dir, rel) -> list[str]:
  lines = ["", "### CKA between each arm's initial and final weights", "",
           "Per layer, on the same validation images: 1 = training left the "
           "layer's representation as it was (up to rotation and scale).", ""]
  layers = sorted({l for r in results.values()
                   for l in r.get("cka", {}).get("layers", [])},
                  key=probes.layer_order)
  lines += ["| arm | kind | " + " | ".join(layers) + " |",
            "|---|---|" + "---|" * len(layers)]
  for name, result in results.items():
    per_layer = result.get("cka", {}).get("per_layer", {})
    for kind in ("linear", "rbf"):
      lines.append(f"| {name} | {kind} | " + " | ".join(
          f"{per_layer[l][kind]:.3f}" if l in per_layer else "-"
          for l in layers) + " |")
  for name, result in results.items():
    cka = result.get("cka")
    if cka:
      file = f"cka_{name}.png"
      plot_heat_map(cka["matrix"], cka["layers"], cka["layers"],
                    f"{name}: linear CKA, initial vs final",
                    os.path.join(out_dir, file), "initial", "final")
      lines += ["", f"![CKA {name}]({rel(file)})"]
  pairs_path = os.path.join(out_dir, "arms_cka.json")
  if os.path.exists(pairs_path):
    with open(pairs_path) as f:
      pairs = json.load(f)
    if pairs:
      lines += ["", "### CKA between arms (final weights, linear)", ""]
    for key, pair in pairs.items():
      a, b = key.split("|")
      file = f"cka_{a}_vs_{b}.png"
      plot_heat_map(pair["matrix"], pair["layers"], pair["layers"],
                    f"{a} vs {b}", os.path.join(out_dir, file), a, b)
      diagonal = np.diag(np.asarray(pair["matrix"]))
      lines.append(f"- {a} vs {b}: same-layer CKA " + ", ".join(
          f"{l} {v:.2f}" for l, v in zip(pair["layers"], diagonal))
          + f" ![]({rel(file)})")
  return lines


def _filter_lines(results, out_dir, rel) -> list[str]:
  lines = []
  for name in results:
    npz = os.path.join(out_dir, f"{name}_filters.npz")
    file = f"filters_{name}.png"
    if os.path.exists(npz) and plot_filters(
        npz, os.path.join(out_dir, file), f"{name}: first-layer filters"):
      lines.append(f"![{name} filters]({rel(file)})")
  return (["", "### First-layer filters, before and after training", ""]
          + lines) if lines else []


def _corruption_lines(results) -> list[str]:
  rows = {n: r["corruptions"] for n, r in results.items() if r.get("corruptions")}
  if not rows:
    return []
  kinds = sorted({k.split(":")[0] for r in rows.values() for k in r["accuracy"]})
  lines = ["", "### Accuracy under corruptions (validation, mean over "
           "severities and seeds)", "",
           "Hendrycks & Dietterich's CIFAR-10-C corruptions (data/cifar10_c.py; "
           "TFDS cifar10_corrupted where prepared); clean is the same "
           "images uncorrupted.", "",
           "| arm | clean | mean | " + " | ".join(kinds) + " |",
           "|---|---|---|" + "---|" * len(kinds)]
  for name, result in rows.items():
    by_kind = {k: np.mean([np.mean(v) for key, v in result["accuracy"].items()
                           if key.split(":")[0] == k]) for k in kinds}
    clean = np.mean(result["clean"])
    mean = np.mean([np.mean(v) for v in result["accuracy"].values()])
    lines.append(f"| {name} | {clean:.3f} | {mean:.3f} | " + " | ".join(
        f"{by_kind[k]:.3f}" for k in kinds) + " |")
  return lines

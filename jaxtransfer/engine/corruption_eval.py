"""eval.corruptions: accuracy of a run's models under the CIFAR-10-C
corruptions (data/robustness.py), from TFDS's cifar10_corrupted where it is
prepared, else made on the host from the split's images; and its table
(<workdir>/corruptions.md after --mode=eval, and the analysis report)."""

from __future__ import annotations

import jax
import numpy as np

from jaxtransfer import data
from jaxtransfer.data import cifar10_c
from jaxtransfer.engine import training


def corruption_accuracies(config, setup, variables, split, specs,
                          batch_size: int, limit: int = 0) -> dict:
  """{'name:severity': [accuracy per seed]} of stacked `variables` on
  `split` under each corruption: TFDS's cifar10_corrupted when it is
  prepared (config.dataset cifar10, all classes), else the corruption
  applied to the split's images on the host (cifar10_c.py)."""
  evaluate = training.make_evaluator(setup)
  extract = (training.make_feature_extractor(setup) if setup.feature_cache
             else None)
  images, labels = split.images, split.labels
  if limit:
    images, labels = images[:limit], labels[:limit]

  def accuracy(corrupted):
    eval_set = training.make_eval_set(corrupted, batch_size, setup)
    if extract is not None:
      eval_set.images = extract(variables, eval_set.images)
    sums = jax.device_get(evaluate(variables, eval_set.images,
                                   eval_set.labels, eval_set.weights))
    return [float(c) / max(float(n), 1.0) for c, n in zip(
        np.atleast_1d(sums["correct"]), np.atleast_1d(sums["count"]))]

  found = {"clean": accuracy(data.Split(images, labels))}
  for name, severity in corruption_list(specs):
    prepared = _prepared_corrupted(config, name, severity)
    found[f"{name}:{severity}"] = accuracy(prepared or data.Split(
        cifar10_c.corrupt(images, name, severity, seed=config.seed), labels))
  return found


def corruption_list(specs: str) -> list[tuple[str, int]]:
  """'all', or comma-separated cifar10_c.parse specs -> (name, severity)
  pairs, in order, without repeats."""
  pairs = []
  for spec in str(specs).split(","):
    for pair in cifar10_c.parse(spec.strip()):
      if pair not in pairs:
        pairs.append(pair)
  return pairs


def _prepared_corrupted(config, name: str, severity: int):
  """The test split of TFDS cifar10_corrupted/<name>_<severity> when it is
  prepared in the data dir and fits the run (CIFAR-10, every class)."""
  if config.dataset != "cifar10" or tuple(config.classes):
    return None
  import tensorflow_datasets as tfds
  tfds_name = cifar10_c.tfds_name(name, severity)
  data_dir = data.resolve_data_dir(config)
  try:  # never downloads: only a copy already prepared in the data dir
    if not tfds.builder(tfds_name, data_dir=data_dir).is_prepared():
      return None
    source = tfds.data_source(tfds_name, split="test", data_dir=data_dir,
                              download=False)
  except Exception:  # pylint: disable=broad-except  (not prepared here)
    return None
  examples = [source[i] for i in range(len(source))]
  return data.Split(np.stack([np.asarray(e["image"]) for e in examples]),
                    np.asarray([e["label"] for e in examples], np.int32))


def corruption_table(results: list[dict]) -> list[str]:
  """--mode=eval's corruptions.md: accuracy per corruption (rows) and
  severity (columns), mean over seeds, with the clean accuracy and the
  mean over all."""
  by = [r["val_corruption_accuracy"] for r in results]
  names = sorted({k.split(":")[0] for k in by[0]})
  severities = sorted({int(k.split(":")[1]) for k in by[0]})
  cell = lambda key: (f"{np.mean([b[key] for b in by]):.4f}"
                      if key in by[0] else "-")
  lines = [f"# Accuracy under corruptions ({len(results)} seed(s))", "",
           f"clean: {np.mean([r['val_accuracy'] for r in results]):.4f}; "
           f"mean over corruptions: "
           f"{np.mean([r['val_corruption_mean'] for r in results]):.4f}", "",
           "| corruption | " + " | ".join(str(s) for s in severities) + " |",
           "|---|" + "---|" * len(severities)]
  for name in names:
    lines.append(f"| {name} | " + " | ".join(cell(f"{name}:{s}")
                                             for s in severities) + " |")
  return lines

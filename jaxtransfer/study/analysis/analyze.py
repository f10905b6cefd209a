"""`jaxtransfer analyze WORKDIR`: why partial training works (seed 000's
unwritten section), for a run or every arm of a study.

Per run (seed 0 of its models; a staged run's last stage):
  probes     a closed-form ridge probe per body layer (probes.py): the
             training images (the last 10%, at most 5,000, held out to
             choose l2) -> accuracy on the validation split; and k-shot
             probes (k images per class, several draws: mean and std)
  cka        linear and RBF CKA (cka.py) between every layer of the run's
             initial weights and its final ones, on the first
             `cka_examples` validation images: what training changed
  filters    conv1's filters before and after training, as an image grid
  corruptions  accuracy on the validation split under each corruption and
             severity (data/cifar10_c.py; all seeds, mean and std)
Across the arms of a study: CKA between every pair of arms' final weights.

  <workdir>/analysis/<run>.json   each part as it finishes, with the
                                  checkpoint step it describes: a rerun
                                  skips what is done (and redoes a part
                                  whose run has trained further)
  <workdir>/analysis/arms_cka.json, *.png   the cross-arm CKA, the plots
  <workdir>/report.md             regenerated with the analysis section
                                  (analysis_report.py)

The features of one layer for the whole training set are never held: the
probe accumulates its statistics batch by batch on the device.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer import data
from jaxtransfer.core import checkpoints, registry, workdir as workdir_lib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import corruption_eval, experiment, run_setup, training
from jaxtransfer.study import report
from jaxtransfer.study.analysis import analysis_report, cka, probes
from jaxtransfer.study.analysis.runs import ANALYSIS_DIR, run_dirs



@dataclasses.dataclass(frozen=True)
class Options:
  probe_examples: int = 0  # training images for the probes (0: all)
  shots: tuple[int, ...] = (1, 5, 10, 25)
  draws: int = 5
  cka_examples: int = 2000
  corruptions: str = "all"  # robustness.parse spec; '' = none
  corruption_examples: int = 0  # validation images per corruption (0: all)
  feature_length: int = probes.FEATURE_LENGTH
  batch_size: int = 250


@dataclasses.dataclass
class Loaded:
  """One run, ready to analyse."""
  config: Any
  run_dir: str
  step: int
  dataset: data.Dataset
  setup: Any
  final: dict  # variables of every seed (stacked)
  initial: dict  # seed 0's initial variables


def load_run(run_dir: str, datasets: dict) -> Loaded:
  config = experiment.config_from_workdir(run_dir)
  if registry.run_kind_of(config) is not None:
    config, run_dir = experiment.final_run(config, run_dir)
  if config.task == "autoencoder":
    raise UserError(f"{run_dir}: an autoencoder run has no classes to probe")
  key = json.dumps({f: config.get(f) for f in
                    ("dataset", "data_dir", "train_split", "val_split",
                     "classes", "train_subset", "val_subset", "class_fraction",
                     "train_sample", "validation", "holdout_size",
                     "holdout_fraction", "stored_size", "stored_resize",
                     "corruption", "folds", "fold", "seed")},
                   sort_keys=True, default=str)
  if key not in datasets:
    datasets[key] = data.load_dataset(config)
  dataset = datasets[key]
  params, batch_stats, step = checkpoints.load_variables(run_dir)
  pixel_stats = workdir_lib.run_pixel_stats(run_dir)
  setup, init_state = training.build_setup(
      config, dataset.num_classes, 1, config.batch_size,
      pixel_stats=pixel_stats or dataset.pixel_stats)
  keys = training.RunKeys.from_seeds(training.seeds_of(config))
  initial = run_setup.pretrained_variables(config, run_dir, init_state,
                                           keys, "analysis")
  if initial is None:
    initial = run_setup.fresh_variables(init_state, keys)
  final = {"params": params, "batch_stats": batch_stats or {}}
  return Loaded(config, run_dir, step, dataset, setup, final,
                _seed(initial, 0))


def _seed(variables, index: int) -> dict:
  """One model's variables ({} batch_stats dropped: flax wants none)."""
  one = jax.tree.map(lambda a: np.asarray(a)[index], variables)
  return {k: v for k, v in one.items() if k == "params" or v}


def extractor(run: Loaded, options: Options) -> probes.Extractor:
  setup = run.setup
  return probes.Extractor(setup.model, setup.image_size, setup.channels,
                          setup.mean, setup.std, options.feature_length)


def _layer_batches(extract, variables, images, labels, size):
  for start in range(0, len(images), size):
    stop = start + size
    feats = extract(variables, images[start:stop])
    yield feats, jnp.asarray(labels[start:stop])


def probe_layers(run: Loaded, options: Options, log=logging.info) -> dict:
  """Per layer: full-data probe accuracy (and its l2, held-out accuracy)
  and k-shot accuracies, of the run's final weights (seed 0)."""
  extract = extractor(run, options)
  variables = _seed(run.final, 0)
  train = run.dataset.train
  count = len(train) if not options.probe_examples else min(
      options.probe_examples, len(train))
  held = min(max(count // 10, 1), 5000)
  fit_images, fit_labels = train.images[:count - held], train.labels[:count - held]
  held_images, held_labels = (train.images[count - held:count],
                              train.labels[count - held:count])
  layers = extract.layers(variables, fit_images[:1])
  num_classes = run.dataset.num_classes
  start = time.perf_counter()
  # Per layer, the Gram's sums (streamed), or the features themselves where
  # there are fewer examples than features (probes.solve_dual).
  stats, held_features, dims = None, {}, {}
  for feats, labels in _layer_batches(extract, variables, fit_images,
                                      fit_labels, options.batch_size):
    if stats is None:
      dims = {l: feats[l].shape[1] for l in layers}
      held_features = {l: [] for l in layers if len(fit_labels) < dims[l]}
      stats = {l: probes.gram_statistics([], dims[l], num_classes)
               for l in layers if l not in held_features}
    for layer in layers:
      if layer in held_features:
        held_features[layer].append(feats[layer])
      else:
        stats[layer] = probes.accumulate(stats[layer], (feats[layer], labels),
                                          num_classes)
  held_feats = _stack(extract, variables, held_images, options.batch_size)
  val = run.dataset.val
  val_feats = _stack(extract, variables, val.images, options.batch_size)
  val_labels = jnp.asarray(val.labels)
  results = {}
  for layer in layers:
    if layer in held_features:
      solution = probes.solve_dual(jnp.concatenate(held_features[layer]),
                                   jnp.asarray(fit_labels), num_classes)
    else:
      solution = probes.solve(stats[layer])
    l2, held_accuracy = probes.choose_l2(solution, held_feats[layer],
                                         jnp.asarray(held_labels))
    w, bias = probes.weights(solution, l2)
    accuracy = float(probes.correct_count(
        solution, w, bias, val_feats[layer], val_labels)) / len(val)
    results[layer] = {"dim": int(dims[layer]), "l2": l2,
                      "held_out_accuracy": held_accuracy,
                      "val_accuracy": accuracy, "kshot": {}}
    log("analysis: %s %s probe %.4f (l2 %g)", os.path.basename(run.run_dir),
        layer, accuracy, l2)
  for k in options.shots:  # one forward pass per draw serves every layer
    scores = {layer: [] for layer in layers}
    for indices in probes.kshot_draws(fit_labels, k, options.draws,
                                      num_classes):
      chosen = np.sort(indices)
      feats = _stack(extract, variables, fit_images[chosen],
                     options.batch_size)
      y = jnp.asarray(fit_labels[chosen])
      for layer in layers:
        solved = probes.kshot_solution(feats[layer], y, num_classes)
        scores[layer].append(float(probes.correct_count(
            solved, solved["w"], solved["bias"], val_feats[layer],
            val_labels)) / len(val))
    for layer in layers:
      results[layer]["kshot"][str(k)] = {
          "mean": float(np.mean(scores[layer])),
          "std": float(np.std(scores[layer])), "draws": scores[layer]}
  return {"layers": layers, "results": results, "train_examples": len(fit_labels),
          "held_out": held, "val_examples": len(val),
          "seconds": time.perf_counter() - start}


def _stack(extract, variables, images, size) -> dict[str, jax.Array]:
  """{layer: [N, D]} features of (a few thousand) images, on the device."""
  parts = [extract(variables, images[i:i + size])
           for i in range(0, len(images), size)]
  return {layer: jnp.concatenate([p[layer] for p in parts]) for layer in parts[0]}


def cka_features(run: Loaded, options: Options, variables) -> dict:
  images = run.dataset.val.images[:options.cka_examples]
  return _stack(extractor(run, options), variables, images, options.batch_size)


def first_conv_kernels(variables) -> np.ndarray | None:
  """The body's first convolution kernel [k, k, in, out] of one model."""
  body = variables["params"].get("body", {})
  names = sorted((n for n in body if "kernel" in body[n]),
                 key=probes.layer_order)
  convs = [n for n in names if np.ndim(body[n]["kernel"]) == 4]
  return np.asarray(body[convs[0]]["kernel"]) if convs else None


def before_after_cka(run: Loaded, options: Options, after_feats) -> dict:
  """Per layer: linear and RBF CKA (and debiased linear) between the
  run's initial and final weights' features of the same images."""
  before = cka_features(run, options, run.initial)
  layers = sorted(after_feats, key=probes.layer_order)
  out = {}
  for layer in layers:
    x, y = before[layer], after_feats[layer]
    out[layer] = {"linear": float(cka.linear_cka(x, y)),
                  "linear_debiased": float(cka.linear_cka(x, y, debiased=True)),
                  "rbf": float(cka.rbf_cka(x, y))}
  matrix = cka.cka_matrix([before[l] for l in layers],
                          [after_feats[l] for l in layers])
  return {"layers": layers, "per_layer": out,
          "matrix": np.asarray(matrix).tolist(), "examples": int(
              next(iter(before.values())).shape[0])}


def _load_json(path: str) -> dict:
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def analyze(workdir: str, options: Options = Options(),
            log=logging.info) -> str:
  """Runs every part for every run of `workdir` (skipping parts already
  done for the same checkpoint step), writes the pictures and the report.
  Returns the analysis directory."""
  if options.corruptions:  # a bad spec fails before any work, naming the flag
    try:
      corruption_eval.corruption_list(options.corruptions)
    except UserError as e:
      raise UserError(str(e).replace("config.eval.corruptions=",
                                     "--corruptions=", 1)) from None
  runs = run_dirs(workdir)  # (nothing to analyse fails before any write)
  out_dir = os.path.join(workdir, ANALYSIS_DIR)
  os.makedirs(out_dir, exist_ok=True)
  datasets, final_feats = {}, {}
  for name, run_dir in runs:
    path = os.path.join(out_dir, f"{name}.json")
    done = _load_json(path)
    run = load_run(run_dir, datasets)
    if done.get("step") != run.step:
      done = {"step": run.step}
    started = part_started = time.perf_counter()

    def part_done(part):
      nonlocal part_started
      log("analysis: %s %s in %.0f s", name, part,
          time.perf_counter() - part_started)
      part_started = time.perf_counter()

    if "probes" not in done:
      done["probes"] = probe_layers(run, options, log)
      workdir_lib.write_json_atomic(path, done)
      part_done("probes")
    final_feats[name] = cka_features(run, options, _seed(run.final, 0))
    if "cka" not in done:
      done["cka"] = before_after_cka(run, options, final_feats[name])
      workdir_lib.write_json_atomic(path, done)
    part_done("CKA features")
    if options.corruptions and "corruptions" not in done:
      accuracy = corruption_eval.corruption_accuracies(
          run.config, run.setup, run.final, run.dataset.val,
          options.corruptions, options.batch_size,
          options.corruption_examples)
      done["corruptions"] = {
          "examples": options.corruption_examples or len(run.dataset.val),
          "clean": accuracy.pop("clean"), "accuracy": accuracy}
      workdir_lib.write_json_atomic(path, done)
      part_done("corruptions")
    np.savez_compressed(os.path.join(out_dir, f"{name}_filters.npz"),
                        **{k: v for k, v in (
                            ("before", first_conv_kernels(run.initial)),
                            ("after", first_conv_kernels(_seed(run.final, 0))))
                           if v is not None})
    log("analysis: %s done in %.0f s", name, time.perf_counter() - started)
  names = [n for n, _ in runs]
  if len(names) > 1:
    pairs = {}
    for i, a in enumerate(names):
      for b in names[i + 1:]:
        layers = sorted(final_feats[a], key=probes.layer_order)
        if sorted(final_feats[b], key=probes.layer_order) != layers:
          continue  # other architectures: no layer correspondence
        pairs[f"{a}|{b}"] = {"layers": layers, "matrix": np.asarray(
            cka.cka_matrix([final_feats[a][l] for l in layers],
                           [final_feats[b][l] for l in layers])).tolist()}
    workdir_lib.write_json_atomic(os.path.join(out_dir, "arms_cka.json"),
                                  pairs)
  write(workdir)
  return out_dir


def write(workdir: str) -> str:
  """Regenerates a study's report.md (which includes section()), or writes
  a single run's analysis/report.md."""
  if os.path.exists(os.path.join(workdir, "study.json")):
    return report.write_report(workdir)
  path = os.path.join(workdir, ANALYSIS_DIR, "report.md")
  with open(path, "w") as f:
    f.write("# Analysis\n" + "\n".join(analysis_report.section(workdir, inside=True)) + "\n")
  return path

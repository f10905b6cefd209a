"""report.py on hand-written study files (no training): the backbone
columns (feature length, body seconds per 1,000 images, train accuracy) and
the attack accuracies read from each arm's eval.json."""

import json
import os

from jaxtransfer.study import report


def _arm(workdir, name, seeds, feature_length, feature_seconds, attacks):
  arm_dir = os.path.join(workdir, name)
  os.makedirs(arm_dir)
  with open(os.path.join(arm_dir, "config.json"), "w") as f:
    json.dump({"task": "classifier", "model": name, "init": "random",
               "freeze": "head", "dataset": "cifar10", "image_size": 64,
               "num_epochs": 1, "batch_size": 50, "num_seeds": len(seeds)}, f)
  with open(os.path.join(arm_dir, "metrics.jsonl"), "w") as f:
    for seed, (train_acc, val_acc) in seeds.items():
      f.write(json.dumps({
          "epoch": 1, "step": 20, "seed": seed, "val_loss": 1.0,
          "val_accuracy": val_acc, "train_loss": 1.1,
          "train_accuracy": train_acc, "epoch_seconds": 2.0,
          "compile_seconds": 1.0, "trainable_parameters": 10,
          "train_examples": 1000, "val_examples": 3000,
          "feature_length": feature_length,
          "feature_seconds": feature_seconds}) + "\n")
  with open(os.path.join(arm_dir, "eval.json"), "w") as f:
    json.dump([{"seed": s, "val_attack_accuracy": a}
               for s, a in zip(seeds, attacks)], f)


def test_report_has_backbone_and_attack_columns(tmp_path):
  workdir = str(tmp_path)
  _arm(workdir, "vgg16", {0: (0.5, 0.4), 1: (0.7, 0.6)}, 25088, 8.0,
       [{"fgsm:8/255": 0.1}, {"fgsm:8/255": 0.3}])
  _arm(workdir, "resnet50", {0: (0.9, 0.8), 1: (0.9, 0.8)}, 2048, 2.0,
       [{"fgsm:8/255": 0.2}, {"fgsm:8/255": 0.2}])
  with open(os.path.join(workdir, "study.json"), "w") as f:
    json.dump({"axes": ["model"], "arms": [
        {"name": n, "status": "done", "reason": None, "values": {"model": n}}
        for n in ("vgg16", "resnet50")]}, f)
  text = open(report.write_report(workdir)).read()
  header = next(l for l in text.splitlines() if l.startswith("| arm |"))
  assert "feature length" in header and "fgsm:8/255 accuracy" in header
  row = next(l for l in text.splitlines() if l.startswith("| vgg16 |"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  columns = [c.strip() for c in header.strip("|").split("|")]
  value = dict(zip(columns, cells))
  assert value["final train accuracy"] == "0.600 ± 0.100"
  assert value["final val accuracy"] == "0.500 ± 0.100"
  assert value["feature length"] == "25,088"
  assert value["body s / 1,000 images"] == "2.00"  # 8 s for 4,000 images
  assert value["fgsm:8/255 accuracy"] == "0.200 ± 0.100"

"""Seed 002's training recipe, shared by configs/joint/*.py, and its tables'
rows as study arms.

The recipe ("for all experiments"): SGD lr 0.01, momentum 0.9, weight decay
1e-4, x0.1 every 10 epochs, 40 epochs; images scaled to [0, 1] and
normalised with ImageNet's mean/std; random horizontal flips; 32 px (64 for
v2.3). Batch 32: the seed does not give its own, and at its lr 0.01 the
step count decides how far 40 epochs get. Measured on v4
(docs/studies/joint.md, "Results here"): batch 128 underfits (78.93% at
full size) where batch 32 reaches 81.16%; on a 10,000-image subset 32 /
64 / 128 give 66.7 / 61.0 / 51.4% after 15 epochs, and the same recipe
written in PyTorch (benchmarks/v4_torch_reference.py) 67.5% at batch 32.
loss = alpha * CE + beta * reconstruction (task='joint'); "no decoder" is
task='classifier'.

Every config in configs/joint/ takes the arguments smoke, num_seeds=N
(default 2) and arms=a+b (only those arms, e.g. v2.py:arms=v2.2-beta1).
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib
from jaxtransfer.models import notation

# The seed's columns (report_columns.py; the notes hold the strings).
COLUMNS = ("val_accuracy", "train_accuracy", "image_size", "encoder",
           "classifier", "joint.alpha", "joint.beta", "kernel_l2",
           "optimizer", "epochs", "seed_accuracy")


def seed002_config(arg_string, **arguments):
  """(config, parsed arguments): the recipe at full size or, with smoke,
  a few minutes on 2 CPU cores (2,560 images, 2 epochs at a constant lr,
  1 seed)."""
  arguments.setdefault("arms", "")  # a+b: only those arms (as_study)
  arg = configlib.parse_arg(arg_string, smoke=False, num_seeds=2,
                            **arguments)
  config = default.get_config()
  config.model = "notation"
  config.task = "joint"
  config.image_size = 32
  config.optimizer = "sgd"
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.learning_rate = 0.01
  config.lr_schedule = "step"
  config.lr_step_epochs = 10
  config.lr_step_factor = 0.1
  config.num_epochs = 40
  config.batch_size = 32
  config.normalization = "imagenet"
  config.augment.hflip = True
  config.num_seeds = arg.num_seeds
  if arg.smoke:
    config.train_subset, config.val_subset = 2560, 1000
    config.num_epochs = 2
    config.num_seeds = configlib.preset(arg, "num_seeds", 1)
    config.lr_schedule = "constant"  # 2 epochs: no step at epoch 10
    config.batch_size = 64
  return config, arg


def row(name: str, arch: str, seed_accuracy: float, **overrides) -> dict:
  """A table row as a named arm: the preset, its strings as notes, the
  seed's accuracy beside it."""
  encoder, classifier, size = notation.PRESETS[arch]
  arm = {"name": name, "arch": arch, "notes": {
      "encoder": encoder, "classifier": classifier,
      "seed_accuracy": f"{seed_accuracy:.2f}"}}
  if size != 32:
    arm["image_size"] = size
  arm.update(overrides)
  return arm


def as_study(config, arms, only: str = "") -> ml_collections.ConfigDict:
  """The config with the arms as its study; only='a+b' keeps those arms
  (the config argument arms=a+b), in the table's order."""
  if only:
    names = [arm["name"] for arm in arms]
    unknown = [n for n in only.split("+") if n not in names]
    if unknown:
      from jaxtransfer.core.errors import UserError
      raise UserError(f"config argument arms: {unknown[0]!r} is not one of "
                      f"{', '.join(names)}")
    arms = [arm for arm in arms if arm["name"] in only.split("+")]
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = tuple(arms)
    config.study.columns = COLUMNS
  return config


def beta_pairs(rows) -> list[dict]:
  """Each (name, arch, beta=1 accuracy, beta=0 arch, beta=0 accuracy) row
  as two arms, alpha=1 with beta 1 and 0 (the seed's two halves)."""
  arms = []
  for name, arch, accuracy, arch0, accuracy0 in rows:
    arms.append(row(f"{name}-beta1", arch, accuracy))
    arms.append(row(f"{name}-beta0", arch0, accuracy0,
                    **{"joint.beta": 0.0}))
  return arms

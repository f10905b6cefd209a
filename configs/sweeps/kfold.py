"""Seed 004's K-fold question, "are the complex models chosen over the
simpler models?", asked of CNN heads: one small convolutional encoder
(seed 002's notation, `C(32)>C(64)`) under classifiers from a linear layer
to three wide hidden layers, each arm trained on every fold of 5-fold
cross-validation side by side (config.validation='kfold', fold=-1: the
folds differ only in which examples they index, so they are one program).
The report's cross-validation table gives mean +/- std over folds and
marks the arm cross-validation picks.

  arm        classifier                        parameters of the head
  linear     L'(10)                            41k
  hidden64   L(64)>L'(10)                      263k
  hidden512  L(512)>L'(10)                     2.1M
  deep512    L(512)>L(512)>L'(10)              2.4M
  wide2048   L(2048)>L(2048)>L(2048)>L'(10)    16.8M

  python -m jaxtransfer.main --config=configs/sweeps/kfold.py --workdir=workdirs/sweep_kfold
  python -m jaxtransfer.main --config=configs/sweeps/kfold.py:smoke --workdir=/tmp/jt/sweep_kfold

CIFAR-10's first 5,000 training images (balanced), 32 px, Adam 1e-3,
batch 64, 10 epochs; the test split is kept for --mode=eval.

Arguments: smoke (600 images, 3 folds, 2 epochs, three arms), folds=K
(default 5), train_subset=N, num_epochs=N, arms=a+b.
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError

HEADS = {"linear": "L'(10)", "hidden64": "L(64)>L'(10)",
         "hidden512": "L(512)>L'(10)", "deep512": "L(512)>L(512)>L'(10)",
         "wide2048": "L(2048)>L(2048)>L(2048)>L'(10)"}


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, folds=5, train_subset=5000,
                            num_epochs=10, arms="+".join(HEADS))
  config = default.get_config()
  config.model = "notation"
  config.encoder = "C(32)>C(64)"
  config.image_size = 32
  config.optimizer, config.learning_rate = "adam", 1e-3
  config.batch_size, config.eval_batch_size = 64, 500
  config.validation, config.folds, config.fold = "kfold", arg.folds, -1
  config.train_subset = arg.train_subset
  config.val_subset = 1000
  config.num_epochs = arg.num_epochs
  config.augment.hflip = True
  names = arg.arms.split("+")
  if arg.smoke:
    # (an argument the user gave wins over the smoke preset)
    config.train_subset = configlib.preset(arg, "train_subset", 600)
    config.val_subset = 200
    config.folds = configlib.preset(arg, "folds", 3)
    config.num_epochs = configlib.preset(arg, "num_epochs", 2)
    config.batch_size = 40
    config.log_every_steps = 5
    if not configlib.given(arg, "arms"):
      names = ["linear", "hidden512", "wide2048"]
  unknown = [n for n in names if n not in HEADS]
  if unknown:
    raise UserError(f"config argument arms: {unknown[0]!r} is not one of "
                    f"{', '.join(HEADS)}")
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = tuple({"name": n, "classifier": HEADS[n],
                               "notes": {"classifier": HEADS[n]}}
                              for n in names)
    config.study.columns = ("val_accuracy", "val_loss", "train_accuracy",
                            "classifier")
  return config

"""Seed 004's optimizer question: "Fit ResNet50 on CIFAR10 using other types
of optimizations techniques (RMSProp, AdaGrad)". ResNet-50 from random
weights at 32 px with the seed's Keras head (flatten -> 512 ReLU -> 10:
config.head='mlp'), 5 epochs, batch 32, each optimizer with Keras's
defaults (framework='keras'; seed: RMSprop 41.45%, Adagrad 58.29% test
accuracy) plus Adam and SGD, each over a learning-rate grid so the
comparison is fair (the seed used each optimizer's default rate only).
The rates of one optimizer differ only in a scalar of the step: each
optimizer's arms train as one program (study.vectorize).

The body is torchvision's ResNet-50 (v1.5: the stride in the 3x3 conv),
not Keras's (v1: the stride in the first 1x1 conv, biased convs, BatchNorm
epsilon 1.001e-5); at 32 px both end in a 1x1x2048 map, so Keras's Flatten
and our global pool give the same 2,048 features.

  python -m jaxtransfer.main --config=configs/sweeps/optimizers.py --workdir=workdirs/sweep_opt
  python -m jaxtransfer.main --config=configs/sweeps/optimizers.py:smoke --workdir=/tmp/jt/sweep_opt

Arguments: smoke, num_seeds=N (default 2), vectorize, optimizers=a+b
(default rmsprop+adagrad+adam+sgd), lrs=0.01+0.001+0.0001 (the grid;
Keras's defaults are 0.001 for all four, and SGD's 0.01).
"""

from configs.sweeps import common

SEED_ACCURACY = {"rmsprop": "41.45 (lr 0.001)", "adagrad": "58.29 (lr 0.001)"}


def get_config(arg=None):
  config, arg = common.seed004_config(
      arg, vectorize=True, optimizers="rmsprop+adagrad+adam+sgd",
      lrs="0.01+0.001+0.0001")
  config.model = "resnet50"
  config.head = "mlp"
  config.head_hidden = 512
  config.momentum = 0.0  # Keras's SGD default
  if arg.smoke:
    config.train_subset, config.val_subset = 320, 200
  arms = []
  for optimizer in arg.optimizers.split("+"):
    for lr in arg.lrs.split("+"):
      arms.append({"name": f"{optimizer}_lr{lr}", "optimizer": optimizer,
                   "learning_rate": float(lr),
                   "notes": {"seed_accuracy": SEED_ACCURACY.get(optimizer,
                                                                "-")}})
  return common.as_study(
      config, arms, ("val_accuracy", "val_loss", "train_accuracy",
                     "train_loss", "optimizer", "learning_rate",
                     "seed_accuracy"), vectorize=arg.vectorize,
      colour_by="learning_rate", panel_by="optimizer")

"""Seed 004's small-network transfer: "Use the simple LeNet demo to do
transfer learning, classifying on the STL 10 dataset. Compare the transfer
learning model performance with the one randomly initialized." Both ways the
seed discusses, each against the same network from random weights:

  arm          model        from
  stem_mnist   lenet_stem   the seed's way: six convolutions shrink 96x96x3
                            to 28x28x1 in front of the MNIST LeNet's layers
                            (body and head loaded, stem new; seed: 29.24%)
  stem_random  lenet_stem   random (seed: 36.09%)
  rgb_mnist    lenet_rgb    the way it suggests: LeNet pre-trained on MNIST
                            upsampled to 96x96x3, then trained on STL-10
  rgb_random   lenet_rgb    random

Two source runs are trained first (config.study.sources): <workdir>/
source_mnist28 (lenet on MNIST, 28x28x1) and source_mnist96 (lenet_rgb on
MNIST resized to 96 px with its grey plane repeated). Keras's defaults
(Adam 1e-3, epsilon 1e-7; glorot_uniform kernels, zero biases), batch
32, 10 source epochs and 20 target epochs (the seed's), STL-10's 5,000
training and 8,000 test images; every layer trains (the seed froze none). The seed fed raw 0-255 pixels; here [0, 1].

data=cifar is the same study as a real experiment on the CIFAR-10 copy
here (MNIST and STL-10 cannot be downloaded): the sources are grey CIFAR-10
classes 0-4 (corruption='grayscale', all 25,000 images) at 28 px and at
96 px; the target is colour classes 5-9 at 96 px (upsampled, as STL-10's
size), 500 per class (STL-10's budget), validated on their 5,000 test
images. It answers the same question (a grey small-image source for a
colour large-image target), not the seed's numbers.

  python -m jaxtransfer.main --config=configs/sweeps/small_net_transfer.py --workdir=workdirs/lenet_stl10
  python -m jaxtransfer.main --config=configs/sweeps/small_net_transfer.py:data=cifar --workdir=workdirs/lenet_cifar
  python -m jaxtransfer.main --config=configs/sweeps/small_net_transfer.py:data=cifar,smoke --workdir=/tmp/jt/lenet_cifar

Arguments: data=stl10|cifar, smoke, num_seeds=N (default 2),
source_epochs=10, epochs=20.
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError

SOURCE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
SEED_ACCURACY = {"stem_mnist": "29.24", "stem_random": "36.09"}


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, data="stl10", num_seeds=2,
                            source_epochs=10, epochs=20)
  if arg.data not in ("stl10", "cifar"):
    raise UserError(f"config argument data={arg.data!r}: stl10 (the seed's "
                    "MNIST -> STL-10) or cifar (the CIFAR-10 analogue)")
  cifar = arg.data == "cifar"
  config = default.get_config()
  config.framework, config.optimizer = "keras", "adam"
  config.learning_rate, config.batch_size = 1e-3, 32
  # Keras's layer defaults, as the seed's create_lenet: with PyTorch's
  # (uniform biases) the six-layer stem's output barely depends on the
  # image at init, and the stem arms stayed at chance for 20 epochs.
  config.kernel_init, config.bias_init = "glorot_uniform", "zeros"
  config.eval_batch_size = 500
  config.normalization = "none"
  config.num_seeds = arg.num_seeds
  config.num_epochs = arg.epochs
  config.image_size = 96
  config.dataset = "cifar10" if cifar else "stl10"
  if cifar:
    config.classes = TARGET_CLASSES
    config.train_subset, config.val_subset = 2500, 0
  source = {"dataset": "cifar10" if cifar else "mnist", "init": "random",
            "num_epochs": arg.source_epochs, "num_seeds": 1,
            "classes": SOURCE_CLASSES if cifar else (),
            "corruption": "grayscale" if cifar else "",
            "train_subset": 0, "val_subset": 2000 if cifar else 0}
  if arg.smoke:
    config.train_subset, config.val_subset = 200, 100
    config.num_epochs = configlib.preset(arg, "epochs", 1)
    config.num_seeds = configlib.preset(arg, "num_seeds", 1)
    config.log_every_steps = 5
    source.update(num_epochs=configlib.preset(arg, "source_epochs", 1),
                  train_subset=320, val_subset=100)
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.sources = {
        "mnist28": {**source, "model": "lenet", "image_size": 28},
        "mnist96": {**source, "model": "lenet_rgb", "image_size": 96}}
    config.study.arms = tuple(
        {"name": name, "model": model, "init": "checkpoint" if weights else
         "random", **({"init_weights": weights} if weights else {}),
         "notes": {"seed_accuracy": SEED_ACCURACY.get(name, "-")}}
        for name, model, weights in (
            ("stem_mnist", "lenet_stem", "source:mnist28"),
            ("stem_random", "lenet_stem", ""),
            ("rgb_mnist", "lenet_rgb", "source:mnist96"),
            ("rgb_random", "lenet_rgb", "")))
    config.study.columns = ("val_accuracy", "val_loss", "train_accuracy",
                            "train_loss", "model", "init", "seed_accuracy")
  return config

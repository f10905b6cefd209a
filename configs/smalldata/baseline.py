"""Seed 003's baseline: 1,000 randomly drawn CIFAR-10 training images, a
frozen pretrained body and a linear head, judged by test accuracy and by
FGSM/PGD "accuracy".

  python -m jaxtransfer.main --config=configs/smalldata/baseline.py:weights=W --workdir=workdirs/sd_baseline
  python -m jaxtransfer.main --config=configs/smalldata/baseline.py:smoke --workdir=workdirs/sd_baseline_smoke
  python -m jaxtransfer.main --mode=eval --workdir=workdirs/sd_baseline   # clean, FGSM, PGD

Arguments:
  model=NAME    the body (default alexnet_torchvision; the seed chose vgg16,
                see configs/smalldata/backbones.py)
  weights=DIR   converted torchvision ImageNet weights of that model
                (`jaxtransfer convert --arch=NAME ...`); without them the
                body is random (ImageNet files cannot be downloaded here)
  image_size=N  default 224 (torchvision's); smoke: 64
  smoke         200 images, 500 validation images, 64 px: a minute on a CPU

The other seed-003 configs (backbones, active_learning, robust) start from
`seed003_config` here.
"""

from configs import default
from jaxtransfer.core import configlib

EVAL_ATTACKS = ("fgsm:8/255", "pgd:8/255:2/255:10")


def seed003_config(arg):
  """The shared base: CIFAR-10, a frozen body + linear head, Adam, attacks."""
  config = default.get_config()
  config.model = arg.model
  config.head = "linear"  # the seed's "simple linear layer"
  config.freeze = "head"  # the body is not trained (feature extraction)
  config.init = "imagenet" if arg.weights else "random"
  config.init_weights = arg.weights
  config.image_size = arg.image_size
  config.normalization = "imagenet"
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.batch_size = 50
  config.num_epochs = 10
  config.eval_batch_size = 250
  config.eval.attacks = EVAL_ATTACKS
  if arg.smoke:
    config.image_size = configlib.preset(arg, "image_size", 64)
    config.val_subset = 500
    config.batch_size = 25
    config.num_epochs = 3
    config.log_every_steps = 5
    config.bn_momentum = 0.9
  return config


def parse(arg):
  return configlib.parse_arg(arg, smoke=False, model="alexnet_torchvision",
                             weights="", image_size=224, num_seeds=1)


def get_config(arg=None):
  arg = parse(arg)
  config = seed003_config(arg)
  config.train_sample = 200 if arg.smoke else 1000  # the seed's budget
  config.num_seeds = arg.num_seeds
  return config

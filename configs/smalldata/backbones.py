"""Seed 003's backbone comparison: each pretrained body, frozen, with a
linear head trained for one epoch on 1,000 random CIFAR-10 images, "just to
see how they perform in order of magnitude relative to each other".

The report's table gives per body the validation (test) and train accuracy,
the feature length the head sees, seconds per epoch and the body's seconds
per 1,000 images (the seed chose by accuracy against run time). The bodies
are frozen and nothing is augmented, so each body's features are computed
once (the feature cache) and the epoch trains only the head.

  python -m jaxtransfer.main --config=configs/smalldata/backbones.py:weights=W --workdir=workdirs/sd_backbones
  python -m jaxtransfer.main --config=configs/smalldata/backbones.py:smoke --workdir=workdirs/sd_backbones_smoke

Arguments:
  weights=W     a directory holding one `jaxtransfer convert --arch=NAME`
                output per body, named as the model (W/vgg16, W/alexnet_torchvision,
                ...; alexnet_torchvision's is `--arch=alexnet`). Without it
                every body is random: the comparison then measures only
                feature length and speed (ImageNet files cannot be
                downloaded on these machines).
  models=a+b    the bodies (default the seed's six plus resnet50)
  image_size=N  default 224; smoke: 64 px, 200 images, 500 validation images
"""

import ml_collections

from configs.smalldata import baseline
from jaxtransfer.core import configlib

MODELS = ("vgg16", "vgg13_bn", "alexnet_torchvision", "densenet121", "vgg19",
          "vgg19_bn", "resnet50")


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, weights="", image_size=224,
                            models="+".join(MODELS), num_seeds=1)
  arg.model = MODELS[0]
  config = baseline.seed003_config(arg)
  config.train_sample = 200 if arg.smoke else 1000
  config.num_epochs = 1  # the seed: one epoch
  config.num_seeds = arg.num_seeds
  config.eval.attacks = ()
  config.init_weights = ""
  arms = []
  for model in arg.models.split("+"):
    arm = {"name": model, "model": model}
    if arg.weights:
      arm.update(init="imagenet", init_weights=f"{arg.weights}/{model}")
    arms.append(arm)
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = tuple(arms)
  return config

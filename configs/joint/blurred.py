"""Seed 002's blurred CIFAR-10: v4 with dropout + L2 trained on Gaussian-
blurred images (train and test), 40 epochs (common.py):

  with_decoder  60.16  encoder + decoder + classifier, beta = 1
  no_decoder    55.37  "the network using only Encoder and the Classifier
                       in model arch" (task='classifier'; the seed's table
                       heads it "Arch Encoder", as its other no-decoder
                       table, and writes beta = 0, which for the classifier
                       is the same model and gradient)

The blur is applied once on the host (jaxtransfer/data/degrade.py). The seed
says only "a Gaussian Blur": sigma = 2 px here, Pillow's
ImageFilter.GaussianBlur() default (its radius is the standard deviation).
Measured against that reading: sigma 1 cost v4 3.4 points at epoch 12
(76.4% vs 79.8% for the unblurred recipe in PyTorch, which ends where
jaxtransfer does), far from the seed's 25.5 (85.69 ->
60.16); sigma 2 cost 9.2 at epoch 5 (60.2% vs 69.4%; docs/studies/joint.md,
"Results here").

  python -m jaxtransfer.main --config=configs/joint/blurred.py --workdir=workdirs/joint_blurred
  python -m jaxtransfer.main --config=configs/joint/blurred.py:smoke --workdir=/tmp/jt/joint_blurred

Arguments: sigma=2.0 (the blur's standard deviation, pixels), smoke,
num_seeds, arms.
"""

from configs.joint import common
from configs.joint.v4 import GAMMA


def get_config(arg=None):
  config, arg = common.seed002_config(arg, sigma=2.0)
  config.corruption = f"gaussian_blur:{arg.sigma:g}"
  return common.as_study(config, [
      common.row("with_decoder", "v4", 60.16, **GAMMA),
      common.row("no_decoder", "v4", 55.37, task="classifier", **GAMMA)],
      only=arg.arms)

"""Seed 002's blurred CIFAR-10: v4 with dropout + L2 trained on Gaussian-
blurred images (train and test), encoder + decoder + classifier (beta=1,
seed 60.16%) against encoder + classifier (beta=0, seed 55.37%), 40 epochs
(common.py). The blur is applied once on the host (jaxtransfer/
corruptions.py); the seed does not give its sigma, 1.0 px here.

  python -m jaxtransfer.main --config=configs/joint/blurred.py --workdir=workdirs/joint_blurred
  python -m jaxtransfer.main --config=configs/joint/blurred.py:smoke --workdir=/tmp/jt/joint_blurred

Arguments: sigma=1.0 (the blur, pixels), smoke, num_seeds.
"""

from configs.joint import common
from configs.joint.v4 import GAMMA


def get_config(arg=None):
  config, arg = common.seed002_config(arg, sigma=1.0)
  config.corruption = f"gaussian_blur:{arg.sigma:g}"
  return common.as_study(config, [
      common.row("autoencoder+classifier", "v4", 60.16, **GAMMA),
      common.row("encoder+classifier", "v4", 55.37,
                 **{**GAMMA, "joint.beta": 0.0})])

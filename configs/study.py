"""The seed study in one command: initialisation (random, ImageNet,
autoencoder) x freezing regime (none, head, head+conv5) x num_seeds seeds,
Adam 1e-3, cross-entropy; then report.md with tables and plots.

  python -m jaxtransfer.main --config=configs/study.py --workdir=workdirs/study \
      --config.init_weights=weights/alexnet_imagenet
  python -m jaxtransfer.main --config=configs/study.py:smoke --workdir=workdirs/study_smoke
  jaxtransfer report workdirs/study      # rebuild the report from the metrics

Arguments: smoke (the whole grid on a small subset, minutes on a CPU),
num_seeds=N (default 3). The ImageNet arms need weights converted with
`jaxtransfer convert` (config.init_weights); without them they are skipped and
the report says so. The autoencoder is pre-trained once (config.pretrain) and
shared by the autoencoder arms. The seed write-up augmented only "when a CNN
had difficulty generalizing"; turn augmentation on for every arm with
--config.augment.hflip=True --config.augment.vflip=True --config.augment.rotate=True.
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, num_seeds=3)
  config = default.get_config()
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.inits = ("random", "imagenet", "autoencoder")
    config.study.freezes = ("none", "head", "head+conv5")
  config.num_seeds = arg.num_seeds
  config.init_weights = ""  # converted ImageNet weights; '' skips those arms
  if arg.smoke:
    default.shrink_for_smoke(config)
    config.num_epochs = 3
    config.num_seeds = configlib.preset(arg, "num_seeds", 2)
  return config

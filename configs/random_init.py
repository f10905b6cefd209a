"""The study's control arm: AlexNet body randomly initialised (PyTorch's init).

  python -m jaxtransfer.main --config=configs/random_init.py --workdir=/tmp/jt/random
  python -m jaxtransfer.main --config=configs/random_init.py:smoke --workdir=/tmp/jt/random_smoke

Freezing regime: --config.freeze=none (default) | head | head+conv5.
Augmentation as the seed used it when a net generalised badly:
  --config.augment.hflip=True --config.augment.vflip=True --config.augment.rotate=True
"""

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = default.get_config()
  config.init = "random"
  if arg.smoke:
    default.shrink_for_smoke(config)
  return config

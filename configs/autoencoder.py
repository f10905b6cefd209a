"""Autoencoder pre-training alone: AlexNet body as encoder, resize+conv decoder,
MSE against the (upsampled, normalised) input image, Adam 1e-3.

  python -m jaxtransfer.main --config=configs/autoencoder.py --workdir=/tmp/jt/ae
  python -m jaxtransfer.main --config=configs/autoencoder.py:smoke --workdir=/tmp/jt/ae_smoke

Its workdir is what `--config.ae_checkpoint=` of configs/ae_init.py accepts.
"""

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = default.get_config()
  config.task = "autoencoder"
  config.init = "random"
  config.num_epochs = config.pretrain.num_epochs
  if arg.smoke:
    default.shrink_for_smoke(config)
    config.num_epochs = config.pretrain.num_epochs
  return config

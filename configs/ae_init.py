"""The study's autoencoder arm: pre-train an AlexNet-style autoencoder on
CIFAR-10, then train the classifier from its encoder (the head starts random).

  python -m jaxtransfer.main --config=configs/ae_init.py --workdir=/tmp/jt/ae_init
  python -m jaxtransfer.main --config=configs/ae_init.py:smoke --workdir=/tmp/jt/ae_init_smoke

The autoencoder is trained into <workdir>/autoencoder (settings in
config.pretrain) unless --config.ae_checkpoint names an existing autoencoder
run's workdir. Freezing regime: --config.freeze=none (default) | head | head+conv5.
"""

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = default.get_config()
  config.init = "autoencoder"
  if arg.smoke:
    default.shrink_for_smoke(config)
  return config

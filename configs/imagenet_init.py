"""The study's transfer arm: the AlexNet body from torchvision's ImageNet
weights (converted once with `jaxtransfer convert`), a fresh head.

  jaxtransfer convert --torch_checkpoint=alexnet-owt-7be5be79.pth --out=weights/alexnet_imagenet
  python -m jaxtransfer.main --config=configs/imagenet_init.py \
      --config.init_weights=weights/alexnet_imagenet --workdir=/tmp/jt/imagenet
  python -m jaxtransfer.main --config=configs/imagenet_init.py:smoke \
      --config.init_weights=weights/alexnet_imagenet --workdir=/tmp/jt/imagenet_smoke

Normalisation is ImageNet's mean/std (the default), as torchvision's weights
expect. Freezing regime: --config.freeze=none (default) | head | head+conv5.
"""

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = default.get_config()
  config.init = "imagenet"
  config.init_weights = ""  # required: the --out of `jaxtransfer convert`
  if arg.smoke:
    default.shrink_for_smoke(config)
  return config

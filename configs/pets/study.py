"""Seed 001: torchvision's ImageNet AlexNet transferred to the 37 breeds of
Oxford-IIIT Pet, its eight cases (configs/pets/cases.py) as one study.

  jaxtransfer convert --arch=alexnet --with_classifier \
      --torch_checkpoint=alexnet-owt-7be5be79.pth --out=weights/alexnet_imagenet
  python -m jaxtransfer.main --config=configs/pets/study.py:weights=weights/alexnet_imagenet \
      --workdir=workdirs/pets

The data as the seed split it: TFDS oxford_iiit_pet's train and test joined
(7,349 images) and split 85:15, the last 15% (1,103) held out for validation
(there is no separate test set); images resized once on the host (shorter
side to 224, centre crop) and kept on the device as uint8. SGD with momentum
0.9, each case's lr and epochs as the seed's table, batch 64 (the seed does
not say its batch size). The report's table has the seed's columns and the
seed's validation accuracy beside each case.

Arguments:
  weights=DIR        `jaxtransfer convert --arch=alexnet --with_classifier`
                     output (required unless init=random)
  init=imagenet|random   random: the seed's "from scratch" baseline body
  normalization=dataset  the seed's "yes" ('dataset', or 'imagenet')
  num_seeds=N        seeds side by side per case (default 3)
  model=alexnet_torchvision  the seed's; 'alexnet' (seed 000's small AlexNet,
                     a 2304->500->N head) makes the tests' mock study fast
  smoke              tiny: 64 px, 1 epoch per lr step, a few images
"""

import ml_collections

from configs import default
from configs.pets import cases
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, weights="", init="imagenet",
                            normalization="dataset", num_seeds=3,
                            model="alexnet_torchvision")
  config = default.get_config()
  config.dataset = "oxford_iiit_pet"
  config.train_split = "train+test"
  config.validation = "holdout"
  config.holdout_fraction = 0.15
  config.val_split = ""
  config.image_size = config.stored_size = 224
  config.model = arg.model
  config.init = arg.init
  config.init_weights = arg.weights if arg.init == "imagenet" else ""
  pretrained = arg.init == "imagenet"
  config.reinit = ("head/fc8/.*",) if pretrained else ()
  config.num_seeds = arg.num_seeds
  config.optimizer = "sgd"
  config.momentum = 0.9
  config.batch_size = 64
  config.eval_batch_size = 256
  epoch_scale = 1.0
  if arg.smoke:
    config.image_size = config.stored_size = 64
    config.batch_size = config.eval_batch_size = 16
    config.log_every_steps = 5
    epoch_scale = 0.01  # one epoch per lr step
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = cases.arms(normalization=arg.normalization,
                                   epoch_scale=epoch_scale,
                                   pretrained=pretrained)
    config.study.columns = cases.COLUMNS + ("seed_val_accuracy",)
  return config

"""Seed 001's transfer of torchvision's AlexNet "one then the other": feature
extraction (the ImageNet body frozen, the classifier trained; the body's
features are computed once), then fine-tuning of every layer at a lower
learning rate, in one run (config.stages; jaxtransfer/features/stages.py).

  jaxtransfer convert --arch=alexnet --with_classifier \
      --torch_checkpoint=alexnet-owt-7be5be79.pth --out=weights/alexnet_imagenet
  python -m jaxtransfer.main --config=configs/staged.py \
      --config.init_weights=weights/alexnet_imagenet --workdir=/tmp/jt/staged
  python -m jaxtransfer.main --config=configs/staged.py:smoke,init=random \
      --workdir=/tmp/jt/staged_smoke

Stages train in <workdir>/stage_0_extract/ and <workdir>/stage_1_finetune/;
<workdir>/metrics.jsonl holds both, with a continuous epoch and the stage.

Arguments: smoke (a few minutes on 2 CPU cores), init ('imagenet' or
'random'), model ('alexnet_torchvision'; 'alexnet' for the seed-000 model),
reinit (a regex of parameters the finetune stage re-initialises "from
scratch" at its start, e.g. 'head/fc8/.*'; '' = none).
"""

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, init="imagenet",
                            model="alexnet_torchvision", reinit="")
  config = default.get_config()
  config.model = arg.model
  config.init = arg.init
  config.init_weights = ""  # init='imagenet': the --out of `jaxtransfer convert`
  config.image_size = 224 if arg.model == "alexnet_torchvision" else 128
  extract_epochs, finetune_epochs = 10, 5
  if arg.smoke:
    default.shrink_for_smoke(config)
    config.train_subset, config.val_subset = 640, 500
    extract_epochs, finetune_epochs = 2, 1
  config.stages = (
      {"name": "extract", "freeze": "head", "num_epochs": extract_epochs,
       "learning_rate": 1e-3},
      {"name": "finetune", "freeze": "none", "num_epochs": finetune_epochs,
       "learning_rate": 1e-4,
       "reinit": (arg.reinit,) if arg.reinit else ()},
  )
  return config

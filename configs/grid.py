"""A study over any config fields: a template to copy for your own grid.

Seed 004's AlexNet with BatchNorm at 32 px (Keras defaults), the optimizer
crossed with the kernel initialiser, each arm `num_seeds` seeds side by side;
the report's table has a column per swept field and its plots a panel per
optimizer and a colour per initialiser.

  python -m jaxtransfer.main --config=configs/grid.py --workdir=workdirs/grid
  python -m jaxtransfer.main --config=configs/grid.py:smoke --workdir=workdirs/grid_smoke

Any field can be swept (`config.study.grid`, nested dicts for dotted fields:
{'augment': {'hflip': (False, True)}}), and arms that are not a grid are an
explicit list: config.study.arms = ({'name': 'case1', 'freeze': 'head'}, ...).
Arguments: smoke, num_seeds=N (default 2).
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, num_seeds=2)
  config = default.get_config()
  config.model = "alexnet_bn"
  config.image_size = 32
  config.framework = "keras"  # Adam eps 1e-7, as Keras (seed 004)
  config.batch_size = 32
  config.num_epochs = 5
  config.num_seeds = arg.num_seeds
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.grid = (("optimizer", ("sgd", "adam")),
                         ("kernel_init", ("he_normal", "glorot_uniform")))
    config.study.colour_by = "kernel_init"
    config.study.panel_by = "optimizer"
  if arg.smoke:  # 2,560 images, 32 px, 2 epochs; BatchNorm momentum 0.9
    default.shrink_for_smoke(config)
    config.image_size = 32
    config.num_epochs = 2
  return config

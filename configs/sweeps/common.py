"""Seed 004's setting, shared by configs/sweeps/*.py: Keras's AlexNet with
BatchNorm at 32 px (`alexnet_bn`), Keras defaults (Adam lr 1e-3, epsilon
1e-7; BatchNorm momentum 0.99, epsilon 1e-3), batch 32, 5 epochs, the whole
CIFAR-10 training set, tested on its test set, no augmentation.

The seed fed Keras the raw 0-255 pixels (`cifar10.load_data()`, no
scaling); here they are in [0, 1] (normalization='none'): BatchNorm after
the first convolution makes the two the same network after its first
layer, but 'ones'/'zeros' kernels see 255x smaller inputs.
"""

import ml_collections

from configs import default
from jaxtransfer.core import configlib


def seed004_config(arg_string, **arguments):
  """(config, parsed arguments); smoke: 2,560 images, 2 epochs, 1 seed,
  BatchNorm momentum 0.9 (default.shrink_for_smoke)."""
  arg = configlib.parse_arg(arg_string, smoke=False, num_seeds=2,
                            **arguments)
  config = default.get_config()
  config.model = "alexnet_bn"
  config.image_size = 32
  config.framework = "keras"
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.batch_size = 32
  config.num_epochs = 5
  config.normalization = "none"
  config.kernel_init = "glorot_uniform"  # Keras's default
  config.bias_init = "zeros"
  config.num_seeds = arg.num_seeds
  config.eval_batch_size = 500
  if arg.smoke:
    default.shrink_for_smoke(config)
    config.image_size, config.batch_size = 32, 32
    config.num_epochs = 2
    config.num_seeds = configlib.preset(arg, "num_seeds", 1)
  return config, arg


def as_study(config, arms, columns, vectorize=True, **study_fields):
  """The config with `arms` as its study (other config.study fields, e.g.
  colour_by, as keyword arguments)."""
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = tuple(arms)
    config.study.columns = tuple(columns)
    config.study.vectorize = vectorize
    for field, value in study_fields.items():
      config.study[field] = value
  return config

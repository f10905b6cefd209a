"""The shared base config: every field jaxtransfer reads, with its default.

Every other file in `configs/` starts from `get_config()` here and overrides a
few fields. The returned ConfigDict is locked: setting a field that does not
exist (a typo in a config file, or `--config.lerning_rate=...` on the command
line) is an error that names the nearest known fields.

Arguments (`--config=configs/default.py:smoke`):
  smoke: shrink the run (64 px, a 2,560-image class-balanced subset, a few
    epochs) so the whole pipeline finishes in a couple of minutes on 2 CPU cores.

Run it (a randomly initialised AlexNet classifier, all layers trained):
  python -m jaxtransfer.main --config=configs/default.py --workdir=/tmp/jt/default
"""

import ml_collections

from jaxtransfer import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False)
  config = ml_collections.ConfigDict()

  # What to train: 'classifier' (AlexNet body + 2304->500->10 head) or
  # 'autoencoder' (AlexNet body as encoder + a decoder, MSE reconstruction).
  config.task = "classifier"
  config.seed = 0  # model init, data order and augmentation all derive from it
  # Models trained side by side in one compiled program (jax.vmap over a seed
  # axis): seeds seed, seed+1, ..., each with its own init, data order and
  # augmentation; seed k is the run of --config.seed=k alone.
  config.num_seeds = 1
  # How the seeds share the program: 'vmap' (batched kernels), 'unroll' (one
  # copy of the step per seed), or 'auto' (vmap on GPU/TPU, unroll on CPU).
  config.seed_parallelism = "auto"

  # Data (TFDS). data_dir '' means $TFDS_DATA_DIR, else TFDS's default.
  config.dataset = "cifar10"
  config.data_dir = ""
  config.image_size = 128  # images are upsampled on the device (>= 63 px)
  config.train_subset = 0  # 0: all; N: the first N examples, class-balanced
  config.validation = "test"  # 'test' split (as the seed), or 'holdout'
  config.holdout_size = 5000  # validation='holdout': last N train examples
  config.val_subset = 0  # 0: all; N: first N validation examples, balanced
  # Normalisation after scaling to [0, 1]; ImageNet statistics by default.
  config.mean = (0.485, 0.456, 0.406)
  config.std = (0.229, 0.224, 0.225)

  # Augmentation of training images, on the device, fresh every step.
  config.augment = ml_collections.ConfigDict()
  config.augment.hflip = False
  config.augment.vflip = False
  config.augment.rotate = False
  config.augment.rotation_degrees = (10.0, 20.0)  # |angle| ~ U(low, high)
  config.augment.rotation_both_directions = True  # random sign on the angle

  # Model.
  config.head_hidden = 500
  config.kernel_init = "torch"  # PyTorch's default init, as in the seed study
  config.compute_dtype = "float32"  # or 'bfloat16' (parameters stay float32)

  # Initialisation of the body (the head starts random unless noted):
  #   'random'
  #   'autoencoder': from an autoencoder run (ae_checkpoint), or one
  #       pre-trained into <workdir>/autoencoder with `pretrain` below when
  #       ae_checkpoint is ''
  #   'imagenet': torchvision's ImageNet AlexNet, converted into init_weights
  #       by `jaxtransfer convert`
  #   'checkpoint': a jaxtransfer classifier run's workdir (init_weights); its
  #       head is reused when it has the same shapes (same classes)
  config.init = "random"
  config.ae_checkpoint = ""
  config.init_weights = ""

  # Freezing: a preset ('none', 'head' = only the head trains, 'head+conv5'),
  # or explicit ordered (regex, trainable) rules over parameter paths such as
  # 'body/conv5/kernel'; the first full match wins, every parameter must match.
  config.freeze = "none"
  config.trainable_rules = ml_collections.config_dict.placeholder(tuple)
  # With the whole body frozen and no augmentation, compute the body's
  # features once and train the head on them (same result, far faster).
  config.cache_features = True

  # Optimisation (the seed: Adam, lr 1e-3, cross-entropy).
  config.learning_rate = 1e-3
  config.batch_size = 128
  config.num_epochs = 20
  config.eval_batch_size = 500

  # Autoencoder pre-training, used when init='autoencoder' and no
  # ae_checkpoint is given (data and model fields are shared with the above).
  config.pretrain = ml_collections.ConfigDict()
  config.pretrain.num_epochs = 10
  config.pretrain.learning_rate = 1e-3
  config.pretrain.batch_size = 128

  # Checkpoints: the latest `keep_checkpoints`, plus the best by val_loss.
  config.keep_checkpoints = 2
  # Progress: the loss on the progress bar is fetched every N steps.
  config.log_every_steps = 20
  config.progress_bar = True

  if arg.smoke:
    shrink_for_smoke(config)
  config.lock()
  return config


def shrink_for_smoke(config):
  """A run of the whole pipeline in minutes on 2 CPU cores (see BENCHMARKS.md)."""
  config.image_size = 64
  config.train_subset = 2560
  config.val_subset = 1000
  config.batch_size = 64
  config.num_epochs = 4
  config.pretrain.num_epochs = 2
  config.pretrain.batch_size = 64
  config.log_every_steps = 10
  return config

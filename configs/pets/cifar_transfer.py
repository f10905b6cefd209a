"""Seed 001's eight cases as a real transfer experiment that runs here:
CIFAR-10 classes 0-4 (airplane, automobile, bird, cat, deer) are the source
task, classes 5-9 (dog, frog, horse, ship, truck) the target, with a small
budget of labelled target images (200 per class), as the pets are to
ImageNet. ImageNet weights and the pets cannot be downloaded on these
machines: this is the evidence that staged transfer works in this code, not
a claim about pets.

  python -m jaxtransfer.main --config=configs/pets/cifar_transfer.py --workdir=workdirs/pets_cifar
  python -m jaxtransfer.main --config=configs/pets/cifar_transfer.py:smoke --workdir=/tmp/jt/pets_cifar_smoke

The source model is torchvision's AlexNet (the seed's) trained from random
weights on all 25,000 source images into <workdir>/source (config.study.source;
resumable like any run) unless `source=DIR` names a finished run. Every case
then starts from it (init='checkpoint'); the last layer (fc8) is always new
(reinit: the source's five classes are not the target's), case 6
re-initialises the whole classifier. The target's validation images are
CIFAR-10's test images of classes 5-9 (val_per_class each). Case 1 uses
pixels in [0, 1], the others the target images' mean/std ('dataset'), as
the seed.

Arguments:
  source=DIR         a finished classifier run on the source classes ('' =
                     train one into <workdir>/source)
  per_class=200      labelled target images per class
  val_per_class=400  target validation images per class
  num_seeds=2        seeds side by side per case
  image_size=64      CIFAR's 32 px resized on the device (AlexNet needs >= 63)
  model=alexnet_torchvision  the seed's; 'alexnet' (seed 000's small AlexNet:
                     the same body, a flatten -> 500 -> N head, fc1 and fc2
                     in place of fc6-fc8) makes the test's run fast: what
                     loads, freezes and re-initialises is the same
  source_epochs=8
  epoch_scale=1.0    scales every case's epochs (each lr step at least 1)
  smoke              minutes on 2 CPU cores: 20 per class, one epoch at each
                     schedule's first lr, a 500-image source, 1 epoch
"""

import ml_collections

from configs import default
from configs.pets import cases
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError

SOURCE_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
# Each model's last layer: always new (the source's classes are not the
# target's).
LAST_LAYER = {"alexnet_torchvision": "head/fc8", "alexnet": "head/fc2"}


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, source="", per_class=200,
                            val_per_class=400, num_seeds=2, image_size=64,
                            source_epochs=8, epoch_scale=1.0,
                            model="alexnet_torchvision")
  if arg.model not in LAST_LAYER:
    raise UserError(f"config argument model={arg.model!r} is not one of "
                    f"{', '.join(LAST_LAYER)}")
  if arg.smoke:  # (an argument the user gave wins over the smoke preset)
    for name, value in (("per_class", 20), ("val_per_class", 20),
                        ("source_epochs", 1), ("epoch_scale", 0.01),
                        ("num_seeds", 1)):
      arg[name] = configlib.preset(arg, name, value)
  config = default.get_config()
  config.dataset = "cifar10"
  config.classes = TARGET_CLASSES
  config.train_subset = arg.per_class * len(TARGET_CLASSES)
  config.val_subset = arg.val_per_class * len(TARGET_CLASSES)
  config.image_size = arg.image_size
  config.model = arg.model
  config.init = "checkpoint"
  config.init_weights = arg.source  # '' = the study's source run
  config.reinit = (f"{LAST_LAYER[arg.model]}/.*",)
  config.num_seeds = arg.num_seeds
  config.optimizer = "sgd"
  config.momentum = 0.9
  config.batch_size = 64
  config.eval_batch_size = 500
  config.keep_checkpoints = 1
  if arg.smoke:
    config.batch_size = 32
    config.log_every_steps = 5
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = cases.arms(normalization="dataset",
                                   epoch_scale=arg.epoch_scale,
                                   lr_steps=1 if arg.smoke else 0)
    config.study.columns = cases.COLUMNS
    if not arg.source:
      # The source task: all 25,000 images of classes 0-4, AlexNet from
      # random weights, Adam 1e-4, random flips. (SGD 0.01 + momentum, the
      # ImageNet recipe, was measured still at chance after 2 epochs of
      # 5,000 images at 64 px where Adam 1e-4 reached 0.55.)
      config.study.source = {
          "classes": SOURCE_CLASSES, "num_seeds": 1,
          "train_subset": 500 if arg.smoke else 0,
          "val_subset": 250 if arg.smoke else 2000,
          "init": "random", "reinit": (), "freeze": "none",
          "normalization": "dataset", "augment": {"hflip": True},
          "num_epochs": arg.source_epochs, "optimizer": "adam",
          "learning_rate": 1e-4, "lr_schedule": "constant",
          "batch_size": 128, "eval_batch_size": 500}
  return config

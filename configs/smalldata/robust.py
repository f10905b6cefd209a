"""Seed 003's robust model: the training images augmented with colour jitter,
rotation and horizontal flips, and adversarial training with PGD, against
the same model trained on clean images; both judged by clean, FGSM and PGD
accuracy on the test set.

  python -m jaxtransfer.main --config=configs/smalldata/robust.py --workdir=workdirs/sd_robust
  python -m jaxtransfer.main --config=configs/smalldata/robust.py:smoke --workdir=workdirs/sd_robust_smoke
  python -m jaxtransfer.main --mode=eval --workdir=workdirs/sd_robust/pgd   # clean, FGSM, PGD

Arms (same 1,000 random images, same augmentation, same seeds):
  plain  the augmented images only
  pgd    + PGD adversarial training, eps 8/255, step 2/255, 7 steps (Madry
         et al.'s CIFAR-10 recipe), the whole network attacked from the
         pixels (the frozen body included)
The study evaluates every finished arm under config.eval.attacks (FGSM 8/255
and PGD-10) and the report has their accuracies.

Arguments: as configs/smalldata/baseline.py (model, weights, image_size,
smoke, num_seeds), plus adversarial=ATTACK to change the pgd arm's attack
(e.g. fgsm_rs:8/255:10/255, Wong et al.'s "fast" training).
"""

import ml_collections

from configs.smalldata import baseline
from jaxtransfer.core import configlib


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, model="alexnet_torchvision",
                            weights="", image_size=224, num_seeds=2,
                            adversarial="pgd:8/255:2/255:7")
  config = baseline.seed003_config(arg)
  config.train_sample = 200 if arg.smoke else 1000
  config.num_seeds = arg.num_seeds
  # The seed's augmentation: colour jitter, rotation, horizontal flip.
  config.augment.brightness = config.augment.contrast = 0.2
  config.augment.saturation = 0.2
  config.augment.hue = 0.05
  config.augment.rotate = True
  config.augment.rotation_degrees = (0.0, 15.0)
  config.augment.hflip = True
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = ({"name": "plain"},
                         {"name": "pgd", "adversarial": arg.adversarial})
  return config

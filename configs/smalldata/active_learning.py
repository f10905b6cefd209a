"""Seed 003's active learning as a study: the strategies side by side, each
over `num_seeds` seeds, all from the same initial random sets.

From `initial` randomly drawn CIFAR-10 training images (the seed: 750), rounds
of: train the linear head on the frozen body, score the rest of the training
split, label the `query_size` (50) it is least sure of, until `budget`
(1,000). Strategies: margin (the seed's), entropy, least_confidence, and
random as the control. Every round's labelled indices and accuracy go to
<arm>/rounds.jsonl; the report plots accuracy against labelled-set size.

  python -m jaxtransfer.main --config=configs/smalldata/active_learning.py --workdir=workdirs/sd_al
  python -m jaxtransfer.main --config=configs/smalldata/active_learning.py:smoke --workdir=workdirs/sd_al_smoke
  jaxtransfer report workdirs/sd_al

Arguments: as configs/smalldata/baseline.py (model, weights, image_size,
smoke) plus num_seeds (default 3) and strategies (default all four, e.g.
strategies=margin+random). smoke: a 2,000-image pool, 100 + 2 x 50 labels,
margin and random, 2 seeds, 500 validation images, 64 px.
"""

import ml_collections

from configs.smalldata import baseline
from jaxtransfer.core import configlib

# The study's arms: the source write-up's strategy (margin), two others and
# the control. Named here, not taken from the feature's table, so a strategy
# added to the lab does not silently join this study.
STRATEGIES = "margin+entropy+least_confidence+random"


def get_config(arg=None):
  arg = configlib.parse_arg(arg, smoke=False, model="alexnet_torchvision",
                            weights="", image_size=224, num_seeds=3,
                            strategies=STRATEGIES)
  config = baseline.seed003_config(arg)
  config.num_seeds = arg.num_seeds
  config.num_epochs = 30  # a linear head on cached features: cheap
  config.active.initial, config.active.query_size = 750, 50
  config.active.budget = 1000
  strategies = tuple(arg.strategies.split("+"))
  if arg.smoke:
    config.train_subset = 2000  # the pool
    config.active.initial, config.active.budget = 100, 200
    config.num_epochs = 5
    config.num_seeds = configlib.preset(arg, "num_seeds", 2)
    if not configlib.given(arg, "strategies"):
      strategies = ("margin", "random")
  config.active.strategy = strategies[0]
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.grid = {"active": {"strategy": strategies}}
  return config

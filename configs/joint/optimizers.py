"""Seed 002's optimizer comparison on v4 with dropout + L2 (40 epochs): SGD
(85.69%), Adam (82.89%), Adagrad (76.66%). The seed "played with base lr
(0.1 -- 0.0001)" for Adam and Adagrad and reports each at its best: here
every optimizer gets that grid of learning rates as arms, and the report
gives each arm's accuracy (read the best per optimizer off its table).
Momentum 0.9 and weight decay 1e-4 are SGD's (common.py); Adam and Adagrad
take PyTorch's defaults otherwise.

  python -m jaxtransfer.main --config=configs/joint/optimizers.py --workdir=workdirs/joint_optimizers
  python -m jaxtransfer.main --config=configs/joint/optimizers.py:smoke --workdir=/tmp/jt/joint_optimizers

Arguments: lrs=0.1+0.01+0.001+0.0001 (the grid), optimizers=sgd+adam+adagrad.
"""

from configs.joint import common
from configs.joint.v4 import GAMMA

SEED_ACCURACY = {"sgd": 85.69, "adam": 82.89, "adagrad": 76.66}


def get_config(arg=None):
  config, arg = common.seed002_config(
      arg, lrs="0.1+0.01+0.001+0.0001", optimizers="sgd+adam+adagrad")
  arms = []
  for optimizer in arg.optimizers.split("+"):
    for lr in arg.lrs.split("+"):
      arms.append(common.row(
          f"{optimizer}-lr={lr}", "v4", SEED_ACCURACY.get(optimizer, 0.0),
          optimizer=optimizer, learning_rate=float(lr), **GAMMA))
  return common.as_study(config, arms, only=arg.arms)

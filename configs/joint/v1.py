"""Seed 002's experiment 1: linear networks (v1, v1.1, v1.2), each trained
with beta=1 (classifier + decoder) and beta=0, 40 epochs (common.py).

  python -m jaxtransfer.main --config=configs/joint/v1.py --workdir=workdirs/joint_v1
  python -m jaxtransfer.main --config=configs/joint/v1.py:smoke --workdir=/tmp/jt/joint_v1
"""

from configs.joint import common

ROWS = (("v1", "v1", 58.95, "v1", 58.50),
        ("v1.1", "v1.1", 59.58, "v1.1", 59.79),
        ("v1.2", "v1.2", 60.76, "v1.2", 59.94))


def get_config(arg=None):
  config, arg = common.seed002_config(arg)
  return common.as_study(config, common.beta_pairs(ROWS), only=arg.arms)

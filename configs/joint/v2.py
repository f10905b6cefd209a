"""Seed 002's experiment 2: convolutions and linear layers (v2 - v2.3; v2.3
at 64 px), each with beta=1 and beta=0 (the beta=0 table gives v2 a wider
classifier, preset v2_beta0), 40 epochs (common.py).

  python -m jaxtransfer.main --config=configs/joint/v2.py --workdir=workdirs/joint_v2
  python -m jaxtransfer.main --config=configs/joint/v2.py:smoke --workdir=/tmp/jt/joint_v2
"""

from configs.joint import common

ROWS = (("v2", "v2", 80.11, "v2_beta0", 79.92),
        ("v2.1", "v2.1", 77.72, "v2.1", 77.36),
        ("v2.2", "v2.2", 82.69, "v2.2", 82.95),
        ("v2.3", "v2.3", 84.11, "v2.3", 83.80))


def get_config(arg=None):
  config, arg = common.seed002_config(arg)
  return common.as_study(config, common.beta_pairs(ROWS), only=arg.arms)

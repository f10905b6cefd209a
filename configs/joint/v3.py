"""Seed 002's experiment 3: convolutions only (v3 - v3.3), each with beta=1
and beta=0 (the beta=0 table's v3.2 and v3.3 differ: presets *_beta0), 40
epochs (common.py).

  python -m jaxtransfer.main --config=configs/joint/v3.py --workdir=workdirs/joint_v3
  python -m jaxtransfer.main --config=configs/joint/v3.py:smoke --workdir=/tmp/jt/joint_v3
"""

from configs.joint import common

ROWS = (("v3", "v3", 79.23, "v3", 79.25),
        ("v3.1", "v3.1", 78.72, "v3.1", 79.30),
        ("v3.2", "v3.2", 80.63, "v3.2_beta0", 81.17),
        ("v3.3", "v3.3", 81.51, "v3.3_beta0", 81.38))


def get_config(arg=None):
  config, arg = common.seed002_config(arg)
  return common.as_study(config, common.beta_pairs(ROWS), only=arg.arms)

"""Seed 004's initialiser sweep: its AlexNet with BatchNorm from each
initialiser (kernel and bias alike, as `create_alex_net(init, init)`),
5 epochs (common.py), all arms as one program (study.vectorize: they
differ only in their initial weights).

  arm               seed's test accuracy
  random_normal     61.12
  random_uniform    55.61
  truncated_normal  52.64
  zeros             10.00
  ones              19.54
  glorot_normal     58.84
  glorot_uniform    43.96, 57.53   (the seed's list has it twice)
  he_uniform        60.07
  he_normal         58.23
  lecun_normal      -              (Keras's tenth; not in the seed's list)

  python -m jaxtransfer.main --config=configs/sweeps/initializers.py --workdir=workdirs/sweep_inits
  python -m jaxtransfer.main --config=configs/sweeps/initializers.py:smoke --workdir=/tmp/jt/sweep_inits

Arguments: smoke, num_seeds=N (default 2), vectorize=false (each arm its
own program: what BENCHMARKS.md compares), inits=a+b (a subset).
"""

from configs.sweeps import common

SEED_ACCURACY = {"random_normal": "61.12", "random_uniform": "55.61",
                 "truncated_normal": "52.64", "zeros": "10.00",
                 "ones": "19.54", "glorot_normal": "58.84",
                 "glorot_uniform": "43.96, 57.53", "he_uniform": "60.07",
                 "he_normal": "58.23", "lecun_normal": "-"}


def get_config(arg=None):
  config, arg = common.seed004_config(arg, vectorize=True,
                                      inits="+".join(SEED_ACCURACY))
  arms = []
  for name in arg.inits.split("+"):
    if name not in SEED_ACCURACY:
      from jaxtransfer.core.errors import UserError
      raise UserError(f"config argument inits: {name!r} is not one of "
                      f"{', '.join(SEED_ACCURACY)}")
    arms.append({"name": name, "kernel_init": name, "bias_init": name,
                 "notes": {"seed_accuracy": SEED_ACCURACY[name]}})
  return common.as_study(config, arms, ("val_accuracy", "val_loss",
                                        "train_accuracy", "seed_accuracy"),
                         vectorize=arg.vectorize)

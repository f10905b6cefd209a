"""Seed 004's homework: "use kernel/bias regularization to improve the
behaviour of AlexNet on the CIFAR10 dataset, using the random
initialization". Keras-style penalties added to the loss (kernel_l2 *
sum(k^2), kernel_l1 * sum(|k|), the same for biases of conv/dense layers;
optimizers.py) on seed 004's AlexNet-BN with Keras's default initialiser,
5 epochs (common.py), against no regularisation; every arm differs only in
its strengths, so all train as one program (study.vectorize).

  python -m jaxtransfer.main --config=configs/sweeps/regularization.py --workdir=workdirs/sweep_reg
  python -m jaxtransfer.main --config=configs/sweeps/regularization.py:smoke --workdir=/tmp/jt/sweep_reg

Arguments: smoke, num_seeds=N (default 2), vectorize, init=NAME (kernel and
bias initialiser, default glorot_uniform: Keras's), arms=a+b (a subset).
"""

from configs.sweeps import common

ARMS = {
    "none": {},
    "kernel_l2_1e-4": {"kernel_l2": 1e-4},
    "kernel_l2_1e-3": {"kernel_l2": 1e-3},
    "kernel_l2_1e-2": {"kernel_l2": 1e-2},
    "kernel_l1_1e-5": {"kernel_l1": 1e-5},
    "kernel_l1_1e-4": {"kernel_l1": 1e-4},
    "bias_l2_1e-3": {"bias_l2": 1e-3},
    "kernel_bias_l2_1e-3": {"kernel_l2": 1e-3, "bias_l2": 1e-3},
}


def get_config(arg=None):
  config, arg = common.seed004_config(arg, vectorize=True,
                                      init="glorot_uniform",
                                      arms="+".join(ARMS))
  config.kernel_init = arg.init
  config.bias_init = "zeros" if arg.init == "glorot_uniform" else arg.init
  arms = []
  for name in arg.arms.split("+"):
    if name not in ARMS:
      from jaxtransfer.core.errors import UserError
      raise UserError(f"config argument arms: {name!r} is not one of "
                      f"{', '.join(ARMS)}")
    arms.append({"name": name, **ARMS[name]})
  return common.as_study(
      config, arms, ("val_accuracy", "val_loss", "train_accuracy",
                     "train_loss", "kernel_l2", "kernel_l1", "bias_l2"),
      vectorize=arg.vectorize)

"""Convolutions on small feature maps: XLA's convolution vs patches @ kernel.

  python -m benchmarks.small_map_conv [--batch_size=64] [--repeats=10]

Seed 004's AlexNet-BN at 32 px runs conv2..conv5 on 4x4 and 2x2 maps. Times
each of its convolutions (forward + backward, chained calls, blocking) and
the whole train step with `lax.conv_general_dilated` and with
`models.common.small_map_conv` (the im2col matrix product it switches to on
the CPU for maps of at most SMALL_MAP_PIXELS), side by side in one process,
and checks both give the same values. Prints a markdown table for
BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--batch_size", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()

  import jax
  import jax.numpy as jnp
  import numpy as np
  from benchmarks import timing
  from jaxtransfer.models import alexnet_bn, common

  rows = []
  size, channels = 32, 3
  key = jax.random.key(0)
  for conv, _, features, kernel, stride, pool in alexnet_bn.BODY_LAYERS:
    shape = (args.batch_size, size, size, channels)
    x = jax.random.normal(key, shape)
    k = jax.random.normal(key, (kernel, kernel, channels, features)) * 0.05
    def loss(impl, x, k, stride=stride):
      y = impl(x, k, (stride, stride), "SAME",
               dimension_numbers=("NHWC", "HWIO", "NHWC"))
      return jnp.sum(y ** 2)
    plain = jax.jit(jax.value_and_grad(lambda x, k: loss(jax.lax.conv_general_dilated, x, k), (0, 1)))
    small = jax.jit(jax.value_and_grad(lambda x, k: loss(common.small_map_conv, x, k), (0, 1)))
    (v1, g1), (v2, g2) = plain(x, k), small(x, k)
    np.testing.assert_allclose(v1, v2, rtol=1e-4)
    for a, b in zip(g1, g2):
      np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3 * float(jnp.abs(a).max()))
    t_plain, t_small = (timing.seconds_per_call(fn, (x, k), args.repeats,
                                                block_each=True)
                        for fn in (plain, small))
    rows.append((f"{conv} {size}x{size}x{channels} -> {features}, {kernel}x{kernel}/{stride}",
                 t_plain, t_small))
    size = -(-size // stride)
    if pool:
      size = -(-size // 2)
    channels = features

  from configs import default
  from jaxtransfer.engine import run_setup, steps
  config = default.get_config()
  config.model, config.image_size, config.optimizer = "alexnet_bn", 32, "sgd"
  n = args.batch_size * 4
  images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, n).astype(np.int32))
  order = jnp.arange(n)[None]
  times = []
  for use_small in (False, True):
    if not use_small:  # the ordinary convolution everywhere
      common.SMALL_MAP_PIXELS = -1
    setup, init_state = run_setup.build_setup(config, 10, 4, args.batch_size)
    keys = steps.RunKeys.from_seeds([0])
    step = jax.jit(steps.make_train_step(setup), donate_argnums=0)
    state = step(init_state(keys.init), images, labels, order, keys.augment)
    seconds, _ = timing.seconds_per_step(
        step, state, (images, labels, order, keys.augment), args.repeats,
        block_each=True)
    times.append(seconds)
    common.SMALL_MAP_PIXELS = 64
  rows.append(("whole train step (alexnet_bn, SGD)", *times))

  print(f"\n{datetime.date.today()} | {platform.node()} | {jax.devices()[0].device_kind} "
        f"| jax {jax.__version__} | batch {args.batch_size} | forward + backward, ms\n")
  print("| layer | lax.conv_general_dilated | small_map_conv | speed-up |")
  print("|---|---|---|---|")
  for name, a, b in rows:
    print(f"| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
  main()

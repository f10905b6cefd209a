"""The autoencoder's decoder: resize + convolution (what models.Decoder does)
against the same stages built from transposed convolutions, side by side.

  python -m benchmarks.decoder [--batch_size=32]

Times one fwd+bwd pass of the decoder alone (gradient of an MSE loss w.r.t.
its parameters) on random body features, at 64 and 128 px, after warm-up.
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
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--repeats", type=int, default=10)
  args = parser.parse_args()

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from benchmarks import timing
  from jaxtransfer import models

  class TransposedDecoder(nn.Module):
    """models.Decoder's stages and widths, each upsampling by a stride-2
    transposed convolution (then cut to the stage's size)."""
    image_size: int
    widths: tuple = (192, 96, 48)

    @nn.compact
    def __call__(self, x):
      sizes = models.body_spatial_sizes(self.image_size)
      targets = (sizes[3], sizes[0], models.conv_out(self.image_size, 11, 4, 2))
      for size, features in zip(targets, self.widths):
        x = nn.relu(nn.ConvTranspose(features, (3, 3), strides=(2, 2),
                                     padding="SAME")(x))
        x = jax.image.resize(x, (x.shape[0], size, size, features), "bilinear")
      x = nn.Conv(3, (3, 3), padding=1)(x)
      return jax.image.resize(x, (x.shape[0], self.image_size, self.image_size, 3),
                              "bilinear")

  def seconds(decoder, features, target):
    params = decoder.init(jax.random.key(0), features)["params"]
    grad = jax.jit(jax.grad(lambda p: jnp.mean(
        (decoder.apply({"params": p}, features) - target) ** 2)))
    # One untimed call (compilation), as BENCHMARKS.md's decoder rows were
    # measured; timing.WARMUP_STEPS would change them (re-run if switched).
    return timing.seconds_per_call(grad, (params,), args.repeats, warmup=1)

  print(f"\n{datetime.date.today()} | {platform.node()} | "
        f"{jax.devices()[0].device_kind} x{jax.device_count()} | jax {jax.__version__}"
        f" | batch {args.batch_size}")
  print("| px | resize+conv ms | transposed conv ms | transposed / resize+conv |")
  print("|---|---|---|---|")
  rng = np.random.default_rng(0)
  for size in (64, 128):
    spatial = models.body_spatial_sizes(size)[-1]
    features = jnp.asarray(rng.random((args.batch_size, spatial, spatial, 256),
                                      dtype=np.float32))
    target = jnp.asarray(rng.random((args.batch_size, size, size, 3), dtype=np.float32))
    ours = seconds(models.Decoder(size), features, target)
    transposed = seconds(TransposedDecoder(size), features, target)
    print(f"| {size} | {ours * 1e3:.1f} | {transposed * 1e3:.1f} | {transposed / ours:.2f}x |")


if __name__ == "__main__":
  main()

"""Seed 002's decoders, side by side: how a stride-2 transposed convolution
is computed, and resize + conv against transposed convs in v4's decoder.

  python -m benchmarks.zoo_decoder [--batch_size=32]

1. The zoo's 5-layer decoders (models/zoo_joint.py, VGG16's and ResNet50's
   widths) on the body's map at 32 and 64 px: lax.conv_transpose (what
   nn.ConvTranspose runs) against zoo_joint's matmul + overlap-add, same
   kernel and values (PyTorch's ConvTranspose2d(4, 2, 1)).
2. v4's mirrored decoder (models/notation.MirrorDecoder: bilinear 2x resize
   + 3x3 conv where the encoder pooled) against the same decoder with a
   4x4 stride-2 transposed conv there instead, on v4's encoder output.

Each time is one fwd+bwd pass (gradient of an MSE loss w.r.t. the
parameters and the input) after warm-up, mean of --repeats.
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
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  import numpy as np
  from benchmarks import timing
  from jaxtransfer.models import notation, zoo_joint

  rng = np.random.default_rng(0)

  def seconds(module, features, target):
    params = module.init(jax.random.key(0), features)["params"]
    grad = jax.jit(jax.grad(lambda p, x: jnp.mean(
        (module.apply({"params": p}, x) - target) ** 2), argnums=(0, 1)))
    # One untimed call (compilation), as BENCHMARKS.md's rows were measured;
    # timing.WARMUP_STEPS would change them (re-run if switched).
    return timing.seconds_per_call(grad, (params, features), args.repeats,
                                   warmup=1)

  def lax_transpose(x, kernel):
    return jax.lax.conv_transpose(x, kernel[::-1, ::-1], (2, 2),
                                  ((2, 2), (2, 2)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))

  print(f"\n{datetime.date.today()} | {platform.node()} | "
        f"{jax.devices()[0].device_kind} x{jax.device_count()} | jax "
        f"{jax.__version__} | batch {args.batch_size}")
  print("\n| decoder | px | lax.conv_transpose ms | matmul + overlap-add ms "
        "| lax / overlap-add |")
  print("|---|---|---|---|---|")
  original = zoo_joint.conv_transpose_4x2
  for name, channels in (("vgg16", 512), ("resnet50", 2048)):
    for size in (32, 64):
      spatial = size // zoo_joint.SCALE
      features = jnp.asarray(rng.random(
          (args.batch_size, spatial, spatial, channels), dtype=np.float32))
      target = jnp.asarray(rng.random((args.batch_size, size, size, 3),
                                      dtype=np.float32))
      decoder = zoo_joint.TransposedDecoder(zoo_joint.DECODERS[name])
      ours = seconds(decoder, features, target)
      zoo_joint.conv_transpose_4x2 = lax_transpose
      try:
        plain = seconds(decoder, features, target)
      finally:
        zoo_joint.conv_transpose_4x2 = original
      print(f"| {name} | {size} | {plain * 1e3:.1f} | {ours * 1e3:.1f} | "
            f"{plain / ours:.2f}x |")

  class TransposedMirror(nn.Module):
    """MirrorDecoder of a conv-only encoder, a transposed conv where the
    encoder pooled."""
    encoder: tuple
    input_shape: tuple

    @nn.compact
    def __call__(self, x):
      shapes, shape = [], self.input_shape
      for layer in self.encoder:
        shapes.append((layer, shape))
        size = shape[0] // 2 if layer.kind in ("C", "S") else shape[0]
        shape = (size, size, layer.size)
      for i, (layer, target) in enumerate(reversed(shapes), start=1):
        if layer.kind in ("C", "S"):
          x = zoo_joint.ConvTranspose4x2(target[-1])(x)
        else:
          x = nn.Conv(target[-1], (3, 3), padding=1)(x)
        if i < len(shapes):
          x = nn.relu(x)
      return x

  print("\n| v4 decoder | resize + conv ms | transposed conv ms | "
        "transposed / resize + conv |")
  print("|---|---|---|---|")
  encoder_text, _, size = notation.PRESETS["v4"]
  encoder = notation.parse(encoder_text, "encoder")
  features = jnp.asarray(rng.random((args.batch_size, size // 2, size // 2,
                                     32), dtype=np.float32))
  target = jnp.asarray(rng.random((args.batch_size, size, size, 3),
                                  dtype=np.float32))
  resize = seconds(notation.MirrorDecoder(encoder, (size, size, 3)), features,
                   target)
  transposed = seconds(TransposedMirror(encoder, (size, size, 3)), features,
                       target)
  print(f"| {encoder_text} at {size} px | {resize * 1e3:.1f} | "
        f"{transposed * 1e3:.1f} | {transposed / resize:.2f}x |")


if __name__ == "__main__":
  main()

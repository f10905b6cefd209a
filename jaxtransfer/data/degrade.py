"""Corrupted data, applied once on the host to every split that is read
(config.corruption): seed 002's "Gaussian Blur over the CIFAR10 dataset",
which it used to make the data harder and the autoencoder's value visible.

  corruption = ''                   none
  corruption = 'gaussian_blur:S'    a Gaussian blur of standard deviation S
                                    pixels over each image's height and
                                    width (scipy.ndimage.gaussian_filter,
                                    'reflect' borders, truncated at 4 S),
                                    rounded back to uint8
  corruption = 'grayscale'          each RGB pixel replaced by its ITU-R
                                    601-2 luma (arrays.LUMA) in all three
                                    channels, rounded to uint8 (seed 004's
                                    grey source for a colour target)

The seed does not give its blur's parameters; torchvision's GaussianBlur
(which it most likely used) draws sigma from (0.1, 2.0) per image. A fixed
sigma makes the task the same for every image and every run:
configs/joint/blurred.py uses 1.0 (its argument sigma= changes it).
"""

from __future__ import annotations

import numpy as np

from jaxtransfer.core.errors import UserError
from jaxtransfer.data.arrays import LUMA

KINDS = ("gaussian_blur", "grayscale")


def parse(spec: str) -> tuple[str, float] | None:
  """('gaussian_blur', sigma) or ('grayscale', 0.0) for a corruption spec,
  None for ''."""
  if not spec:
    return None
  kind, _, value = str(spec).partition(":")
  if kind not in KINDS:
    raise UserError(f"config.corruption={spec!r}: unknown corruption "
                    f"{kind!r} (known: {', '.join(KINDS)}; e.g. "
                    "'gaussian_blur:1.0')")
  if kind == "grayscale":
    if value:
      raise UserError(f"config.corruption={spec!r}: 'grayscale' takes no "
                      "value")
    return kind, 0.0
  try:
    sigma = float(value)
  except ValueError:
    sigma = -1.0
  if not 0.0 < sigma <= 100.0:
    raise UserError(f"config.corruption={spec!r}: expected "
                    "'gaussian_blur:SIGMA' with SIGMA > 0 pixels")
  return kind, sigma


def apply(images: np.ndarray, spec: str, chunk: int = 2048) -> np.ndarray:
  """images [N, H, W, C] uint8 with the corruption applied (a new array;
  the input is returned as it is for '')."""
  parsed = parse(spec)
  if parsed is None or not len(images):
    return images
  kind, sigma = parsed
  if kind == "grayscale":
    if images.shape[-1] == 1:
      return images
    luma = np.rint(images.astype(np.float32) @ np.asarray(LUMA, np.float32))
    return np.repeat(np.clip(luma, 0, 255).astype(np.uint8)[..., None],
                     images.shape[-1], axis=-1)
  from scipy import ndimage
  out = np.empty_like(images)
  for start in range(0, len(images), chunk):
    block = images[start:start + chunk].astype(np.float32)
    blurred = ndimage.gaussian_filter(block, sigma=(0, sigma, sigma, 0),
                                      mode="reflect", truncate=4.0)
    out[start:start + chunk] = np.clip(np.rint(blurred), 0, 255)
  return out

"""CIFAR-10-C corruptions (Hendrycks & Dietterich, "Benchmarking Neural
Network Robustness to Common Corruptions and Perturbations", ICLR 2019),
applied on the host with numpy, scipy, matplotlib and PIL only, for
config.eval.corruptions: the same nine corruptions at severities 1-5 as
TFDS's cifar10_corrupted (tfds_name), made from any images we hold.

The parameters and the order of the operations are those of the authors'
own CIFAR-10-C script, github.com/hendrycks/robustness,
ImageNet-C/create_c/make_cifar_c.py (read at commit ca360085d578). Each
image is scaled to [0, 1] in float64 (x / 255.), corrupted, clipped to
[0, 1], multiplied by 255 and cast to uint8, which *truncates*: the script
saves np.uint8(corruption(img)). pixelate and jpeg_compression stay in PIL
and are uint8 throughout.

  name               severity 1 .. 5                 what
  gaussian_noise     0.04 0.06 0.08 0.09 0.10        x + N(0, c^2)
  shot_noise         500 250 100 75 50               Poisson(x c) / c
  impulse_noise      .01 .02 .03 .05 .07             salt & pepper, amount c
  defocus_blur       (0.3,.4) (0.4,.5) (0.5,.6)      disk(radius, alias_blur)
                     (1,.2) (1.5,.1)
  gaussian_blur      .4 .6 .7 .8 1                   Gaussian, sigma c px
  contrast           .75 .5 .4 .3 .15                (x - mean) c + mean
  brightness         .05 .1 .15 .2 .3                HSV value + c
  pixelate           .95 .9 .85 .75 .65              BOX to int(32 c), back
  jpeg_compression   80 65 58 50 40                  PIL JPEG quality c

How each is reproduced without OpenCV, scikit-image or Wand:
- impulse_noise is scikit-image's random_noise(mode='s&p', amount=c) as it
  is now: each value (pixel and channel) flips with probability c, and a
  flipped value becomes 1 or 0 with probability 1/2 (two rng.random draws
  of the image's shape, `<= p`, in that order, as skimage's _bernoulli).
- defocus_blur builds the script's disk(): an aliased disk on a 17x17 grid
  (radius <= 8), normalised, then cv2.GaussianBlur with ksize 3x3 and
  sigmaX = sigmaY = alias_blur: OpenCV's getGaussianKernel (exp(-x^2 /
  2 sigma^2), times 1 / sum) in float32, applied as OpenCV's symmetric
  separable filter (float32, BORDER_REFLECT_101); the kernel is
  bit-identical to OpenCV's. Each channel is then correlated with it as
  cv2.filter2D does (anchor at the centre, BORDER_REFLECT_101 = scipy's
  'mirror'), in float64, over the kernel's non-zero centred square.
- gaussian_blur is skimage.filters.gaussian(x, sigma=c, channel_axis=-1)
  (the script's multichannel=True): scipy.ndimage.gaussian_filter with
  sigma on height and width only, mode='nearest', truncate=4.0.
- brightness uses matplotlib.colors.rgb_to_hsv / hsv_to_rgb, the same
  formulas as skimage.color.rgb2hsv / hsv2rgb (the same results).
- contrast uses each image's own per-channel mean over height and width.

Randomness (gaussian_noise, shot_noise, impulse_noise): image i of the
array gets np.random.default_rng([seed, NAMES.index(name), severity,
start + i]), so a result depends on the seed and the image's index only:
corrupting a data set in chunks with start= each chunk's first index gives
the same images as one call. The script drew from numpy's global legacy
RandomState instead, so the noise has the same distribution as CIFAR-10-C's
but not the same draws (the released arrays cannot be rebuilt bit for bit
anyway: no seed was set).

Other sizes than 32x32: everything works on H x W as it is; pixelate
resizes to (max(1, int(W c)), max(1, int(H c))) and back to (W, H); the
blurs reflect at the borders as the script's libraries do (for images
smaller than the kernel too). Single-channel images ([N, H, W, 1]) are
repeated to three channels, corrupted and returned as channel 0: for
every corruption but JPEG that is the corruption of the grey image itself
(brightness keeps grey pixels grey); JPEG codes the grey RGB image, whose
decoded red channel is returned.

Known differences from the script: the random draws (above), and what
depends on library builds: JPEG bytes on the libjpeg inside the installed
Pillow, and filter2D's DFT path vs our direct float64 sum could round a
last bit differently (a value one level apart, where it lands on an
integer exactly). Checked by hand, not in the tests (OpenCV is no
dependency): with the script's own functions on OpenCV 5.0.0, scikit-image
0.26.0 and Pillow 13.0.0, all 45 (name, severity) pairs give identical
uint8 images over the 10,000 CIFAR-10 test images (the noises fed the same
Generator), and on other sizes (5x7 to 33x20) for the two blurs.
"""

from __future__ import annotations

import io

import numpy as np

from jaxtransfer.core.errors import UserError

NAMES: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur",
    "gaussian_blur", "contrast", "brightness", "pixelate",
    "jpeg_compression")
SEVERITIES = (1, 2, 3, 4, 5)

# make_cifar_c.py's c per severity (index severity - 1), as written there.
PARAMETERS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, .08, .09, .10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (.01, .02, .03, .05, .07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                     (1.5, 0.1)),
    "gaussian_blur": (.4, .6, 0.7, .8, 1),
    "contrast": (.75, .5, .4, .3, 0.15),
    "brightness": (.05, .1, .15, .2, .3),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

_CHUNK = 1024  # images per float64 block (25 MB at 32x32x3)


def _known() -> str:
  return f"known: {', '.join(NAMES)} or 'all', severities 1-5"


def parse(spec: str) -> list[tuple[str, int]]:
  """[(name, severity), ...] for config.eval.corruptions, in the order
  given, without repeats: 'gaussian_noise:3' -> [('gaussian_noise', 3)];
  'gaussian_noise' -> its five severities; 'all' -> every name x every
  severity ('all:3' every name at 3); parts may be joined with commas
  ('contrast:1,pixelate'); '' -> [] (none)."""
  text = str(spec).strip()
  if not text:
    return []
  pairs: list[tuple[str, int]] = []
  for part in text.split(","):
    name, colon, value = part.strip().partition(":")
    name = name.strip()
    if name == "all":
      names = NAMES
    elif name in NAMES:
      names = (name,)
    else:
      raise UserError(f"config.eval.corruptions={spec!r}: unknown "
                      f"corruption {name!r} ({_known()}; e.g. "
                      "'gaussian_noise:3')")
    severities = SEVERITIES
    if colon:
      try:
        severity = int(value)
      except ValueError:
        severity = 0
      if severity not in SEVERITIES:
        raise UserError(f"config.eval.corruptions={spec!r}: severity "
                        f"{value.strip()!r} of {name!r} is not one of 1-5 "
                        f"({_known()}; e.g. 'gaussian_noise:3')")
      severities = (severity,)
    for pair in ((n, s) for n in names for s in severities):
      if pair not in pairs:
        pairs.append(pair)
  return pairs


def _check(name: str, severity: int) -> None:
  if name not in NAMES:
    raise ValueError(f"unknown corruption {name!r} ({_known()})")
  if isinstance(severity, bool) or severity not in SEVERITIES:
    raise ValueError(f"severity {severity!r} of {name!r} is not one of 1-5")


def tfds_name(name: str, severity: int) -> str:
  """TFDS's name of the released CIFAR-10-C set for (name, severity),
  e.g. 'cifar10_corrupted/gaussian_noise_3' (its configs are
  '{corruption}_{severity}'; all nine names here are TFDS's too)."""
  _check(name, severity)
  return f"cifar10_corrupted/{name}_{int(severity)}"


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0, *,
            start: int = 0) -> np.ndarray:
  """images uint8 [N, H, W, 3] (or [N, H, W, 1]) with the corruption
  `name` at `severity` (1-5) applied as make_cifar_c.py does, truncated to
  uint8 like its np.uint8(...): a new array of the same shape and dtype.

  Deterministic: image i uses np.random.default_rng([seed, NAMES.index(
  name), severity, start + i]) (seed, start >= 0), so chunks corrupted with
  start= their offset equal one call over the whole array. See the module
  docstring for other sizes, single channels and what differs from the
  script."""
  _check(name, severity)
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise ValueError("corrupt expects images [N, H, W, 3] or [N, H, W, 1]; "
                     f"got shape {images.shape}")
  if images.dtype != np.uint8:
    raise ValueError(f"corrupt expects uint8 images; got {images.dtype}")
  if int(seed) < 0 or int(start) < 0:
    raise ValueError(f"seed and start must be >= 0; got {seed}, {start}")
  if images.shape[-1] == 1:
    return corrupt(np.repeat(images, 3, axis=-1), name, severity, seed,
                   start=start)[..., :1]
  c = PARAMETERS[name][severity - 1]
  function = _FUNCTIONS[name]
  key = [int(seed), NAMES.index(name), int(severity)]
  out = np.empty_like(images)
  for lo in range(0, len(images), _CHUNK):
    block = images[lo:lo + _CHUNK]
    rngs = [np.random.default_rng(key + [int(start) + lo + i])
            for i in range(len(block))] if name in _RANDOM else None
    result = function(block, c, rngs)
    if result.dtype != np.uint8:  # the script's clip, * 255, np.uint8
      result = (np.clip(result, 0, 1) * 255).astype(np.uint8)
    out[lo:lo + len(block)] = result
  return out


# Each takes a uint8 block [n, H, W, 3], the severity's c and one numpy
# Generator per image (or None), and returns the script's value before its
# final clip (float, [0, 1] scale) or finished uint8 images.

def _gaussian_noise(block, c, rngs):
  x = block / 255.
  return x + np.stack([rng.normal(size=x.shape[1:], scale=c)
                       for rng in rngs])


def _shot_noise(block, c, rngs):
  x = block / 255.
  return np.stack([rng.poisson(image * c) for rng, image in zip(rngs, x)]) / c


def _impulse_noise(block, c, rngs):
  x = block / 255.
  out = x.copy()
  for rng, image in zip(rngs, out):
    flipped = rng.random(image.shape) <= c
    salted = rng.random(image.shape) <= 0.5
    image[flipped & salted] = 1
    image[flipped & ~salted] = 0  # skimage's low_clip for images >= 0
  return np.clip(out, 0, 1)  # random_noise(clip=True)


def gaussian_kernel(ksize: int, sigma: float) -> np.ndarray:
  """OpenCV's getGaussianKernel(ksize, sigma > 0, CV_32F): exp(-x^2 / (2
  sigma^2)) for x = i - (ksize - 1) / 2, times 1 / its sum, in float64,
  then float32."""
  x = np.arange(ksize) - (ksize - 1) * 0.5
  t = np.exp(-0.5 / (sigma * sigma) * x * x)
  return (t * (1.0 / t.sum())).astype(np.float32)


def _symmetric_3tap(a: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
  """OpenCV's small symmetric separable filter (ksize 3) along `axis` of a
  float32 array: k[1] x + k[0] (left + right), BORDER_REFLECT_101."""
  pad = [(0, 0)] * a.ndim
  pad[axis] = (1, 1)
  p = np.pad(a, pad, mode="reflect")  # numpy's 'reflect' is reflect-101
  n = a.shape[axis]
  take = lambda lo: np.take(p, np.arange(lo, lo + n), axis=axis)
  return take(1) * k[1] + (take(0) + take(2)) * k[0]


def disk(radius: float, alias_blur: float = 0.1) -> np.ndarray:
  """make_cifar_c.py's disk(): the float32 defocus kernel, 17x17 for
  radius <= 8 (its sum is 1 up to float32 rounding)."""
  if radius <= 8:
    grid = np.arange(-8, 8 + 1)
    ksize = 3
  else:
    grid = np.arange(-radius, radius + 1)
    ksize = 5
  xs, ys = np.meshgrid(grid, grid)
  aliased = np.array((xs ** 2 + ys ** 2) <= radius ** 2, dtype=np.float32)
  aliased /= np.sum(aliased)
  k = gaussian_kernel(ksize, alias_blur)
  if ksize == 3:  # OpenCV's symmetric path, bit for bit
    return _symmetric_3tap(_symmetric_3tap(aliased, k, 1), k, 0)
  from scipy import ndimage  # general case (radius > 8: never in CIFAR-C)
  rows = ndimage.correlate1d(aliased, k, axis=1, mode="mirror")
  return ndimage.correlate1d(rows, k, axis=0, mode="mirror")


def _defocus_blur(block, c, rngs):
  from scipy import ndimage
  kernel = disk(radius=c[0], alias_blur=c[1]).astype(np.float64)
  # Only the centred square that holds the non-zero taps (the zeros add
  # nothing; the anchor stays at the centre).
  nonzero = np.argwhere(kernel != 0)
  centre = kernel.shape[0] // 2
  half = int(np.abs(nonzero - centre).max())
  kernel = kernel[centre - half:centre + half + 1,
                  centre - half:centre + half + 1]
  x = block / 255.
  return ndimage.correlate(x, kernel[None, :, :, None], mode="mirror")


def _gaussian_blur(block, c, rngs):
  from scipy import ndimage
  x = block / 255.
  return ndimage.gaussian_filter(x, sigma=(0, c, c, 0), mode="nearest",
                                 truncate=4.0)


def _contrast(block, c, rngs):
  x = block / 255.
  means = np.mean(x, axis=(1, 2), keepdims=True)
  return (x - means) * c + means


def _brightness(block, c, rngs):
  from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
  hsv = rgb_to_hsv(block / 255.)
  hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
  return hsv_to_rgb(hsv)


def _pixelate(block, c, rngs):
  from PIL import Image
  out = np.empty_like(block)
  height, width = block.shape[1:3]
  small = (max(1, int(width * c)), max(1, int(height * c)))
  for i, image in enumerate(block):
    pil = Image.fromarray(image).resize(small, Image.Resampling.BOX)
    out[i] = np.asarray(pil.resize((width, height), Image.Resampling.BOX))
  return out


def _jpeg_compression(block, c, rngs):
  from PIL import Image
  out = np.empty_like(block)
  for i, image in enumerate(block):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=c)
    out[i] = np.asarray(Image.open(buffer).convert("RGB"))
  return out


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise,
    "shot_noise": _shot_noise,
    "impulse_noise": _impulse_noise,
    "defocus_blur": _defocus_blur,
    "gaussian_blur": _gaussian_blur,
    "contrast": _contrast,
    "brightness": _brightness,
    "pixelate": _pixelate,
    "jpeg_compression": _jpeg_compression,
}
_RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise")

"""CIFAR-10-C corruptions (jaxtransfer/data/cifar10_c.py) against independent
computations written out here: numpy formulas, colorsys, scipy with every
option spelled out, a brute-force reflect-101 correlation, PIL calls, noise
statistics, and scikit-image itself where it is installed (the test extra).
The parameters below are copied from make_cifar_c.py, not from the
module."""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest

from jaxtransfer.data import cifar10_c
from jaxtransfer.core.errors import UserError

# make_cifar_c.py (hendrycks/robustness), severities 1-5.
SCRIPT = {
    "gaussian_noise": [0.04, 0.06, .08, .09, .10],
    "shot_noise": [500, 250, 100, 75, 50],
    "impulse_noise": [.01, .02, .03, .05, .07],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2),
                     (1.5, 0.1)],
    "gaussian_blur": [.4, .6, 0.7, .8, 1],
    "contrast": [.75, .5, .4, .3, 0.15],
    "brightness": [.05, .1, .15, .2, .3],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
    "jpeg_compression": [80, 65, 58, 50, 40],
}


def natural_images(n: int = 8, size: int = 32, seed: int = 0) -> np.ndarray:
  """Smooth ramps and a soft blob per channel plus a little texture, in
  [25, 190]: away from the clipping that would hide a corruption."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size, 0:size] / (size - 1)
  out = np.empty((n, size, size, 3))
  for i in range(n):
    for ch in range(3):
      a, b, cx, cy = rng.uniform(-1, 1, 4)
      ramp = (a * x + b * y - min(0, a) - min(0, b)) / (abs(a) + abs(b))
      blob = np.exp(-((x - 0.5 - cx / 3) ** 2 + (y - 0.5 - cy / 3) ** 2)
                    / 0.05)
      out[i, ..., ch] = 40 + 120 * ramp + 50 * blob
  out += rng.normal(0, 6, out.shape)
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


IMAGES = natural_images()


def script_uint8(x: np.ndarray) -> np.ndarray:
  """The script's np.clip(x, 0, 1) * 255 then np.uint8 (truncation)."""
  return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def test_the_parameters_are_the_scripts():
  assert cifar10_c.NAMES == tuple(SCRIPT)
  assert cifar10_c.SEVERITIES == (1, 2, 3, 4, 5)
  for name, values in SCRIPT.items():
    assert list(cifar10_c.PARAMETERS[name]) == values, name


@pytest.mark.parametrize("name", cifar10_c.NAMES)
def test_shape_kept_and_damage_grows_with_severity(name):
  damage = []
  for severity in cifar10_c.SEVERITIES:
    out = cifar10_c.corrupt(IMAGES, name, severity)
    assert out.shape == IMAGES.shape and out.dtype == np.uint8
    damage.append(np.abs(out.astype(float) - IMAGES).mean())
  assert damage[0] > 0.5, damage
  assert np.all(np.diff(damage) > 0), damage


def test_contrast_is_the_per_image_channel_mean_formula():
  for severity, c in enumerate(SCRIPT["contrast"], 1):
    ours = cifar10_c.corrupt(IMAGES, "contrast", severity)
    for image, out in zip(IMAGES, ours):
      x = image / 255.
      means = x.mean(axis=(0, 1), keepdims=True)
      expected = script_uint8((x - means) * c + means)
      np.testing.assert_array_equal(out, expected)
    # Truncated like np.uint8, not rounded: rounding would differ.
    x = IMAGES / 255.
    means = x.mean(axis=(1, 2), keepdims=True)
    rounded = np.rint(np.clip((x - means) * c + means, 0, 1) * 255)
    assert (ours != rounded).mean() > 0.2


def test_brightness_is_hsv_value_plus_c_as_colorsys_computes_it():
  pixels = IMAGES.reshape(-1, 3) / 255.
  for severity, c in enumerate(SCRIPT["brightness"], 1):
    expected = []
    for r, g, b in pixels:
      h, s, v = colorsys.rgb_to_hsv(r, g, b)
      expected.append(colorsys.hsv_to_rgb(h, s, min(max(v + c, 0.0), 1.0)))
    expected = script_uint8(np.array(expected)).reshape(IMAGES.shape)
    ours = cifar10_c.corrupt(IMAGES, "brightness", severity)
    # colorsys does the same arithmetic in another order: a value can land
    # on the other side of an integer before the truncation.
    diff = np.abs(ours.astype(int) - expected)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005, severity


def test_gaussian_noise_has_std_c():
  grey = np.full((16, 32, 32, 3), 128, np.uint8)
  for severity, c in enumerate(SCRIPT["gaussian_noise"], 1):
    noise = cifar10_c.corrupt(grey, "gaussian_noise", severity) / 255.
    noise = noise - 128 / 255.
    # 5 sigma from the clip at 0 and 1; truncation: mean -0.5 level.
    assert abs(noise.std() / c - 1) < 0.02, severity
    assert abs(noise.mean() * 255 + 0.5) < 0.3, severity


def test_shot_noise_is_poisson_counts_over_c():
  for level in (64, 160):
    flat = np.full((16, 32, 32, 3), level, np.uint8)
    x = level / 255.
    for severity, c in enumerate(SCRIPT["shot_noise"], 1):
      out = cifar10_c.corrupt(flat, "shot_noise", severity) / 255.
      # Var(Poisson(x c) / c) = x / c; the mean stays x (less the
      # truncation's half level).
      assert abs(out.var() / (x / c) - 1) < 0.05, (level, severity)
      assert abs((out.mean() - x) * 255 + 0.5) < 0.3, (level, severity)
  # Counts over c: every value is k / c (before * 255 and truncation).
  out = cifar10_c.corrupt(np.full((2, 8, 8, 3), 90, np.uint8),
                           "shot_noise", 5)
  counts = np.arange(0, 51)
  assert set(np.unique(out)) <= set((counts / 50 * 255).astype(np.uint8))


def test_impulse_noise_flips_a_fraction_amount_to_salt_or_pepper():
  grey = np.full((16, 32, 32, 3), 100, np.uint8)
  for severity, amount in enumerate(SCRIPT["impulse_noise"], 1):
    out = cifar10_c.corrupt(grey, "impulse_noise", severity)
    changed = out != 100
    assert set(np.unique(out[changed])) <= {0, 255}
    n = changed.size
    assert abs(changed.mean() - amount) < 4 * np.sqrt(amount / n), severity
    salt = (out == 255).sum() / changed.sum()
    assert abs(salt - 0.5) < 0.05, severity
    # Per value, not per pixel: the channels flip independently.
    assert (changed.any(-1) & ~changed.all(-1)).any()


def test_impulse_and_brightness_and_blur_are_scikit_images():
  sk = pytest.importorskip("skimage")
  from skimage.filters import gaussian
  index = cifar10_c.NAMES.index("impulse_noise")
  for severity, amount in enumerate(SCRIPT["impulse_noise"], 1):
    ours = cifar10_c.corrupt(IMAGES, "impulse_noise", severity, seed=3)
    for i, image in enumerate(IMAGES):
      rng = np.random.default_rng([3, index, severity, i])  # documented
      noisy = sk.util.random_noise(image / 255., mode="s&p", amount=amount,
                                   rng=rng)
      np.testing.assert_array_equal(ours[i], script_uint8(noisy))
  for severity, c in enumerate(SCRIPT["brightness"], 1):
    ours = cifar10_c.corrupt(IMAGES, "brightness", severity)
    for image, out in zip(IMAGES, ours):
      hsv = sk.color.rgb2hsv(image / 255.)
      hsv[:, :, 2] = np.clip(hsv[:, :, 2] + c, 0, 1)
      np.testing.assert_array_equal(out, script_uint8(
          sk.color.hsv2rgb(hsv)))
  for severity, sigma in enumerate(SCRIPT["gaussian_blur"], 1):
    ours = cifar10_c.corrupt(IMAGES, "gaussian_blur", severity)
    for image, out in zip(IMAGES, ours):
      np.testing.assert_array_equal(out, script_uint8(
          gaussian(image / 255., sigma=sigma, channel_axis=-1)))


def test_gaussian_blur_is_scipys_with_skimages_defaults():
  from scipy import ndimage
  for size in (32, 7):
    images = natural_images(3, size, seed=size)
    for severity, sigma in enumerate(SCRIPT["gaussian_blur"], 1):
      ours = cifar10_c.corrupt(images, "gaussian_blur", severity)
      for image, out in zip(images, ours):
        expected = ndimage.gaussian_filter(
            image / 255., sigma=(sigma, sigma, 0), mode="nearest", cval=0,
            truncate=4.0)
        np.testing.assert_array_equal(out, script_uint8(expected))


def brute_force_correlation(image: np.ndarray, kernel: np.ndarray):
  """sum_{dy,dx} k[dy, dx] x[y + dy - r, x + dx - r] over a reflect-101
  padding (numpy's 'reflect': ... 2 1 | 0 1 2 ... n-1 | n-2 ...)."""
  r = kernel.shape[0] // 2
  padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
  h, w = image.shape[:2]
  out = np.zeros(image.shape)
  for dy in range(kernel.shape[0]):
    for dx in range(kernel.shape[1]):
      out += kernel[dy, dx] * padded[dy:dy + h, dx:dx + w]
  return out


def test_defocus_kernel_is_a_blurred_disk_that_sums_to_one():
  for radius, alias_blur in SCRIPT["defocus_blur"]:
    kernel = cifar10_c.disk(radius, alias_blur)
    assert kernel.shape == (17, 17) and kernel.dtype == np.float32
    assert abs(kernel.sum(dtype=np.float64) - 1) < 1e-6
    np.testing.assert_array_equal(kernel, kernel.T)
    np.testing.assert_array_equal(kernel, kernel[::-1, ::-1])
    # The aliased disk convolved with the 3x3 Gaussian exp(-x^2/2s^2)/sum.
    grid = np.arange(-8, 9)
    aliased = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2)
    aliased = aliased / aliased.sum()
    g = np.exp(-np.array([1., 0., 1.]) / (2 * alias_blur ** 2))
    g = np.outer(g, g) / g.sum() ** 2
    expected = brute_force_correlation(aliased[..., None], g)[..., 0]
    np.testing.assert_allclose(kernel, expected, rtol=1e-5, atol=1e-7)


def test_defocus_blur_is_a_reflect_101_correlation_per_channel():
  for size in (32, 6):  # 6: the 17x17 kernel reflects more than once
    images = natural_images(3, size, seed=size)
    for severity, (radius, alias_blur) in enumerate(SCRIPT["defocus_blur"],
                                                    1):
      kernel = cifar10_c.disk(radius, alias_blur).astype(np.float64)
      ours = cifar10_c.corrupt(images, "defocus_blur", severity)
      for image, out in zip(images, ours):
        expected = script_uint8(brute_force_correlation(image / 255.,
                                                        kernel))
        diff = np.abs(out.astype(int) - expected)
        # Another summation order: at most one level, almost never.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.002, severity


def test_defocus_blur_is_opencvs_where_installed():
  # opencv-python-headless is in the test extra: CI runs this.
  cv2 = pytest.importorskip("cv2")
  for severity, (radius, alias_blur) in enumerate(SCRIPT["defocus_blur"], 1):
    grid = np.arange(-8, 9)
    xs, ys = np.meshgrid(grid, grid)
    aliased = np.array((xs ** 2 + ys ** 2) <= radius ** 2, dtype=np.float32)
    aliased /= np.sum(aliased)
    kernel = cv2.GaussianBlur(aliased, ksize=(3, 3), sigmaX=alias_blur)
    np.testing.assert_array_equal(cifar10_c.disk(radius, alias_blur),
                                  kernel)
    ours = cifar10_c.corrupt(IMAGES, "defocus_blur", severity)
    for image, out in zip(IMAGES, ours):
      x = image / 255.
      channels = [cv2.filter2D(x[:, :, d], -1, kernel) for d in range(3)]
      np.testing.assert_array_equal(out, script_uint8(np.stack(channels,
                                                               -1)))


def test_pixelate_and_jpeg_are_pils():
  from PIL import Image
  for size in ((32, 32), (20, 27)):
    images = natural_images(3, 32, seed=1)[:, :size[0], :size[1]]
    height, width = size
    for severity, c in enumerate(SCRIPT["pixelate"], 1):
      ours = cifar10_c.corrupt(images, "pixelate", severity)
      for image, out in zip(images, ours):
        small = Image.fromarray(image).resize(
            (int(width * c), int(height * c)), Image.BOX)
        np.testing.assert_array_equal(
            out, np.asarray(small.resize((width, height), Image.BOX)))
    for severity, quality in enumerate(SCRIPT["jpeg_compression"], 1):
      ours = cifar10_c.corrupt(images, "jpeg_compression", severity)
      for image, out in zip(images, ours):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        np.testing.assert_array_equal(out, np.asarray(Image.open(buffer)))


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise",
                                  "impulse_noise"])
def test_noise_is_deterministic_per_seed_and_image(name):
  a = cifar10_c.corrupt(IMAGES, name, 3, seed=5)
  np.testing.assert_array_equal(a, cifar10_c.corrupt(IMAGES, name, 3, 5))
  assert not np.array_equal(a, cifar10_c.corrupt(IMAGES, name, 3, seed=6))
  assert not np.array_equal(a[0], a[1])  # images draw their own noise
  # Chunks with start= their offset: the same as one call.
  chunks = np.concatenate([
      cifar10_c.corrupt(IMAGES[:3], name, 3, seed=5),
      cifar10_c.corrupt(IMAGES[3:], name, 3, seed=5, start=3)])
  np.testing.assert_array_equal(a, chunks)
  # Each (name, severity) its own stream: not severity 3's noise rescaled.
  other = cifar10_c.corrupt(IMAGES, name, 4, seed=5)
  assert not np.array_equal((a != IMAGES), (other != IMAGES))


def test_deterministic_corruptions_ignore_the_seed():
  for name in ("defocus_blur", "contrast", "jpeg_compression"):
    np.testing.assert_array_equal(
        cifar10_c.corrupt(IMAGES, name, 2, seed=0),
        cifar10_c.corrupt(IMAGES, name, 2, seed=9))


def test_one_channel_images_are_corrupted_as_grey_rgb():
  grey = IMAGES[..., :1]
  for name in cifar10_c.NAMES:
    out = cifar10_c.corrupt(grey, name, 4, seed=1)
    assert out.shape == grey.shape and out.dtype == np.uint8
    rgb = cifar10_c.corrupt(np.repeat(grey, 3, -1), name, 4, seed=1)
    np.testing.assert_array_equal(out, rgb[..., :1])
  rgb = cifar10_c.corrupt(np.repeat(grey, 3, -1), "brightness", 4)
  np.testing.assert_array_equal(rgb, np.repeat(rgb[..., :1], 3, -1))


def test_bad_arrays_and_names_raise():
  with pytest.raises(ValueError, match="uint8"):
    cifar10_c.corrupt(IMAGES.astype(np.float32), "contrast", 1)
  with pytest.raises(ValueError, match="shape"):
    cifar10_c.corrupt(IMAGES[0], "contrast", 1)
  with pytest.raises(ValueError, match="unknown corruption"):
    cifar10_c.corrupt(IMAGES, "fog", 1)
  with pytest.raises(ValueError, match="severity"):
    cifar10_c.corrupt(IMAGES, "contrast", 6)
  empty = cifar10_c.corrupt(IMAGES[:0], "gaussian_noise", 1)
  assert empty.shape == (0, 32, 32, 3)


def test_parse_good_specs():
  assert cifar10_c.parse("gaussian_noise:3") == [("gaussian_noise", 3)]
  assert cifar10_c.parse("pixelate") == [("pixelate", s)
                                          for s in range(1, 6)]
  everything = cifar10_c.parse("all")
  assert len(everything) == 45 and len(set(everything)) == 45
  assert everything[:2] == [("gaussian_noise", 1), ("gaussian_noise", 2)]
  assert cifar10_c.parse("all:2") == [(n, 2) for n in cifar10_c.NAMES]
  assert cifar10_c.parse(" contrast:1 , contrast , jpeg_compression:5") == (
      [("contrast", s) for s in range(1, 6)] + [("jpeg_compression", 5)])
  assert cifar10_c.parse("") == []


@pytest.mark.parametrize("spec,bad", [
    ("fog:3", "'fog'"), ("gaussian_noise:6", "'6'"),
    ("contrast:0", "'0'"), ("contrast:x", "'x'"), ("contrast:2.0", "'2.0'"),
    ("pixelate,", "''"), ("Contrast", "'Contrast'")])
def test_parse_bad_specs_name_the_field_the_part_and_the_choices(spec, bad):
  with pytest.raises(UserError) as raised:
    cifar10_c.parse(spec)
  message = str(raised.value)
  assert message.startswith(f"config.eval.corruptions={spec!r}: ")
  assert bad in message and "\n" not in message
  assert all(name in message for name in cifar10_c.NAMES)


def test_tfds_names():
  assert cifar10_c.tfds_name("gaussian_noise", 3) == (
      "cifar10_corrupted/gaussian_noise_3")
  assert cifar10_c.tfds_name("jpeg_compression", 5) == (
      "cifar10_corrupted/jpeg_compression_5")
  with pytest.raises(ValueError):
    cifar10_c.tfds_name("glass_blur", 1)

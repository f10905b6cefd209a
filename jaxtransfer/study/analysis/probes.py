"""Per-layer linear probes: how linearly separable the classes are at each
layer of a body, by closed-form ridge regression (big_vision's few-shot
evaluator, evaluators/fewshot_lsr.py, written here for streamed features).

A layer is a probe point of the body (models/common.probe_point): each
block's output after its activation and pooling (AlexNet conv1..conv5, VGG
block1..5, ResNet stem and layer1..4, DenseNet stem and block1..4, the
notation encoder's layers). Its features are pooled to a fixed length: a
map [h, w, c] is average-pooled (PyTorch's adaptive pool) to p x p with p
the largest whole number with p^2 c <= feature_length (at most h), so every
layer of every model gives at most feature_length (4,096) numbers; a
vector stays as it is.

The probe, as big_vision's: features whitened with the training
examples' mean and std (+1e-5), a constant feature BIAS = 100 appended (so
the bias is almost unregularised), targets one-hot in {-1, 1},
W = (X^T X + l2 I)^-1 X^T Y, prediction argmax(x W). Here the training
features are never held whole: one pass on the device accumulates
sum(x), X^T X and X^T Y over batches, from which the whitened X^T X and
X^T Y follow exactly (the bias column is orthogonal to centred features).
The eigendecomposition of X^T X then gives W for every l2 of a grid at
once (with fewer training examples than features, that of the smaller
X X^T, from the features held: the same solutions); l2 is the one with the
best accuracy on a held-out slice of the training images (its features do
stay on the device: a few thousand).
k-shot probes (k images per class, several random draws) solve the same
problem in the N < D form, x^T (x x^T + l2 I)^-1 y, at big_vision's
default l2 = 2^10 (k-shot sets are too small to hold out from).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer import data
from jaxtransfer.models import common

BIAS = 100.0
FEATURE_LENGTH = 4096
L2_GRID = tuple(2.0 ** k for k in range(-4, 21, 2))
KSHOT_L2 = 2.0 ** 10


def layer_order(name: str) -> tuple:
  """'stem' first, then convolution-like layers before dense ones, by
  number: the order the layers run in for every body here."""
  number = int((re.findall(r"\d+", name) or ["0"])[-1])
  return (name != "stem", name.startswith("fc"), number, name)


def pool_to_length(x, length: int = FEATURE_LENGTH):
  """[B, h, w, c] -> [B, p*p*c] by adaptive average pooling (p as in the
  module docstring); [B, d] as it is."""
  if x.ndim == 2:
    return x
  height, channels = x.shape[1], x.shape[-1]
  side = max(1, min(height, int(np.sqrt(length / channels))))
  pooled = common.adaptive_avg_pool(x, side)
  return pooled.reshape(x.shape[0], -1)


@dataclasses.dataclass(frozen=True)
class Extractor:
  """Jitted uint8 images [B, H, W, C] -> {layer: pooled features [B, D]}
  for one model (variables of one seed)."""
  model: Any
  image_size: int
  channels: int
  mean: tuple[float, ...]
  std: tuple[float, ...]
  length: int = FEATURE_LENGTH

  @functools.cached_property
  def _fn(self) -> Callable:
    def features(variables, images):
      inputs = data.to_model_input(data.to_unit_float(images),
                                   self.image_size, self.mean, self.std,
                                   channels=self.channels)
      _, state = self.model.apply(variables, inputs, train=False,
                                  method="features",
                                  mutable=[common.PROBES])
      sown = state[common.PROBES]["body"]
      return {name[len(common.PROBE_PREFIX):]: pool_to_length(
          value[0].astype(jnp.float32), self.length)
              for name, value in sown.items()}
    return jax.jit(features)

  def __call__(self, variables, images):
    return self._fn(variables, images)

  def layers(self, variables, images) -> list[str]:
    shapes = jax.eval_shape(self._fn, variables, images[:1])
    return sorted(shapes, key=layer_order)


def batches(images: np.ndarray, size: int):
  """Consecutive [size, ...] slices (the last one short)."""
  for start in range(0, len(images), size):
    yield images[start:start + size]


# --------------------------------------------------------------- statistics

@functools.partial(jax.jit, static_argnums=2)
def accumulate(totals, features, num_classes):
  """gram_statistics' running sums (n, sum(x), X^T X, X^T onehot(y), class
  counts) plus one batch `features` = (x [B, D], labels [B])."""
  x, y = features
  onehot = jax.nn.one_hot(y, num_classes, dtype=jnp.float32)
  hi = jax.lax.Precision.HIGHEST
  return {"n": totals["n"] + x.shape[0],
          "sum": totals["sum"] + x.sum(0),
          "xtx": totals["xtx"] + jnp.matmul(x.T, x, precision=hi),
          "xty": totals["xty"] + jnp.matmul(x.T, onehot, precision=hi),
          "count": totals["count"] + onehot.sum(0)}


def gram_statistics(feature_batches, dim: int, num_classes: int) -> dict:
  """Sums over (features [B, D], labels [B]) batches: n, sum(x), X^T X,
  X^T onehot(y), class counts (float32, on the device)."""
  totals = {"n": jnp.zeros((), jnp.float32), "sum": jnp.zeros(dim),
            "xtx": jnp.zeros((dim, dim)), "xty": jnp.zeros((dim, num_classes)),
            "count": jnp.zeros(num_classes)}
  for batch in feature_batches:
    totals = accumulate(totals, batch, num_classes)
  return totals


@jax.jit
def solve(stats) -> dict:
  """The whitened problem's eigendecomposition from gram_statistics:
  {'mean', 'std', 'eigs', 'q', 'rhs', 'bias_rhs', 'n'} (float64-free; the
  Gram is centred in float32 from the sums)."""
  n = stats["n"]
  mean = stats["sum"] / n
  centred = stats["xtx"] - n * jnp.outer(mean, mean)
  std = jnp.sqrt(jnp.maximum(jnp.diag(centred) / n, 0.0)) + 1e-5
  gram = centred / jnp.outer(std, std)
  # X_w^T Y with Y = 2 onehot - 1: X^T Y = 2 X^T onehot - sum(x) 1^T, then
  # centre (subtract mean 1^T Y) and scale by 1/std.
  y_sum = 2.0 * stats["count"] - n
  xty = 2.0 * stats["xty"] - jnp.outer(stats["sum"], jnp.ones_like(y_sum))
  xty = (xty - jnp.outer(mean, y_sum)) / std[:, None]
  eigs, q = jnp.linalg.eigh((gram + gram.T) / 2)
  return {"mean": mean, "std": std, "eigs": eigs, "q": q,
          "rhs": q.T @ xty, "bias_rhs": BIAS * y_sum, "n": n}


@functools.partial(jax.jit, static_argnames="num_classes")
def solve_dual(x, y, num_classes: int) -> dict:
  """solve's result from the features themselves (x [N, D], labels [N]),
  for fewer examples than features: the eigendecomposition of the N x N
  X_w X_w^T instead of the D x D X_w^T X_w, the same ridge solutions
  ((X^T X + l2 I)^-1 X^T Y = X^T (X X^T + l2 I)^-1 Y), `q` then X_w^T Q
  [D, N] and `rhs` Q^T Y. Held, N x D features take no more memory than a
  D x D Gram."""
  n = x.shape[0]
  hi = jax.lax.Precision.HIGHEST
  mean = x.mean(0)
  std = x.std(0) + 1e-5  # as kshot_solution
  xw = (x - mean) / std
  targets = 2.0 * jax.nn.one_hot(y, num_classes, dtype=jnp.float32) - 1.0
  kernel = jnp.matmul(xw, xw.T, precision=hi)
  eigs, q = jnp.linalg.eigh((kernel + kernel.T) / 2)
  # Centred targets: X_w^T Y is unchanged (X_w's columns sum to zero), and
  # the constant direction, which the centred X_w X_w^T maps to 0 (an
  # eigenvalue at rounding level, scaled by 1 / l2), carries no target.
  centred_targets = targets - targets.mean(0)
  return {"mean": mean, "std": std, "eigs": eigs,
          "q": jnp.matmul(xw.T, q, precision=hi),
          "rhs": jnp.matmul(q.T, centred_targets, precision=hi),
          "bias_rhs": BIAS * targets.sum(0), "n": jnp.float32(n)}


@jax.jit
def weights(solution, l2) -> tuple[jax.Array, jax.Array]:
  """(W [D, C], bias [C]) of the ridge solution at strength l2 (the bias
  column, orthogonal to the centred features, solves on its own)."""
  scale = 1.0 / (solution["eigs"] + l2)
  w = (solution["q"] * scale[None, :]) @ solution["rhs"]
  bias = BIAS * solution["bias_rhs"] / (solution["n"] * BIAS ** 2 + l2)
  return w, bias


def predict(solution, w, bias, x):
  x = (x - solution["mean"]) / solution["std"]
  return jnp.argmax(x @ w + bias, axis=-1)


@jax.jit
def correct_count(solution, w, bias, x, y):
  return jnp.sum(predict(solution, w, bias, x) == y)


def choose_l2(solution, x_held, y_held, grid=L2_GRID) -> tuple[float, float]:
  """(l2, held-out accuracy) of the grid's best strength (the largest of
  ties: the simplest model that does as well)."""
  scores = []
  for l2 in grid:
    w, bias = weights(solution, l2)
    scores.append(float(correct_count(solution, w, bias, x_held, y_held))
                  / len(y_held))
  best = max(scores)
  index = max(i for i, s in enumerate(scores) if s == best)
  return float(grid[index]), best


# ------------------------------------------------------------------ k-shot

@functools.partial(jax.jit, static_argnames="num_classes")
def kshot_solution(x, y, num_classes: int, l2=KSHOT_L2) -> dict:
  """big_vision's few-shot probe on (x, y) with N < D: whitened with x's
  statistics, the bias feature, {-1, 1} targets, w = x^T (x x^T + l2 I)^-1
  y (the N x N eigendecomposition). A solution `predict` and
  `correct_count` take (bias 0: the bias feature is a column of w)."""
  mean = x.mean(0)
  std = x.std(0) + 1e-5
  xw = jnp.pad((x - mean) / std, ((0, 0), (0, 1)), constant_values=BIAS)
  targets = 2.0 * jax.nn.one_hot(y, num_classes) - 1.0
  eigs, q = jnp.linalg.eigh(xw @ xw.T)
  w = ((xw.T @ q) * (1.0 / (eigs + l2))[None, :]) @ (q.T @ targets)
  return {"mean": mean, "std": std, "w": w[:-1], "bias": BIAS * w[-1]}


def kshot_draws(labels: np.ndarray, shots: int, draws: int,
                num_classes: int) -> list[np.ndarray]:
  """`draws` index sets of `shots` training examples per class (draw d
  seeded d, as big_vision's few-shot seeds)."""
  out = []
  for draw in range(draws):
    rng = np.random.default_rng(draw)
    out.append(np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[:shots]
        for c in range(num_classes)]))
  return out

"""Centered kernel alignment (CKA): how alike two representations of the same
n examples are (a layer of the pretrained network against the same layer
after fine-tuning; every layer of one network against every layer of
another, cka_matrix).

Kornblith, Norouzi, Lee, Hinton 2019, "Similarity of Neural Network
Representations Revisited" (ICML). For the Gram matrices K_ij = k(x_i, x_j)
and L_ij = l(y_i, y_j) of the n examples,

  CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)),
  HSIC(K, L) = tr(K H L H) / (n-1)^2,   H = I - 11^T/n,

the cosine of the centred Grams H K H and H L H: in [0, 1], since both are
positive semi-definite.

Linear kernel (linear_cka, gram_linear): K = X X^T, and with the
column-centred features X_c = H X, Y_c = H Y this is

  CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F),

computed so (the feature-space form, O(n p q)) when p, q < n and from the
n x n Grams (O(n^2 (p + q))) otherwise; the two agree (tests/test_cka.py).

RBF kernel (rbf_cka, gram_rbf): K_ij = exp(-d_ij^2 / (2 sigma^2)) with
d_ij = ||x_i - x_j|| and sigma = fraction * median_{i<j} d_ij, the median
of the off-diagonal pairwise distances, taken separately for X and for Y
(Kornblith et al. 2019 choose the RBF bandwidth as a fraction of the median
distance between examples). sigma scales with X, so RBF CKA is invariant to
isotropic scaling as well as to orthogonal maps and translations. If the
median is 0 (more than half the pairs of examples coincide) the kernel is
its sigma -> 0 limit: 1 for coinciding examples, 0 otherwise.

Debiased (debiased=True): HSIC is replaced by the unbiased estimator of
Song, Smola, Gretton, Bedo, Borgwardt 2012 ("Feature selection via
dependence maximization", JMLR), as used by Nguyen, Raghu, Kornblith 2021
("Do wide and deep networks learn the same things?", ICLR). With K~, L~ the
Grams with their diagonals set to zero,

  HSIC_u(K, L) = [tr(K~ L~) + 1^T K~ 1 1^T L~ 1 / ((n-1)(n-2))
                  - 2/(n-2) 1^T K~ L~ 1] / (n (n-3)),

which needs n >= 4. The feature-space form evaluates exactly this (with
tr(K~ L~) = ||Y^T X||_F^2 - sum_i K_ii L_ii, K~ 1 = X (X^T 1) - diag K).
The Gram form evaluates it as <U(K), U(L)>_F / (n (n-3)), U the U-centring
of Szekely and Rizzo 2014 ("Partial distance correlation with methods for
dissimilarities", Ann. Statist.): U(K)_ii = 0 and, for i != j,

  U(K)_ij = K~_ij - (K~ 1)_i / (n-2) - (1^T K~)_j / (n-2)
            + 1^T K~ 1 / ((n-1)(n-2)),

the same number (tests/test_cka.py checks both against the U-statistic
summed term by term) that loses less to rounding: debiased CKA is then the
cosine of U(K) and U(L), in [-1, 1]. HSIC_u is unchanged by centring the
Grams (K -> H K H), so they are centred first. The biased CKA of
independent representations is well above 0 when n is small next to the
widths (it tends to 1 for p, q >> n); the debiased one is near 0, and can
be slightly negative.

Numerics and conventions:
  * float32 (float64 only for float64 inputs with jax_enable_x64); every
    matmul at Precision.HIGHEST (the default may take bfloat16 or TF32
    passes on TPU and GPU) and the Frobenius products as jnp.sum of
    elementwise products. Matches a float64 reference to ~1e-5.
  * Features are centred after subtracting the first example, and Grams
    after subtracting their first row and column (a constant feature or
    Gram becomes exact zeros; less cancellation for large means).
    Centred features and Grams are divided by their largest magnitude
    before the products (CKA does not change; fourth powers of large
    activations would overflow float32).
  * Zero variance: when a representation is constant over the n examples
    (a dead layer; every feature constant) its HSIC(K, K) is 0 and CKA is
    defined as 0.0, not nan. (So is a debiased self-HSIC that rounds to
    <= 0 in the feature-space form.)
  * Each function checks shapes in Python (a non-2-D input, differing n,
    too few examples or fraction <= 0 raise UserError) and runs jitted
    pieces: a Gram per layer shape, the alignment per n, so new pairs of
    widths reuse compilations. All are traceable, so they can be jitted
    whole with `debiased` and `fraction` static.
  * Grams given to cka_from_grams must be symmetric (any kernel's are).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxtransfer.core.errors import UserError

KINDS = ("linear", "rbf")
_HIGHEST = jax.lax.Precision.HIGHEST


# --- checks (in Python, on static shapes) -------------------------------------

def _array(x):
  """x as is if it is an array (numpy, jax or a tracer), else numpy's."""
  return x if hasattr(x, "shape") and hasattr(x, "dtype") else np.asarray(x)


def _least(debiased: bool) -> int:
  return 4 if debiased else 2


def _check_features(name: str, x, least: int) -> None:
  shape = tuple(np.shape(x))
  if len(shape) != 2 or shape[1] < 1:
    raise UserError(f"CKA: {name} must be [n examples, features], got shape "
                    f"{shape}")
  if shape[0] < least:
    raise UserError(f"CKA: {name} has {shape[0]} examples; needs at least "
                    f"{least}" + (" for debiased=True" if least == 4 else ""))


def _check_same_examples(name_x: str, x, name_y: str, y) -> None:
  if np.shape(x)[0] != np.shape(y)[0]:
    raise UserError(f"CKA: {name_x} and {name_y} must hold the same examples, "
                    f"got {np.shape(x)[0]} and {np.shape(y)[0]} rows")


def _check_gram(name: str, gram, least: int) -> None:
  shape = tuple(np.shape(gram))
  if len(shape) != 2 or shape[0] != shape[1]:
    raise UserError(f"CKA: {name} must be a square [n, n] Gram, got shape "
                    f"{shape}")
  _check_features(name, gram, least)


def _check_fraction(fraction: float) -> None:
  if not fraction > 0:
    raise UserError(f"CKA: RBF fraction must be > 0, got {fraction!r}")


# --- numerics (traced) -------------------------------------------------------

def _float(x) -> jax.Array:
  """x as float32, or wider if it already is (float64 under x64)."""
  x = jnp.asarray(x)
  return x.astype(jnp.result_type(x.dtype, jnp.float32))


def _dot(a, b) -> jax.Array:
  return jnp.matmul(a, b, precision=_HIGHEST)


def _nonzero(scale) -> jax.Array:
  """A divisor: scale, or 1 where it is 0 (an all-zero array stays zero)."""
  return jnp.where(scale > 0, scale, jnp.ones_like(scale))


def _centred(x) -> jax.Array:
  """H x: each feature minus its mean over the examples, taken after the
  first example is subtracted (exact zeros for a constant feature)."""
  x = _float(x)
  x = x - x[:1]
  return x - jnp.mean(x, axis=0, keepdims=True)


def _unit_max(a) -> jax.Array:
  """a divided by its largest magnitude (all-zero stays zero)."""
  return a / _nonzero(jnp.max(jnp.abs(a)))


def _ratio(hsic_xy, hsic_xx, hsic_yy) -> jax.Array:
  """HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (any common factor of the
  three cancels); 0 where a self-HSIC is not positive (a zero-variance
  representation)."""
  ok = (hsic_xx > 0) & (hsic_yy > 0)
  denominator = (jnp.sqrt(jnp.where(ok, hsic_xx, 1.0))
                 * jnp.sqrt(jnp.where(ok, hsic_yy, 1.0)))
  return jnp.where(ok, hsic_xy / denominator, jnp.zeros_like(hsic_xy))


def _hsic_features(x, y, debiased: bool) -> jax.Array:
  """HSIC (or Song et al.'s HSIC_u) of the linear Grams of centred features
  x [n, p], y [n, q], without forming them: tr(K L) = ||Y^T X||_F^2."""
  n = x.shape[0]
  cross = _dot(y.T, x)
  trace = jnp.sum(cross * cross)
  if not debiased:
    return trace / (n - 1) ** 2  # x, y centred: K = H K H already
  diag_k = jnp.sum(x * x, axis=1)
  diag_l = jnp.sum(y * y, axis=1)
  # K~ 1 = X (X^T 1) - diag K; X^T 1 is 0 up to rounding for centred x, kept
  # so that this is the docstring's formula for any x.
  k_ones = _dot(x, jnp.sum(x, axis=0)) - diag_k
  l_ones = _dot(y, jnp.sum(y, axis=0)) - diag_l
  return (trace - jnp.sum(diag_k * diag_l)
          + jnp.sum(k_ones) * jnp.sum(l_ones) / ((n - 1) * (n - 2))
          - 2.0 / (n - 2) * jnp.sum(k_ones * l_ones)) / (n * (n - 3))


@functools.partial(jax.jit, static_argnames=("debiased",))
def _linear_features(x, y, debiased: bool) -> jax.Array:
  """Linear CKA in feature space."""
  x, y = _unit_max(_centred(x)), _unit_max(_centred(y))
  return _ratio(_hsic_features(x, y, debiased),
                _hsic_features(x, x, debiased),
                _hsic_features(y, y, debiased))


@jax.jit
def _gram_linear(x) -> jax.Array:
  x = _centred(x)
  return _dot(x, x.T)


@functools.partial(jax.jit, static_argnames=("fraction",))
def _gram_rbf(x, fraction: float) -> jax.Array:
  x = _unit_max(_centred(x))  # translation and scale leave the kernel as is
  n = x.shape[0]
  inner = _dot(x, x.T)
  norms = jnp.diagonal(inner)  # from the same matmul: 0 apart for equal rows
  squared = jnp.maximum(norms[:, None] + norms[None, :] - 2.0 * inner, 0.0)
  squared = squared * (1.0 - jnp.eye(n, dtype=squared.dtype))
  upper = jnp.triu_indices(n, k=1)
  sigma = fraction * jnp.median(jnp.sqrt(squared[upper]))
  # d > 0 at sigma = 0 gives inf, so exp(-inf) = 0: the sigma -> 0 limit
  exponent = jnp.where(squared > 0, squared / (2.0 * sigma * sigma), 0.0)
  return jnp.exp(-exponent)


@functools.partial(jax.jit, static_argnames=("debiased",))
def _prepare(gram, debiased: bool):
  """H K H (debiased: U(H K H)), scaled: CKA is the cosine
  <a, b>_F / (||a||_F ||b||_F) of two of them."""
  gram = _float(gram)
  # H K H = H (K - 1 k_0^T - k_0 1^T) H: subtracting the first row and
  # column first makes a constant Gram (a dead layer's RBF kernel) exact
  # zeros, as _centred does for features.
  gram = gram - gram[:1, :]
  gram = gram - gram[:, :1]
  gram = gram - jnp.mean(gram, axis=0, keepdims=True)
  gram = _unit_max(gram - jnp.mean(gram, axis=1, keepdims=True))
  if debiased:
    n = gram.shape[0]
    off = 1.0 - jnp.eye(n, dtype=gram.dtype)
    gram = gram * off
    ones = jnp.sum(gram, axis=1)  # K~ 1 = (1^T K~)^T: K is symmetric
    gram = _unit_max((gram - ones[:, None] / (n - 2) - ones[None, :] / (n - 2)
                      + jnp.sum(ones) / ((n - 1) * (n - 2))) * off)
  return gram


@jax.jit
def _aligned(a, b) -> jax.Array:
  """CKA of two prepared Grams. The norms are summed in the same program as
  the inner product, so a Gram against itself gives 1 to an ulp or two."""
  return _ratio(jnp.sum(a * b), jnp.sum(a * a), jnp.sum(b * b))


# --- the API ------------------------------------------------------------------

def gram_linear(x) -> jax.Array:
  """[n, n] linear Gram of x [n, p]: X_c X_c^T of the column-centred
  features, which is H (X X^T) H. CKA centres the Gram anyway (and HSIC_u
  does not change with it), so its CKA is that of X X^T, with less lost to
  rounding when the features have large means."""
  x = _array(x)
  _check_features("x", x, 1)
  return _gram_linear(x)


def gram_rbf(x, fraction: float = 0.5) -> jax.Array:
  """[n, n] RBF Gram exp(-d_ij^2 / (2 sigma^2)) of x [n, p], sigma =
  fraction * the median of the off-diagonal pairwise Euclidean distances
  (0 distances at sigma = 0 give 1, others 0: the sigma -> 0 limit)."""
  x = _array(x)
  _check_features("x", x, 2)
  _check_fraction(fraction)
  return _gram_rbf(x, fraction)


def cka_from_grams(gram_x, gram_y, debiased: bool = False) -> jax.Array:
  """Scalar CKA of two symmetric [n, n] Grams of the same n examples (any
  kernel; they need not be centred)."""
  gram_x, gram_y = _array(gram_x), _array(gram_y)
  _check_gram("gram_x", gram_x, _least(debiased))
  _check_gram("gram_y", gram_y, _least(debiased))
  _check_same_examples("gram_x", gram_x, "gram_y", gram_y)
  return _aligned(_prepare(gram_x, debiased), _prepare(gram_y, debiased))


def _check_pair(x, y, debiased: bool) -> None:
  _check_features("x", x, _least(debiased))
  _check_features("y", y, _least(debiased))
  _check_same_examples("x", x, "y", y)


def linear_cka(x, y, debiased: bool = False) -> jax.Array:
  """x [n, p], y [n, q] (float; any p, q) -> scalar CKA with the linear
  kernel: the feature-space form when p, q < n, the Gram form otherwise."""
  x, y = _array(x), _array(y)
  _check_pair(x, y, debiased)
  n, p = np.shape(x)
  if p < n and np.shape(y)[1] < n:
    return _linear_features(x, y, debiased)
  return _aligned(_prepare(_gram_linear(x), debiased),
                  _prepare(_gram_linear(y), debiased))


def rbf_cka(x, y, fraction: float = 0.5, debiased: bool = False) -> jax.Array:
  """RBF kernel exp(-d^2 / (2 sigma^2)) with sigma = fraction * the median of
  the pairwise Euclidean distances (computed separately for x and for y,
  off-diagonal), as Kornblith et al. 2019 (sec. on RBF CKA)."""
  x, y = _array(x), _array(y)
  _check_pair(x, y, debiased)
  _check_fraction(fraction)
  return _aligned(_prepare(_gram_rbf(x, fraction), debiased),
                  _prepare(_gram_rbf(y, fraction), debiased))


def cka_matrix(features_a: list, features_b: list, kind: str = "linear",
               fraction: float = 0.5, debiased: bool = False) -> np.ndarray:
  """[len(a), len(b)] CKA between every layer of a and every layer of b
  (each an [n, d_i] array; the same n examples in the same order). Computes
  each Gram once, so it holds len(a) + len(b) [n, n] Grams on the device.
  kind 'linear'|'rbf'; any other raises UserError naming the choices."""
  if kind not in KINDS:
    raise UserError(f"cka_matrix: unknown kind {kind!r}; choose one of "
                    f"{', '.join(repr(k) for k in KINDS)}")
  if kind == "rbf":
    _check_fraction(fraction)
  features_a, features_b = list(features_a), list(features_b)
  if not features_a or not features_b:
    raise UserError("cka_matrix: features_a and features_b must each hold at "
                    "least one layer")
  features_a = [_array(layer) for layer in features_a]
  features_b = [_array(layer) for layer in features_b]
  named = ([(f"features_a[{i}]", x) for i, x in enumerate(features_a)]
           + [(f"features_b[{i}]", x) for i, x in enumerate(features_b)])
  for name, layer in named:
    _check_features(name, layer, _least(debiased))
    _check_same_examples(named[0][0], named[0][1], name, layer)

  def prepare(layer):
    gram = (_gram_linear(layer) if kind == "linear"
            else _gram_rbf(layer, fraction))
    return _prepare(gram, debiased)

  grams_a = [prepare(layer) for layer in features_a]
  grams_b = [prepare(layer) for layer in features_b]
  return np.array([[float(_aligned(a, b)) for b in grams_b] for a in grams_a])

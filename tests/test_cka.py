"""Centered kernel alignment (cka.py): against a float64 numpy reference
written here from the paper's formulas, the known invariances (and a
non-invariance), the debiased estimator's near-zero on independent data,
cka_matrix, and the feature-space / Gram-form agreement."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from jaxtransfer.study.analysis import cka
from jaxtransfer.core.errors import UserError

# (n, p, q): both widths below n (the feature-space form), one above, both
# above (the Gram form).
SIZES = [(30, 5, 8), (20, 40, 3), (16, 50, 60)]


def _pair(n, p, q, seed=0):
  """Related x [n, p], y [n, q] (y is a noisy linear map of x), with
  non-zero means and unequal feature scales so centring matters."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, p)) * rng.uniform(0.5, 3.0, size=p) + 2.0
  y = x @ rng.normal(size=(p, q)) / np.sqrt(p) + rng.normal(size=(n, q)) - 1.0
  return x.astype(np.float32), y.astype(np.float32)


# --- the float64 reference, written from the formulas -------------------------

def ref_gram_linear(x):
  x = np.asarray(x, np.float64)
  return x @ x.T  # uncentred: H does the centring below


def ref_gram_rbf(x, fraction=0.5):
  x = np.asarray(x, np.float64)
  n = len(x)
  distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
  sigma = fraction * np.median(distances[~np.eye(n, dtype=bool)])
  return np.exp(-distances ** 2 / (2 * sigma ** 2))


def ref_hsic(k, l):
  n = len(k)
  h = np.eye(n) - np.ones((n, n)) / n
  return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def ref_hsic_unbiased(k, l):
  """Song et al. 2012's HSIC_u as the paper writes it, with explicit
  zero-diagonal matrices and a matrix trace (cka.py evaluates it from
  features, or as an inner product of U-centred Grams);
  test_unbiased_reference_is_the_u_statistic checks it against the
  U-statistic summed term by term."""
  n = len(k)
  k_off = k - np.diag(np.diag(k))
  l_off = l - np.diag(np.diag(l))
  ones = np.ones(n)
  return (np.trace(k_off @ l_off)
          + (ones @ k_off @ ones) * (ones @ l_off @ ones) / ((n - 1) * (n - 2))
          - 2 / (n - 2) * (ones @ k_off @ l_off @ ones)) / (n * (n - 3))


def ref_cka(k, l, debiased=False):
  hsic = ref_hsic_unbiased if debiased else ref_hsic
  return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_unbiased_reference_is_the_u_statistic():
  """The reference HSIC_u is the U-statistic of Song et al.'s kernel
  h = k_ij l_ij + k_ij l_qr - 2 k_ij l_iq, summed over every ordered
  tuple of distinct (i, j, q, r); and so is cka.py's."""
  x, y = _pair(7, 3, 4)
  k, l = ref_gram_linear(x), ref_gram_linear(y)
  n = len(k)
  total = sum(k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
              for i, j, q, r in itertools.permutations(range(n), 4))
  u_statistic = total / (n * (n - 1) * (n - 2) * (n - 3))
  assert ref_hsic_unbiased(k, l) == pytest.approx(u_statistic, rel=1e-10)
  # and the module's, in feature space (p, q < n) and from the Grams
  expected = ref_cka(k, l, debiased=True)
  assert abs(float(cka.linear_cka(x, y, debiased=True)) - expected) < 1e-5
  from_grams = cka.cka_from_grams(k.astype(np.float32), l.astype(np.float32),
                                  debiased=True)
  assert abs(float(from_grams) - expected) < 1e-5


# --- 1. against the reference ------------------------------------------------

@pytest.mark.parametrize("n,p,q", SIZES)
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_matches_float64_reference(n, p, q, debiased):
  x, y = _pair(n, p, q, seed=n + p)
  expected = ref_cka(ref_gram_linear(x), ref_gram_linear(y), debiased)
  assert 0.05 < abs(expected) < 0.99  # not a trivial value
  assert abs(float(cka.linear_cka(x, y, debiased=debiased)) - expected) < 1e-5


@pytest.mark.parametrize("n,p,q", SIZES)
@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_matches_float64_reference(n, p, q, debiased):
  x, y = _pair(n, p, q, seed=n + q)
  fraction = 0.8 if p > n else 0.5
  expected = ref_cka(ref_gram_rbf(x, fraction), ref_gram_rbf(y, fraction),
                     debiased)
  assert 0.05 < abs(expected) < 0.99
  got = cka.rbf_cka(x, y, fraction=fraction, debiased=debiased)
  assert abs(float(got) - expected) < 1e-5


def test_grams_match_reference():
  x, _ = _pair(12, 5, 1)
  n = len(x)
  h = np.eye(n) - np.ones((n, n)) / n
  linear = ref_gram_linear(x)
  np.testing.assert_allclose(cka.gram_linear(x), h @ linear @ h,
                             atol=1e-4 * np.abs(linear).max())
  np.testing.assert_allclose(cka.gram_rbf(x, 0.7), ref_gram_rbf(x, 0.7),
                             atol=1e-6)


# --- 2. properties -----------------------------------------------------------

def _variants(x, y):
  """Every CKA this module computes, as name -> value."""
  return {"linear": cka.linear_cka(x, y),
          "linear debiased": cka.linear_cka(x, y, debiased=True),
          "rbf": cka.rbf_cka(x, y),
          "rbf debiased": cka.rbf_cka(x, y, debiased=True)}


@pytest.mark.parametrize("n,p", [(30, 5), (16, 50)])
def test_self_similarity_is_one(n, p):
  x, _ = _pair(n, p, 1)
  for name, value in _variants(x, x).items():
    assert abs(float(value) - 1.0) < 1e-6, name


@pytest.mark.parametrize("n,p,q", [(30, 5, 8), (16, 50, 60)])
def test_orthogonal_and_scale_invariance(n, p, q):
  x, y = _pair(n, p, q)
  rng = np.random.default_rng(1)
  rotation, _ = np.linalg.qr(rng.normal(size=(p, p)))
  assert np.allclose(rotation.T @ rotation, np.eye(p))
  base = _variants(x, y)
  rotated = _variants((x @ rotation).astype(np.float32), y)
  scaled = _variants(3.7 * x, y)
  for name, value in base.items():
    assert abs(float(rotated[name]) - float(value)) < 1e-5, name
    assert abs(float(scaled[name]) - float(value)) < 1e-5, name


def test_not_invariant_to_invertible_linear_maps():
  """x = [u, v] with independent columns and y = u. Linear CKA of
  1-D features is their squared correlation, so stretching u (diag(1e3, 1),
  condition number 1e3) takes CKA(x A, y) towards corr(u, u)^2 = 1 and
  stretching v towards corr(v, u)^2 ~ 1/n: an invertible map moves it by
  most of [0, 1]."""
  rng = np.random.default_rng(2)
  u, v = rng.normal(size=(2, 200, 1))
  x = np.concatenate([u, v], axis=1).astype(np.float32)
  y = u.astype(np.float32)
  stretch_u = float(cka.linear_cka(x @ np.diag([1e3, 1.0]), y))
  stretch_v = float(cka.linear_cka(x @ np.diag([1.0, 1e3]), y))
  plain = float(cka.linear_cka(x, y))
  assert stretch_u > 0.99 and stretch_v < 0.05
  assert abs(plain - stretch_v) > 0.5  # ~0.7 (= 1/sqrt(2)) against ~0
  # a random badly conditioned map changes it too
  left, _ = np.linalg.qr(rng.normal(size=(2, 2)))
  bad = (left @ np.diag([1.0, 1e-3])).astype(np.float32)
  assert np.linalg.cond(bad) > 500
  assert abs(float(cka.linear_cka(x @ bad, y)) - plain) > 1e-2


def test_symmetric_and_bounded():
  for n, p, q in [(30, 5, 8), (16, 50, 60)]:
    x, y = _pair(n, p, q)
    forward, backward = _variants(x, y), _variants(y, x)
    for name, value in forward.items():
      assert abs(float(value) - float(backward[name])) < 1e-6, name
    for name in ("linear", "rbf"):
      assert -1e-6 <= float(forward[name]) <= 1 + 1e-6, name
  rng = np.random.default_rng(3)
  for _ in range(3):  # independent pairs too: biased stays in [0, 1]
    x, y = rng.normal(size=(2, 30, 5)).astype(np.float32)
    for name in ("linear", "rbf"):
      value = float(_variants(x, y)[name])
      assert -1e-6 <= value <= 1 + 1e-6, name


def test_zero_variance_is_zero_not_nan():
  _, y = _pair(30, 5, 8)
  for width in (5, 40):  # the feature-space form and the Gram form
    dead = np.full((30, width), 0.1, np.float32)  # 0.1: inexact in binary
    for name, value in _variants(dead, y).items():
      assert float(value) == 0.0, (name, width)
    for name, value in _variants(y, dead).items():
      assert float(value) == 0.0, (name, width)
  zeros = np.zeros((30, 30), np.float32)
  assert float(cka.cka_from_grams(zeros, cka.gram_linear(y))) == 0.0
  # more than half the examples coincide: the RBF median is 0 and the kernel
  # its sigma -> 0 limit, still finite
  mostly_equal = np.repeat(y[:3], [26, 2, 2], axis=0)
  assert np.isfinite(float(cka.rbf_cka(mostly_equal, y)))


def test_bad_inputs_raise_user_error():
  x, y = _pair(30, 5, 8)
  with pytest.raises(UserError, match="at least 4"):
    cka.linear_cka(x[:3], y[:3], debiased=True)
  with pytest.raises(UserError, match="at least 4"):
    cka.rbf_cka(x[:3], y[:3], debiased=True)
  with pytest.raises(UserError, match="same examples"):
    cka.linear_cka(x, y[:20])
  with pytest.raises(UserError, match=r"\[n examples, features\]"):
    cka.linear_cka(x[:, 0], y)
  with pytest.raises(UserError, match="fraction"):
    cka.rbf_cka(x, y, fraction=0.0)


# --- 3. the debiased estimator on independent data ---------------------------

def test_debiased_is_near_zero_for_independent_features():
  """n = 50 examples of p = q = 200 independent Gaussian features. The
  biased linear CKA of independent data is not 0 when n is small: with
  E ||Y_c^T X_c||^2 ~ (n-1) p q and E ||X_c^T X_c||^2 ~ (n-1)^2 p +
  (n-1) p^2 it is ~ p / (p + n - 1) = 0.80 here (0.78..0.82 over 200
  seeds), so > 0.7 has margin. The debiased one estimates the population
  value 0 without bias: over 200 seeds its mean was 0.001 and its std
  0.028 (largest magnitude 0.086), so each of these seeds has |.| < 0.12
  (> 4 std) and their mean |.| < 0.05 (> 3 std of a mean of 4)."""
  biased, debiased = [], []
  for seed in range(4):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(2, 50, 200)).astype(np.float32)
    biased.append(float(cka.linear_cka(x, y)))
    debiased.append(float(cka.linear_cka(x, y, debiased=True)))
  assert min(biased) > 0.7
  assert max(np.abs(debiased)) < 0.12
  assert abs(np.mean(debiased)) < 0.05


# --- 4. cka_matrix -----------------------------------------------------------

@pytest.mark.parametrize("kind,debiased", [("linear", False), ("rbf", True)])
def test_cka_matrix_matches_pairwise(kind, debiased):
  rng = np.random.default_rng(4)
  n = 20
  a0 = rng.normal(size=(n, 6)).astype(np.float32)
  a1 = np.maximum(a0 @ rng.normal(size=(6, 30)), 0).astype(np.float32)
  b0 = (a0 @ rng.normal(size=(6, 6))).astype(np.float32)
  b1 = rng.normal(size=(n, 6)).astype(np.float32)
  b2 = np.zeros((n, 6), np.float32)  # a dead layer (widths shared: fewer
  # compilations)
  matrix = cka.cka_matrix([a0, a1], [b0, b1, b2], kind=kind,
                          debiased=debiased)
  assert isinstance(matrix, np.ndarray) and matrix.shape == (2, 3)
  pairwise = cka.linear_cka if kind == "linear" else cka.rbf_cka
  for i, a in enumerate([a0, a1]):
    for j, b in enumerate([b0, b1, b2]):
      assert abs(matrix[i, j] - float(pairwise(a, b, debiased=debiased))) \
          < 1e-5, (i, j)
  assert np.all(matrix[:, 2] == 0.0)
  assert matrix[0, 0] > 0.5  # b0 is a linear map of a0


def test_cka_matrix_rejects_bad_kind_and_mismatched_examples():
  x, y = _pair(20, 5, 8)
  with pytest.raises(UserError, match=r"'cosine'.*'linear'.*'rbf'"):
    cka.cka_matrix([x], [y], kind="cosine")
  with pytest.raises(UserError, match="same examples"):
    cka.cka_matrix([x], [y[:10]])


# --- 5. the feature-space form against the Gram form -------------------------

@pytest.mark.parametrize("n,p,q", [(30, 5, 8), (20, 40, 3), (16, 50, 60)])
@pytest.mark.parametrize("debiased", [False, True])
def test_gram_form_agrees_with_feature_form(n, p, q, debiased):
  x, y = _pair(n, p, q, seed=7)
  from_grams = cka.cka_from_grams(cka.gram_linear(x), cka.gram_linear(y),
                                  debiased=debiased)
  direct = cka.linear_cka(x, y, debiased=debiased)
  assert abs(float(from_grams) - float(direct)) < 1e-5
  # the raw, uncentred Gram gives the same CKA: cka_from_grams centres it
  raw = cka.cka_from_grams(x @ x.T, y @ y.T, debiased=debiased)
  assert abs(float(raw) - float(direct)) < 1e-4
  # and the feature-space formula itself, in float64
  xc, yc = x - x.mean(0), y - y.mean(0)
  if not debiased:
    expected = (np.linalg.norm(yc.T.astype(np.float64) @ xc) ** 2
                / (np.linalg.norm(xc.T.astype(np.float64) @ xc)
                   * np.linalg.norm(yc.T.astype(np.float64) @ yc)))
    assert abs(float(direct) - expected) < 1e-5
  # the module's feature-space form, forced for any p, q (linear_cka takes it
  # only below n)
  fx, fy = cka._unit_max(cka._centred(x)), cka._unit_max(cka._centred(y))
  forced = cka._ratio(cka._hsic_features(fx, fy, debiased),
                      cka._hsic_features(fx, fx, debiased),
                      cka._hsic_features(fy, fy, debiased))
  assert abs(float(forced) - float(direct)) < 1e-5


def test_jittable_whole_with_static_options():
  x, y = _pair(20, 40, 3)
  linear = jax.jit(cka.linear_cka, static_argnames="debiased")
  rbf = jax.jit(cka.rbf_cka, static_argnames=("fraction", "debiased"))
  assert abs(float(linear(x, y, debiased=True))
             - float(cka.linear_cka(x, y, debiased=True))) < 1e-6
  assert abs(float(rbf(x, y, fraction=0.8, debiased=True))
             - float(cka.rbf_cka(x, y, fraction=0.8, debiased=True))) < 1e-6
  with pytest.raises(UserError, match="at least 4"):
    linear(x[:3], y[:3], debiased=True)

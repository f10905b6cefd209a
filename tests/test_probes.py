"""The linear probes (probes.py) against an independent float64 numpy
computation of big_vision's ridge probe, and on problems whose answer is
known."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxtransfer.study.analysis import probes


def _reference(x, y, num_classes, l2):
  """big_vision's fewshot_lsr on materialised features, in float64: whiten
  with the training statistics, append the constant BIAS feature, targets
  one-hot in {-1, 1}, W = (X^T X + l2 I)^-1 X^T Y (a linear solve)."""
  x = np.asarray(x, np.float64)
  mean, std = x.mean(0), x.std(0) + 1e-5
  xw = np.concatenate([(x - mean) / std,
                       np.full((len(x), 1), probes.BIAS)], axis=1)
  targets = 2.0 * np.eye(num_classes)[y] - 1.0
  w = np.linalg.solve(xw.T @ xw + l2 * np.eye(xw.shape[1]), xw.T @ targets)
  return mean, std, w


def _streamed(x, y, num_classes, batch=37):
  stats = probes.gram_statistics(
      ((jnp.asarray(x[i:i + batch]), jnp.asarray(y[i:i + batch]))
       for i in range(0, len(x), batch)), x.shape[1], num_classes)
  return probes.solve(stats)


@pytest.mark.parametrize("l2", [1e-2, 1.0, 2.0 ** 10])
def test_streamed_ridge_probe_equals_the_materialised_one(l2):
  rng = np.random.default_rng(0)
  n, d, c = 400, 24, 5
  x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d)
       + rng.uniform(-3, 3, d)).astype(np.float32)  # unwhitened scales
  y = rng.integers(0, c, n)
  mean, std, w_ref = _reference(x, y, c, l2)
  solution = _streamed(x, y, c)
  np.testing.assert_allclose(solution["mean"], mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(solution["std"], std, rtol=1e-4)
  w, bias = probes.weights(solution, l2)
  np.testing.assert_allclose(w, w_ref[:-1], rtol=2e-3, atol=2e-4)
  np.testing.assert_allclose(bias, probes.BIAS * w_ref[-1], rtol=2e-3,
                             atol=2e-4)
  x_test = rng.standard_normal((100, d)).astype(np.float32) * 3
  xw_test = np.concatenate([(x_test - mean) / std,
                            np.full((100, 1), probes.BIAS)], axis=1)
  want = np.argmax(xw_test @ w_ref, axis=1)
  got = np.asarray(probes.predict(solution, w, bias, jnp.asarray(x_test)))
  assert np.mean(got == want) >= 0.99


def test_separable_classes_are_probed_perfectly_and_noise_is_not():
  rng = np.random.default_rng(1)
  c, d = 4, 16
  centres = rng.standard_normal((c, d)) * 5
  y = rng.integers(0, c, 600)
  x = (centres[y] + rng.standard_normal((600, d))).astype(np.float32)
  solution = _streamed(x[:500], y[:500], c)
  l2, held = probes.choose_l2(solution, jnp.asarray(x[400:500]),
                              jnp.asarray(y[400:500]))
  w, bias = probes.weights(solution, l2)
  accuracy = float(probes.correct_count(solution, w, bias,
                                        jnp.asarray(x[500:]),
                                        jnp.asarray(y[500:]))) / 100
  assert held == 1.0 and accuracy == 1.0
  noise = rng.standard_normal((600, d)).astype(np.float32)
  solution = _streamed(noise[:500], y[:500], c)
  w, bias = probes.weights(solution, 1.0)
  chance = float(probes.correct_count(solution, w, bias,
                                      jnp.asarray(noise[500:]),
                                      jnp.asarray(y[500:]))) / 100
  assert chance < 0.45  # 4 classes: 0.25 expected


def test_kshot_dual_form_equals_the_primal_solve():
  """x^T (x x^T + l2 I)^-1 y (the N < D form) = (x^T x + l2 I)^-1 x^T y."""
  rng = np.random.default_rng(2)
  n, d, c = 15, 60, 3
  x = rng.standard_normal((n, d)).astype(np.float32)
  y = np.arange(n) % c
  l2 = 3.0
  solved = probes.kshot_solution(jnp.asarray(x), jnp.asarray(y), c, l2)
  mean, std, w_ref = _reference(x, y, c, l2)
  np.testing.assert_allclose(solved["w"], w_ref[:-1], rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(solved["bias"], probes.BIAS * w_ref[-1],
                             rtol=1e-3, atol=1e-4)
  draws = probes.kshot_draws(np.repeat(np.arange(3), 10), 4, 3, 3)
  assert [len(d) for d in draws] == [12] * 3
  assert all(np.bincount(np.repeat(np.arange(3), 10)[d]).tolist() == [4] * 3
             for d in draws)
  assert not np.array_equal(draws[0], draws[1])


def test_pooling_to_a_fixed_length():
  x = jnp.arange(2 * 13 * 13 * 64, dtype=jnp.float32).reshape(2, 13, 13, 64)
  pooled = probes.pool_to_length(x, 4096)  # p = 8: 8 * 8 * 64
  assert pooled.shape == (2, 4096)
  small = jnp.ones((2, 3, 3, 256))
  assert probes.pool_to_length(small, 4096).shape == (2, 3 * 3 * 256)
  assert probes.pool_to_length(jnp.ones((2, 1, 1, 9216)), 4096).shape == (2, 9216)
  assert probes.pool_to_length(jnp.ones((2, 77)), 16).shape == (2, 77)
  # The pooled values are the block means (PyTorch's adaptive pool).
  two = probes.pool_to_length(x[:, :12, :12, :1], 4)  # 2 x 2 of 6x6 blocks
  np.testing.assert_allclose(two[0, 0], np.asarray(x[0, :6, :6, 0]).mean())
  assert sorted(["layer2", "stem", "fc1", "conv10", "conv2"],
                key=probes.layer_order) == ["stem", "conv2", "layer2",
                                            "conv10", "fc1"]


@pytest.mark.parametrize("l2", [1e-2, 1.0, 2.0 ** 10])
def test_fewer_examples_than_features_solve_the_same_probe(l2):
  """solve_dual (the N x N form, for N < D) against the float64 reference,
  tighter than the streamed D x D solve meets it: with N < D the Gram is
  singular, and at small l2 its float32 rounding shows (seen here at
  l2=0.01: 2.8e-3 off for the streamed solve, 3.6e-7 for this one)."""
  rng = np.random.default_rng(3)
  n, d, c = 40, 96, 4
  x = (rng.standard_normal((n, d)) * rng.uniform(0.1, 10, d)
       + rng.uniform(-3, 3, d)).astype(np.float32)
  y = rng.integers(0, c, n)
  mean, std, w_ref = _reference(x, y, c, l2)
  dual = probes.solve_dual(jnp.asarray(x), jnp.asarray(y), c)
  np.testing.assert_allclose(dual["mean"], mean, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dual["std"], std, rtol=1e-4)
  assert dual["eigs"].shape == (n,) and dual["q"].shape == (d, n)
  w, bias = probes.weights(dual, l2)
  np.testing.assert_allclose(w, w_ref[:-1], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(bias, probes.BIAS * w_ref[-1], rtol=1e-4,
                             atol=1e-5)
  w_streamed, _ = probes.weights(_streamed(x, y, c), l2)
  assert (np.abs(w - w_ref[:-1]).max()
          <= np.abs(w_streamed - w_ref[:-1]).max() + 1e-7)

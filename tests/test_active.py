"""Active learning (jaxtransfer/features/active/active_learning.py): the strategies' scores against
numpy, the jitted pool query against a host-side computation, a chain on
real CIFAR-10 (rounds.jsonl, nested labelled sets, resume, report) and the
bad inputs."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import needs_cifar10, run_cli, tiny_config
from model_init import apply
from jaxtransfer import data
from jaxtransfer.engine import run_setup, steps, training, validation
from jaxtransfer.features.active import active_learning, active_report
from jaxtransfer.core.errors import UserError


def _numpy_scores(probs: np.ndarray) -> dict[str, np.ndarray]:
  """The strategies written independently: higher = label first."""
  ordered = np.sort(probs, axis=1)[:, ::-1]
  return {
      "margin": -(ordered[:, 0] - ordered[:, 1]),
      "entropy": -np.sum(probs * np.log(probs), axis=1),
      "least_confidence": 1.0 - ordered[:, 0],
  }


def test_strategy_scores_match_numpy():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(10) * 0.5, size=64).astype(np.float32)
  for name, expected in _numpy_scores(probs).items():
    got = np.asarray(active_learning.STRATEGIES[name](jnp.asarray(probs), None))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  # The margin's most uncertain example is the one whose top two are closest.
  ordered = np.sort(probs, axis=1)
  assert np.argmax(np.asarray(active_learning.STRATEGIES["margin"](probs, None))) == \
      np.argmin(ordered[:, -1] - ordered[:, -2])
  random_scores = np.asarray(active_learning.STRATEGIES["random"](
      jnp.asarray(probs), jax.random.key(1)))
  assert random_scores.shape == (64,) and len(set(random_scores)) == 64


@functools.cache  # once per module: the tests only read it
def _tiny_setup(num_classes=10):
  config = tiny_config(model="alexnet", freeze="head")
  setup, init_state = training.build_setup(config, num_classes, 1, 32)
  # Compiled as a run's initialisation is (tests/model_init.py says why).
  state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)(
      jax.random.split(jax.random.key(0), 1))
  variables = jax.tree.map(lambda a: a[0], training.model_variables(state))
  return config, setup, variables


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least_confidence"])
def test_pool_query_is_the_host_side_top_k(strategy):
  """The jitted one-pass query over a padded pool picks exactly the
  `count` best-scoring unlabelled examples computed example by example on
  the host, never a labelled one or padding."""
  config, setup, variables = _tiny_setup()
  rng = np.random.default_rng(1)
  pool = data.Split(rng.integers(0, 256, (70, 32, 32, 3), dtype=np.uint8),
                    np.zeros(70, np.int32))
  batches = training.make_eval_set(pool, 32, setup).images  # 96: 26 padding
  labelled = np.zeros(70, bool)
  labelled[rng.choice(70, 20, replace=False)] = True
  query = active_learning.make_query(setup, strategy, 10, from_features=False)
  chosen, _ = query(variables, batches, jnp.asarray(labelled), jax.random.key(0))
  chosen = np.asarray(chosen)

  # Host side: each example through the model alone (one jitted forward
  # pass, compiled once for a batch of 1), the scores in float64 numpy.
  inputs = data.to_model_input(data.to_unit_float(pool.images), 64,
                               setup.mean, setup.std)
  logits = np.stack([np.asarray(apply(setup.model, variables, inputs[i:i + 1]))[0]
                     for i in range(70)]).astype(np.float64)
  probs = np.exp(logits - logits.max(1, keepdims=True))
  probs /= probs.sum(1, keepdims=True)
  scores = _numpy_scores(probs)[strategy]
  scores[labelled] = -np.inf
  expected = np.argsort(-scores, kind="stable")[:10]
  assert not labelled[chosen].any()
  assert chosen.max() < 70  # no padding
  # Equal sets (ties at float32 could reorder; the scores here are distinct).
  assert sorted(chosen.tolist()) == sorted(expected.tolist())


def test_query_from_cached_features_equals_query_from_images():
  config, setup, variables = _tiny_setup()
  assert setup.feature_cache
  rng = np.random.default_rng(2)
  pool = data.Split(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
                    np.zeros(64, np.int32))
  batches = training.make_eval_set(pool, 32, setup).images
  features = jax.jit(lambda v, b: steps.body_features(setup, v, b))(
      variables, batches)
  mask = jnp.zeros(64, bool)
  key = jax.random.key(0)
  from_images = active_learning.make_query(setup, "margin", 8, False)(
      variables, batches, mask, key)[0]
  from_features = active_learning.make_query(setup, "margin", 8, True)(
      variables, features, mask, key)[0]
  assert sorted(np.asarray(from_images).tolist()) == sorted(
      np.asarray(from_features).tolist())


def test_round_sizes_reach_the_budget():
  config = tiny_config(**{"active.strategy": "margin", "active.initial": 750,
                          "active.query_size": 50, "active.budget": 1000})
  assert active_learning.round_sizes(config) == [750, 800, 850, 900, 950, 1000]
  config.active.budget = 990
  assert active_learning.round_sizes(config)[-2:] == [950, 990]


def _al_config(workdir_strategy="margin", **overrides):
  return tiny_config(**{
      "model": "alexnet", "freeze": "head", "train_subset": 300,
      "val_subset": 100, "batch_size": 20, "num_epochs": 2,
      "learning_rate": 3e-3, "active.strategy": workdir_strategy,
      "active.initial": 40, "active.query_size": 20, "active.budget": 80,
      "num_seeds": 2, **overrides})


@needs_cifar10
def test_chain_on_cifar10_writes_nested_rounds_and_resumes(tmp_path):
  workdir = str(tmp_path / "al")
  config = _al_config()
  records = active_learning.run(config, workdir)
  assert [(r["seed"], r["round"], r["labelled"]) for r in records] == [
      (s, k, n) for s in (0, 1) for k, n in enumerate((40, 60, 80))]
  for seed in (0, 1):
    chain = [r for r in records if r["seed"] == seed]
    for before, after in zip(chain, chain[1:]):
      labelled = set(before["labelled_indices"])
      queried = set(before["queried_indices"])
      assert len(queried) == 20 and not labelled & queried
      assert set(after["labelled_indices"]) == labelled | queried
    assert chain[-1]["queried_indices"] == []
    assert all(0 <= i < 300 for r in chain for i in r["labelled_indices"])
    # The round's run trained on exactly its labelled set.
    metrics = json.loads(open(os.path.join(
        workdir, f"seed_{seed}", "round_01", "metrics.jsonl")).readline())
    assert metrics["train_examples"] == 60
  # Seeds start from different random sets; strategies would share them.
  assert records[0]["labelled_indices"] != records[3]["labelled_indices"]
  assert records[0]["labelled_indices"] == active_learning.initial_indices(
      config, 0, 300).tolist()
  # Kill after a round trained but before its query was recorded: the
  # resumed chain queries the same examples again.
  path = os.path.join(workdir, active_learning.ROUNDS_FILE)
  lines = open(path).read().splitlines()
  with open(path, "w") as f:
    f.write("\n".join(lines[:-2]) + "\n")
  resumed = active_learning.run(config, workdir)
  assert [json.dumps(r, sort_keys=True) for r in resumed] == [
      json.dumps({**r, "train_seconds": s["train_seconds"],
                  "query_seconds": s["query_seconds"]}, sort_keys=True)
      for r, s in zip(records, resumed)]
  report = open(os.path.join(workdir, "report.md")).read()
  assert "| 60 |" in report and "margin" in report
  assert os.path.getsize(os.path.join(workdir, active_report.PLOT_FILE)) > 1000


@pytest.mark.parametrize("overrides, message", [
    ({"active.query_size": 400}, "active.query_size=400"),
    ({"active.budget": 30}, "active.budget=30"),
    ({"active.strategy": "marginal"}, "active.strategy='marginal'"),
])
def test_bad_active_learning_input(tmp_path, overrides, message):
  config = _al_config(**overrides) if "active.strategy" not in overrides else \
      _al_config(workdir_strategy=overrides.pop("active.strategy"), **overrides)
  with pytest.raises(UserError, match=message.replace("[", r"\[")):
    if message.startswith("active.query_size"):
      active_learning.validate(config, pool_size=300)
    else:
      validation.validate(config)


@needs_cifar10
def test_cli_query_larger_than_pool_exits_2_and_writes_nothing(tmp_path):
  workdir = tmp_path / "al"
  result = run_cli(
      "--config=configs/smalldata/active_learning.py:smoke,strategies=margin",
      f"--workdir={workdir}", "--config.train_subset=120", timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error:") and "active.query_size=50" in last, last
  assert not os.path.exists(workdir)

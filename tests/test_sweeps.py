"""Vectorised sweeps (variants.py): model k of a run with config.variants is
its variant's run alone: bit for bit with seed_parallelism='unroll', to
float tolerance with 'vmap'."""

import jax
import numpy as np
import pytest

from conftest import SMALL_NET, needs_cifar10, tiny_config
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import (run_setup, steps, variants, training,
                                validation)
from jaxtransfer.core.errors import UserError

# Fields of a record that are timings, not results.
TIMINGS = {"epoch_seconds", "eval_seconds", "compile_seconds",
           "train_images_per_second", "host_peak_rss_mb", "device_peak_mb"}


def _config(**overrides):
  settings = dict(**SMALL_NET, train_subset=256,
                  val_subset=100, batch_size=32, num_epochs=2,
                  optimizer="adam", learning_rate=1e-3, num_seeds=2)
  config = tiny_config(**{**settings, **overrides})
  config.augment.hflip = True
  return config


VARIANTS = (
    {"name": "base"},
    {"name": "glorot", "kernel_init": "glorot_uniform",
     "bias_init": "glorot_uniform", "learning_rate": 3e-3},
    {"name": "l2_seed5", "kernel_l2": 1e-3, "bias_l1": 1e-4, "seed": 5},
)


def _results(run_dir):
  params, batch_stats, step = checkpoints.load_variables(str(run_dir))
  return params, step


def _initial_params(config):
  setup, init_state = training.build_setup(config, 10, 8, config.batch_size)
  # Compiled as a run's initialisation is (tests/model_init.py says why).
  init_state = jax.jit(init_state, compiler_options=run_setup.RUN_ONCE)
  return init_state(steps.RunKeys.from_seeds(steps.seeds_of(config)).init
                    ).params


def _strip(records):
  return [{k: v for k, v in r.items() if k not in TIMINGS | {"variant"}}
          for r in records]


def _compare(tmp_path, parallelism, exact, **overrides):
  """Each variant of a sweep of three, two seeds each (the vmap test one
  seed: its bound is about rounding, not about seeds), against the
  variant run alone."""
  config = _config(seed_parallelism=parallelism, **overrides)
  config.variants = VARIANTS
  validation.validate(config)
  history = training.train_and_evaluate(config, str(tmp_path / "sweep"))
  seeds = config.num_seeds
  assert [r["variant"] for r in history[:3 * seeds]] == [
      v["name"] for v in VARIANTS for _ in range(seeds)]
  assert [r["seed"] for r in history[:3 * seeds]] == [
      s + k for s in (0, 0, 5) for k in range(seeds)]
  params, step = _results(tmp_path / "sweep")
  sliced = variants.split_models(params, config)
  for variant, alone_config in zip(VARIANTS, variants.variant_configs(config)):
    name = variant["name"]
    alone_dir = tmp_path / name
    alone = training.train_and_evaluate(alone_config, str(alone_dir))
    alone_params, alone_step = _results(alone_dir)
    assert alone_step == step
    mine = [r for r in history if r["variant"] == name]
    for got, want, start in zip(jax.tree.leaves(sliced[name]),
                                jax.tree.leaves(alone_params),
                                jax.tree.leaves(_initial_params(alone_config))):
      if exact:
        np.testing.assert_array_equal(got, want)
      else:
        # vmap batches the models' kernels: the same maths, other rounding,
        # which training amplifies (Adam turns a rounding-level gradient
        # into a step of up to ~lr: test_study.py). Measured relative to
        # how far training moved the weights: at most 0.13% per layer after
        # these 16 steps; a mixed-up init, order or rate is ~100%.
        # Bound: 1%.
        moved = np.linalg.norm(np.asarray(want) - np.asarray(start))
        off = np.linalg.norm(np.asarray(got) - np.asarray(want))
        assert off <= 0.01 * moved, (name, got.shape, off / moved)
    if exact:
      assert _strip(mine) == _strip(alone)
    else:
      for a, b in zip(_strip(mine), _strip(alone)):
        np.testing.assert_allclose(a["val_loss"], b["val_loss"], rtol=1e-4)
  # The variants really differ: other initial weights, other steps.
  assert not np.array_equal(jax.tree.leaves(sliced["base"])[0],
                            jax.tree.leaves(sliced["glorot"])[0])
  lr = {r["variant"]: r["learning_rate"] for r in history}
  assert lr == {"base": 1e-3, "glorot": 3e-3, "l2_seed5": 1e-3}
  assert "train_regularization" in [r for r in history
                                    if r["variant"] == "l2_seed5"][0]


@needs_cifar10
def test_unrolled_sweep_is_each_variant_alone_bit_for_bit(tmp_path):
  _compare(tmp_path, "unroll", exact=True)


@needs_cifar10
def test_vmapped_sweep_matches_each_variant_alone(tmp_path):
  _compare(tmp_path, "vmap", exact=False, num_seeds=1)


def test_variants_are_checked():
  config = _config()
  config.variants = ({"name": "a", "momentum": 0.5},)
  with pytest.raises(UserError, match=r"'momentum' cannot vary inside one "
                     "program"):
    validation.validate(config)
  config.variants = ({"name": "a"}, {"name": "a", "seed": 3})
  with pytest.raises(UserError, match="the name 'a' appears twice"):
    validation.validate(config)
  config.variants = ({"name": "a", "weight_decay": 0.0},
                     {"name": "b", "weight_decay": 1e-4})
  with pytest.raises(UserError, match="weight_decay is 0 in some variants"):
    validation.validate(config)
  config.variants = ({"name": "a", "learning_rate": -1.0},)
  with pytest.raises(UserError, match=r"config.variants \(a\): "
                     r"config.learning_rate=-1.0: must be positive"):
    validation.validate(config)
  config.variants = ({"name": "a", "seed": 2},)
  config.train_sample = 100
  with pytest.raises(UserError, match="'seed' cannot vary with"):
    validation.validate(config)


def test_hyper_keeps_agreeing_scalars_python_numbers():
  config = _config()
  config.variants = VARIANTS
  hyper = variants.Hyper.from_config(config)
  assert len(hyper.per_model) == 6
  assert set(hyper.varying) == {"learning_rate", "kernel_l2", "bias_l1"}
  assert hyper.shared()["weight_decay"] == 0.0
  np.testing.assert_allclose(hyper.stacked()["learning_rate"],
                             [1e-3, 1e-3, 3e-3, 3e-3, 1e-3, 1e-3])
  groups = variants.init_groups(config)
  assert [g[1] for g in groups] == [slice(0, 2), slice(2, 4), slice(4, 6)]


def _study(vectorize):
  import ml_collections
  config = _config(num_seeds=1)
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.arms = (
        {"name": "he", "kernel_init": "he_normal"},
        {"name": "glorot_fast", "kernel_init": "glorot_uniform",
         "bias_init": "glorot_uniform", "learning_rate": 3e-3},
        {"name": "sgd", "optimizer": "sgd"},  # another program
    )
    config.study.vectorize = vectorize
  return config


@needs_cifar10
def test_vectorised_study_writes_each_arm_as_if_run_alone(tmp_path):
  from jaxtransfer.core import workdir as workdir_lib
  from jaxtransfer.engine import experiment
  from jaxtransfer.study import runner
  plan = runner.run(_study(True), str(tmp_path / "one"))
  assert [a.get("vectorized_in") for a in plan["arms"]] == [
      "sweep_0", "sweep_0", None]
  runner.run(_study(False), str(tmp_path / "apart"))
  for arm in ("he", "glorot_fast", "sgd"):
    ours = _strip(workdir_lib.read_metrics(tmp_path / "one" / arm))
    theirs = _strip(workdir_lib.read_metrics(tmp_path / "apart" / arm))
    assert ours == theirs and len(ours) == 2
    for a, b in zip(jax.tree.leaves(_results(tmp_path / "one" / arm)[0]),
                    jax.tree.leaves(_results(tmp_path / "apart" / arm)[0])):
      np.testing.assert_array_equal(a, b)
  # An exported arm is a finished run of its own config: evaluating its
  # checkpoint reproduces its last record, and a rerun trains nothing.
  config = experiment.config_from_workdir(str(tmp_path / "one" / "he"))
  evaluated = experiment.evaluate(config, str(tmp_path / "one" / "he"))
  last = workdir_lib.read_metrics(tmp_path / "one" / "he")[-1]
  assert evaluated[0]["val_loss"] == pytest.approx(last["val_loss"], rel=1e-6)
  stamp = (tmp_path / "one" / "sweep_0" / "metrics.jsonl").stat().st_mtime_ns
  runner.run(_study(True), str(tmp_path / "one"))
  assert (tmp_path / "one" / "sweep_0" / "metrics.jsonl"
          ).stat().st_mtime_ns == stamp
  report = (tmp_path / "one" / "report.md").read_text()
  assert "| glorot_fast |" in report and "| he |" in report

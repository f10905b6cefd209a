"""configs/joint/: seed 002's tables as studies; every arm's config is built
and validated (planning.plan_study) and carries its row's settings."""

import pytest

from configs.joint import (blurred, common, constrained, optimizers, v1, v2, v3,
                           v4)
from jaxtransfer.study import planning
from jaxtransfer.core.errors import UserError
from jaxtransfer.models import notation


@pytest.mark.parametrize("module, arms", [(v1, 6), (v2, 8), (v3, 8), (v4, 8),
                                          (blurred, 2), (constrained, 5)])
def test_every_row_is_a_valid_arm(module, arms):
  config = module.get_config("smoke")
  plan, runs, _ = planning.plan_study(config, "/nonexistent/never/written")
  assert len(runs) == arms
  assert plan["columns"] == list(common.COLUMNS)
  for entry, run in runs:
    assert entry["status"] == "planned"
    encoder, classifier, size = notation.PRESETS[run.arch]
    assert entry["notes"]["encoder"] == encoder
    assert run.image_size == size
    # The seed's recipe.
    assert (run.optimizer, run.learning_rate, run.momentum) == ("sgd", 0.01, 0.9)
    assert run.weight_decay == 1e-4 and run.augment.hflip


def test_v4_arms_are_the_seeds_rows():
  runs = {entry["name"]: run for entry, run in planning.plan_study(
      v4.get_config(""), "/nonexistent")[1]}
  assert runs["dropout_l2"].kernel_l2 == runs["dropout_l2"].bias_l2 == 0.001
  assert runs["dropout"].kernel_l2 == 0.0
  # The seed's row read both ways: Keras's sum(w^2) and torch.norm per tensor.
  assert runs["dropout_l2"].l2_form == "squared"
  norm = runs["dropout_l2norm"]
  assert (norm.l2_form, norm.kernel_l2, norm.bias_l2) == ("norm", 0.001, 0.001)
  assert runs["beta0"].joint.beta == 0.0 and runs["beta0"].task == "joint"
  assert runs["no_decoder"].task == "classifier"
  assert runs["stride2"].arch == "v4_stride2"
  assert runs["no_dropout"].arch == "v4_no_dropout"
  from jaxtransfer.features import stages
  (_, first), (_, second) = stages.stage_configs(runs["separate"], "/w")
  assert (first.joint.alpha, first.joint.beta) == (0.0, 1.0)
  assert (second.joint.alpha, second.joint.beta) == (1.0, 0.0)
  assert second.init == "checkpoint" and first.freeze == second.freeze == "none"
  assert {r.num_epochs for r in runs.values()} == {40}
  assert {r.lr_step_epochs for r in runs.values()} == {10}
  assert {r.lr_schedule for r in runs.values()} == {"step"}
  with pytest.raises(UserError, match="'dropout_l3' is not one of"):
    v4.get_config("arms=dropout_l3")
  beta0 = [a for a in v2.get_config("").study.arms if a["name"] == "v2-beta0"]
  assert beta0[0]["arch"] == "v2_beta0"


def test_blurred_pair():
  runs = [run for _, run in planning.plan_study(
      blurred.get_config("sigma=1.5"), "/nonexistent")[1]]
  assert [r.task for r in runs] == ["joint", "classifier"]
  assert runs[0].joint.beta == 1.0
  assert {r.corruption for r in runs} == {"gaussian_blur:1.5"}


def test_constrained_arms():
  runs = {entry["name"]: run for entry, run in planning.plan_study(
      constrained.get_config(""), "/nonexistent")[1]}
  assert [r.resample for r in runs.values()] == ["", "undersample",
                                                 "oversample", "", ""]
  assert runs["jigsaw"].joint.delta == 1.0 and runs["skip"].low_level_skip
  for run in runs.values():
    assert dict(run.class_fraction) == constrained.FRACTIONS
    assert run.per_class_metrics and run.kernel_l2 == 0.001


def test_optimizer_grid():
  runs = [run for _, run in planning.plan_study(
      optimizers.get_config("lrs=0.1+0.001"), "/nonexistent")[1]]
  assert [(r.optimizer, r.learning_rate) for r in runs] == [
      ("sgd", 0.1), ("sgd", 0.001), ("adam", 0.1), ("adam", 0.001),
      ("adagrad", 0.1), ("adagrad", 0.001)]
  assert {r.kernel_l2 for r in runs} == {0.001}


def test_arms_argument_keeps_those_rows_in_table_order():
  config = v2.get_config("arms=v2.2-beta1+v2-beta0")
  assert [a["name"] for a in config.study.arms] == ["v2-beta0", "v2.2-beta1"]
  assert [a["name"] for a in blurred.get_config(
      "arms=no_decoder").study.arms] == ["no_decoder"]
  with pytest.raises(UserError, match="arms: 'v2.9-beta1' is not one of v2-beta1"):
    v2.get_config("arms=v2.9-beta1")

"""Seed 001 (configs/pets/): the eight cases as one study on mock
Oxford-IIIT Pet data (tfds.testing.mock_data; the real images cannot be
downloaded here), and the report's table in the seed's columns. The body is
random (init=random): ImageNet weights cannot be downloaded either, and the
loading of pretrained weights with a re-initialised classifier is exercised
on real data by configs/pets/cifar_transfer.py (test_pets_cifar.py). The
model is seed 000's small AlexNet (model=alexnet): with torchvision's
(57M classifier parameters) the same study takes 6 minutes here, mostly
writing checkpoints; torchvision's AlexNet trains on mock pets in
test_datasets_train.py."""

import json
import os

import numpy as np

from conftest import run_cli
from configs.pets import cases, study as pets_study
from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.study import runner
from test_datasets import fake_tfds, metadata_dir  # noqa: F401  (fixtures)


def _records(run_dir) -> list[dict]:
  return workdir_lib.read_metrics(str(run_dir))


def test_the_eight_cases_run_as_one_study_with_the_seeds_table(fake_tfds,
                                                                tmp_path):
  config = pets_study.get_config("smoke,init=random,num_seeds=2,model=alexnet")
  config.progress_bar = False
  workdir = tmp_path / "pets"
  runner.run(config, str(workdir))

  plan = json.loads((workdir / "study.json").read_text())
  assert [a["name"] for a in plan["arms"]] == [f"case{i}" for i in range(1, 9)]
  assert all(a["status"] == "done" for a in plan["arms"])
  last = {a["name"]: _records(workdir / a["name"])[-1] for a in plan["arms"]}
  # The seed's split: train+test (60 + 20 mock images) joined, 15% held out.
  assert {r["val_examples"] for r in last.values()} == {12}
  assert {r["train_examples"] for r in last.values()} == {68}
  # Six views: an epoch of 6N examples (case 3, and case 8's second stage).
  assert last["case3"]["train_views_per_image"] == 6
  assert last["case3"]["step"] == 3 * (6 * 68 // 16)
  assert last["case8"]["train_views_per_image"] == 6
  assert "train_views_per_image" not in last["case2"]
  # What trains: fc8 alone (case 4), the classifier (5, 6), all (1, 7's end).
  classifier = 256 * 500 + 500 + 500 * 37 + 37  # at 64 px fc1 sees 1x1x256
  assert last["case4"]["trainable_parameters"] == 500 * 37 + 37
  assert last["case5"]["trainable_parameters"] == classifier
  assert last["case6"]["trainable_parameters"] == classifier
  assert last["case1"]["trainable_parameters"] > classifier
  assert last["case7"]["trainable_parameters"] == last["case1"][
      "trainable_parameters"]
  # Cases 7 and 8 start with case 6 itself: their first stage is case 6's
  # run, record for record.
  case6 = _records(workdir / "case6")
  for name in ("case7", "case8"):
    stage0 = [r for r in _records(workdir / name) if r["stage"] == 0]
    assert [(r["seed"], r["epoch"], r["val_loss"]) for r in stage0] == [
        (r["seed"], r["epoch"], r["val_loss"]) for r in case6]
    assert os.path.isdir(workdir / name / "stage_1_finetune")
  # Each case's schedule: lr_values decaying x0.1 at its boundaries.
  config7 = json.loads((workdir / "case7" / "stage_1_finetune" /
                        "config.json").read_text())
  assert config7["lr_values"] == [2e-4, 2e-5, 2e-6, 2e-7]
  assert config7["lr_boundaries"] == [1, 2, 3] and config7["num_epochs"] == 4

  text = (workdir / "report.md").read_text()
  table = text.split("## The study's table")[1].split("\n## ")[0]
  header = next(l for l in table.splitlines() if l.startswith("| arm"))
  assert header == ("| arm | seeds | " + " | ".join(cases.COLUMNS)
                    + " | seed_val_accuracy |")
  rows = {l.split(" | ")[0][2:]: l.split(" | ") for l in table.splitlines()
          if l.startswith("| case")}
  assert sorted(rows) == [f"case{i}" for i in range(1, 9)]
  column = lambda name: 2 + cases.COLUMNS.index(name)
  assert rows["case1"][column("lr")] == "0.0003, 3e-05, 3e-06, 3e-07"
  assert rows["case1"][column("epochs")] == "1, 1, 1, 1"
  assert rows["case6"][column("epochs")] == "1, 1, 1"
  assert rows["case1"][column("normalization")] == "none"
  assert rows["case2"][column("normalization")] == "dataset"
  assert rows["case3"][column("synthetic_data")] == "yes"
  assert rows["case2"][column("synthetic_data")] == "no"
  assert rows["case8"][column("synthetic_data")] == "yes"
  assert rows["case7"][column("lr")] == "0.0002, 2e-05, 2e-06, 2e-07"
  assert rows["case5"][column("technique")] == (
      "feature extraction (classifier further trained)")
  assert rows["case8"][-1].strip(" |") == "69.75"
  # Mean ± std over the two seeds of the final epoch's validation accuracy.
  finals = [100 * r["val_accuracy"] for r in _records(workdir / "case2")
            if r["epoch"] == last["case2"]["epoch"]]
  assert rows["case2"][column("val_accuracy")] == (
      f"{np.mean(finals):.2f} ± {np.std(finals):.2f}")
  # The summary describes a staged arm by its last stage, its stages named.
  summary = text.split("## Summary")[1].split("\n## ")[0].splitlines()
  header = next(l for l in summary if l.startswith("| arm")).split(" | ")
  row7 = next(l for l in summary if l.startswith("| case7 ")).split(" | ")
  cell = lambda field: row7[header.index(field)]
  assert cell("stages") == "case6 -> finetune"
  assert cell("freeze") == "none" and cell("learning_rate") == "0.0002"
  assert cell("lr_values") == "0.0002, 2e-05, 2e-06, 2e-07"


def test_pets_study_without_converted_weights_exits_2(tmp_path):
  workdir = tmp_path / "pets"
  result = run_cli("--config=configs/pets/study.py", f"--workdir={workdir}")
  assert result.returncode == 2, result.stderr[-2000:]
  message = result.stderr.strip().splitlines()[-1]
  assert "no arm can run here" in message and "jaxtransfer convert" in message
  assert "Traceback" not in result.stderr
  assert not workdir.exists()


def test_bad_source_run_names_the_field():
  from configs.pets import cifar_transfer
  from jaxtransfer.core.errors import UserError
  import pytest
  config = cifar_transfer.get_config("smoke")
  with config.unlocked():
    config.study.source.lerning_rate = 0.1
  with pytest.raises(UserError, match="config.study.source: field "
                     "'lerning_rate' is not a config field .did you mean "
                     "'learning_rate'"):
    runner.run(config, "/nonexistent/never/written")
  config = cifar_transfer.get_config("smoke")
  config.study.source.num_epochs = 0
  with pytest.raises(UserError, match=r"config.study.source: config.num_epochs"):
    runner.run(config, "/nonexistent/never/written")

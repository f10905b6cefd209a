"""configs/pets/cifar_transfer.py:smoke on the real CIFAR-10 copy: a source
run on classes 0-4 trained first into <workdir>/source, then seed 001's eight
cases on classes 5-9 starting from it (init='checkpoint'), with what each
case loads, freezes and re-initialises checked in the saved parameters.

With seed 000's small AlexNet (model=alexnet): the same body, and a head of
two layers, fc1 (hidden) and fc2 (last), where torchvision's has fc6, fc7
(hidden) and fc8 (last). What each case loads, freezes and re-initialises is
decided by those roles, so the checks are the same; torchvision's 57M-weight
classifier made this test the suite's slowest (191 s on 2 cores, most of it
writing and restoring 4 GB of checkpoints), and it trains on mock pets in
test_datasets_train.py and converts in test_conversion.py."""

import json

import numpy as np
import pytest

from conftest import needs_cifar10
from configs.pets import cifar_transfer
from jaxtransfer.core import checkpoints, workdir as workdir_lib
from jaxtransfer.core.errors import UserError
from jaxtransfer.study import runner


def _params(run_dir):
  params, _ = checkpoints.load_params(str(run_dir))
  return params


def _same(a, b) -> bool:
  return np.array_equal(np.asarray(a), np.asarray(b))


@needs_cifar10
def test_cifar_transfer_smoke_starts_every_case_from_the_source(tmp_path):
  config = cifar_transfer.get_config("smoke,model=alexnet")
  config.progress_bar = False
  workdir = tmp_path / "pets_cifar"
  runner.run(config, str(workdir))

  source = workdir / "source"
  source_records = workdir_lib.read_metrics(str(source))
  assert source_records[-1]["train_examples"] == 500
  assert json.loads((source / "config.json").read_text())["classes"] == list(
      cifar_transfer.SOURCE_CLASSES)
  plan = json.loads((workdir / "study.json").read_text())
  assert [a["status"] for a in plan["arms"]] == ["done"] * 8
  for name in ("case1", "case4", "case6"):
    arm_config = json.loads((workdir / name / "config.json").read_text())
    assert arm_config["init_weights"] == str(source)
    assert arm_config["classes"] == list(cifar_transfer.TARGET_CLASSES)

  src = _params(source)
  # Case 4: the source's body and hidden layer (torchvision's fc6/fc7)
  # loaded and frozen; the last layer (fc8) new (the source's classes are
  # not the target's) and trained.
  case4 = _params(workdir / "case4")
  assert _same(case4["body"]["conv1"]["kernel"], src["body"]["conv1"]["kernel"])
  assert _same(case4["head"]["fc1"]["kernel"], src["head"]["fc1"]["kernel"])
  assert not np.allclose(case4["head"]["fc2"]["kernel"],
                         src["head"]["fc2"]["kernel"])
  # Case 6: the body loaded and frozen, the whole classifier from scratch.
  case6 = _params(workdir / "case6")
  assert _same(case6["body"]["conv5"]["kernel"], src["body"]["conv5"]["kernel"])
  assert not np.allclose(case6["head"]["fc1"]["kernel"],
                         src["head"]["fc1"]["kernel"])
  # Case 1 fine-tunes everything: the body moved away from the source's.
  case1 = _params(workdir / "case1")
  assert not _same(case1["body"]["conv1"]["kernel"], src["body"]["conv1"]["kernel"])
  # Case 7 is case 6, then fine-tuning from case 6's final weights.
  case7 = workdir_lib.read_metrics(str(workdir / "case7"))
  assert [r["val_loss"] for r in case7 if r["stage"] == 0] == [
      r["val_loss"] for r in workdir_lib.read_metrics(str(workdir / "case6"))]
  finetune = json.loads((workdir / "case7" / "stage_1_finetune" /
                         "config.json").read_text())
  assert finetune["init_weights"] == str(workdir / "case7" / "stage_0_case6")
  assert finetune["freeze"] == "none" and finetune["reinit"] == []
  # The report: the seed's columns, a row per case, the source run.
  text = (workdir / "report.md").read_text()
  assert "| arm | seeds | train_accuracy | val_accuracy | lr | epochs |" in text
  assert sum(line.startswith("| case") for line in
             text.split("## The study's table")[1].splitlines()) == 8
  assert "## Source run" in text and "500 training images" in text


def test_the_config_s_model_and_its_last_layer():
  """The seed's model unless the test's small one is asked for; the last
  layer re-initialised is each model's own; another model is named."""
  config = cifar_transfer.get_config("smoke")
  assert config.model == "alexnet_torchvision"
  assert tuple(config.reinit) == ("head/fc8/.*",)
  small = cifar_transfer.get_config("smoke,model=alexnet")
  assert small.model == "alexnet" and tuple(small.reinit) == ("head/fc2/.*",)
  with pytest.raises(UserError, match="model='vgg16' is not one of "
                     "alexnet_torchvision, alexnet"):
    cifar_transfer.get_config("model=vgg16")

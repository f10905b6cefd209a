"""--mode=eval with config.eval.attacks: FGSM/PGD accuracy of a trained run
on real CIFAR-10, the whole network attacked from the pixels (a frozen body
and its feature cache included); setting the attacks at evaluation time is
not a different run."""

import pytest

from conftest import SMALL_NET, needs_cifar10, tiny_config
from jaxtransfer.core import configlib, workdir as workdir_lib
from jaxtransfer.engine import experiment, training

ATTACKS = ("fgsm:8/255", "pgd:8/255:2/255:10")


@needs_cifar10
@pytest.mark.parametrize("freeze, learning_rate", [("none", 1e-3),
                                                   ("head", 3e-3)])
def test_eval_reports_attack_accuracy_below_clean(tmp_path, freeze,
                                                  learning_rate):
  # 1,920 images, 3 epochs at tiny_config's batch of 32, the two-layer net
  # (the attacks are what is checked): clean accuracy 0.31 (none) and 0.30
  # (head) here, FGSM 0.085 / 0.09, PGD 0.055 / 0.025 (seed 000's AlexNet:
  # clean 0.245 / 0.185)
  common = dict(num_epochs=3, freeze=freeze, learning_rate=learning_rate,
                train_subset=1920, **SMALL_NET)
  config = tiny_config(**common)
  history = training.train_and_evaluate(config, str(tmp_path))
  attacked = tiny_config(**common, **{"eval.attacks": ATTACKS})
  assert workdir_lib.identity_changes(configlib.to_dict(config),
                                    configlib.to_dict(attacked)) == []
  result = experiment.evaluate(attacked, str(tmp_path))[0]
  # The clean numbers are the logged ones; the attacks only add to them.
  assert result["val_accuracy"] == history[-1]["val_accuracy"]
  accuracy = result["val_attack_accuracy"]
  assert sorted(accuracy) == sorted(ATTACKS)
  clean = result["val_accuracy"]
  assert clean > 0.14  # above chance (0.10), so there is something to attack
  assert accuracy["fgsm:8/255"] < clean
  # PGD (Madry's 10 steps of 2/255 from a random start) is at least as
  # strong as FGSM, up to one example of 200 for the random start.
  assert accuracy["pgd:8/255:2/255:10"] <= accuracy["fgsm:8/255"] + 1 / 200

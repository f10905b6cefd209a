"""Seed 004's LeNet transfer (configs/sweeps/small_net_transfer.py) on mock
MNIST and STL-10 (tfds.testing.mock_data; the real ones cannot be
downloaded here): two source runs, four arms, and what each arm loads."""

import json

import numpy as np

from configs.sweeps import small_net_transfer
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import freezing, initialization
from jaxtransfer.study import runner
from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.models import lenet
from test_datasets import fake_tfds, metadata_dir  # noqa: F401  (fixtures)


def _named(tree):
  return dict(freezing.named_leaves(tree))


def test_both_ways_run_and_load_what_the_seed_transfers(fake_tfds, tmp_path):
  config = small_net_transfer.get_config("smoke")
  config.train_subset, config.val_subset = 0, 0  # the mock splits, whole
  for source in config.study.sources.values():
    source["train_subset"], source["val_subset"] = 0, 0
  config.eval_batch_size = 32  # (500: the 30 mock images padded to 500)
  config.progress_bar = False
  workdir = tmp_path / "lenet"
  runner.run(config, str(workdir))
  plan = json.loads((workdir / "study.json").read_text())
  assert plan["sources"] == ["source_mnist28", "source_mnist96"]
  assert [a["status"] for a in plan["arms"]] == ["done"] * 4
  sources = {name: workdir_lib.read_config(str(workdir / name))
             for name in plan["sources"]}
  assert (sources["source_mnist28"]["dataset"],
          sources["source_mnist28"]["model"],
          sources["source_mnist28"]["image_size"]) == ("mnist", "lenet", 28)
  assert (sources["source_mnist96"]["model"],
          sources["source_mnist96"]["image_size"]) == ("lenet_rgb", 96)
  # Keras's initialisers everywhere, as the seed's create_lenet (with
  # PyTorch's, the stem arms did not learn on CIFAR-10).
  for run in [*plan["sources"], *(a["name"] for a in plan["arms"])]:
    run_config = workdir_lib.read_config(str(workdir / run))
    assert (run_config["kernel_init"], run_config["bias_init"]) == (
        "glorot_uniform", "zeros"), run
  records = {a["name"]: workdir_lib.read_metrics(str(workdir / a["name"]))
             for a in plan["arms"]}
  assert {r[-1]["train_examples"] for r in records.values()} == {40}  # STL
  assert {r[-1]["val_examples"] for r in records.values()} == {30}
  # What each transferred arm starts from: the source's body and head by
  # name (10 digits -> 10 STL-10 classes: every LeNet layer, as the seed's
  # `for layer in model.layers`), the stem fresh.
  for arm, source in (("stem_mnist", "source_mnist28"),
                      ("rgb_mnist", "source_mnist96")):
    arm_config = workdir_lib.read_config(str(workdir / arm))
    assert arm_config["init_weights"] == str(workdir / source)
    from ml_collections import ConfigDict
    loaded, _ = initialization.load_pretrained(ConfigDict(arm_config),
                                               str(workdir / arm))
    trained, _ = checkpoints.load_params(str(workdir / source))
    assert set(_named(loaded["body"])) == {"conv1/kernel", "conv1/bias",
                                           "conv2/kernel", "conv2/bias"}
    for name, value in _named(loaded["body"]).items():
      np.testing.assert_array_equal(value[0], _named(trained["body"])[name][0])
    assert set(loaded["head"]) == {"fc1", "fc2", "fc3"}
    final, _ = checkpoints.load_params(str(workdir / arm))
    assert ("stem" in final) == (arm == "stem_mnist")
    if arm == "stem_mnist":
      stem = final["stem"]
      assert [stem[f"conv{i}"]["kernel"].shape[1:] for i in (1, 6)] == [
          (5, 5, 3, 6), (3, 3, 6, 1)]
  assert lenet.stem_size(96) == 28

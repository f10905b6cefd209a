"""torchvision AlexNet -> Flax: numerical equivalence and bad input.

The reference is a PyTorch module with exactly torchvision's AlexNet layout
and state_dict keys (torchvision itself is not needed), random weights,
saved with torch.save like the real alexnet-owt-7be5be79.pth.
"""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import readme_commands  # noqa: E402
from conftest import REPO_ROOT, needs_cifar10, run_cli  # noqa: E402
from model_init import apply, init_variables  # noqa: E402
from jaxtransfer import models
from jaxtransfer.core import checkpoints
from jaxtransfer.engine import freezing, initialization
from jaxtransfer.models import conversion  # noqa: E402
from jaxtransfer.core.errors import UserError  # noqa: E402


class TorchvisionLayoutAlexNet(nn.Module):
  """torchvision.models.AlexNet, layer for layer (same state_dict keys)."""

  def __init__(self, num_classes=1000):
    super().__init__()
    self.features = nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2))
    self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
    self.classifier = nn.Sequential(
        nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes))

  def forward(self, x):
    x = self.avgpool(self.features(x))
    return self.classifier(torch.flatten(x, 1))


@pytest.fixture(scope="module")
def torch_model():
  torch.manual_seed(0)
  model = TorchvisionLayoutAlexNet().eval()
  with torch.no_grad():  # larger than default init so activations stay O(1)
    for module in model.modules():
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        module.weight.mul_(3.0)
        module.bias.normal_(0.0, 0.1)
  return model


@pytest.fixture(scope="module")
def converted(torch_model, tmp_path_factory):
  folder = tmp_path_factory.mktemp("alexnet")
  path = folder / "alexnet_random.pth"
  torch.save(torch_model.state_dict(), path)
  out = folder / "converted"
  info = conversion.convert_file(str(path), str(out), with_classifier=True)
  return {"path": path, "out": out, "info": info,
          "params": conversion.load_converted(str(out))}


def _relative_error(actual, expected):
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _inputs(size, seed=1):
  x = np.random.default_rng(seed).standard_normal((2, 3, size, size)).astype(np.float32)
  return x, jnp.asarray(x.transpose(0, 2, 3, 1))  # NCHW for torch, NHWC for flax


@pytest.mark.parametrize("size", [128, 224])
def test_body_features_match_pytorch(torch_model, converted, size):
  x_torch, x_flax = _inputs(size)
  with torch.no_grad():
    expected = torch_model.features(torch.from_numpy(x_torch)).numpy()
  actual = apply(models.AlexNetBody(), {"params": converted["params"]["body"]},
                 x_flax)
  actual = np.asarray(actual).transpose(0, 3, 1, 2)
  assert actual.shape == expected.shape
  assert np.abs(expected).max() > 0.1  # a meaningful comparison, not zeros
  assert _relative_error(actual, expected) <= 1e-4


@pytest.mark.parametrize("size", [128, 224])
def test_imagenet_logits_match_pytorch(torch_model, converted, size):
  x_torch, x_flax = _inputs(size, seed=2)
  with torch.no_grad():
    expected = torch_model(torch.from_numpy(x_torch)).numpy()
  actual = np.asarray(apply(models.TorchvisionAlexNet(),
                            {"params": converted["params"]}, x_flax))
  assert actual.shape == (2, 1000)
  assert _relative_error(actual, expected) <= 1e-4
  assert (actual.argmax(-1) == expected.argmax(-1)).all()


def test_adaptive_average_pool_matches_pytorch():
  x = np.random.default_rng(3).standard_normal((2, 7, 5, 4)).astype(np.float32)
  expected = nn.AdaptiveAvgPool2d((6, 6))(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  actual = models.adaptive_avg_pool(jnp.asarray(x), 6)
  np.testing.assert_allclose(np.asarray(actual).transpose(0, 3, 1, 2),
                             expected.numpy(), rtol=1e-6, atol=1e-6)


def test_every_array_is_converted_with_the_expected_shape(torch_model, converted):
  state_dict = torch_model.state_dict()
  flat = dict(freezing.named_leaves(converted["params"]))
  assert len(flat) == len(state_dict) == 16  # nothing dropped, nothing left over
  for torch_name, flax_name in conversion.BODY_LAYERS.items():
    weight = state_dict[f"{torch_name}.weight"]
    assert flat[f"body/{flax_name}/kernel"].shape == tuple(weight.permute(2, 3, 1, 0).shape)
    np.testing.assert_array_equal(flat[f"body/{flax_name}/bias"],
                                  state_dict[f"{torch_name}.bias"].numpy())
  for torch_name, flax_name in conversion.CLASSIFIER_LAYERS.items():
    weight = state_dict[f"{torch_name}.weight"]
    assert flat[f"classifier/{flax_name}/kernel"].shape == tuple(weight.T.shape)
  # The body fits the study's classifier exactly.
  fresh = jax.eval_shape(lambda: models.Classifier(10).init(
      jax.random.key(0), jnp.zeros((1, 128, 128, 3)))["params"])
  assert jax.tree.map(lambda a: a.shape, fresh["body"]) == jax.tree.map(
      lambda a: a.shape, converted["params"]["body"])
  info = json.loads((converted["out"] / conversion.INFO_FILE).read_text())
  assert info["sha256"] == conversion.sha256(str(converted["path"]))
  assert len(info["shapes"]) == 16 and info["sha256_matches_name"] is None


def test_body_only_conversion_and_safetensors(torch_model, tmp_path):
  from safetensors.torch import save_file
  path = tmp_path / "alexnet.safetensors"
  save_file({k: v.contiguous() for k, v in torch_model.state_dict().items()}, str(path))
  conversion.convert_file(str(path), str(tmp_path / "out"))
  params = conversion.load_converted(str(tmp_path / "out"))
  assert set(params) == {"body"}
  np.testing.assert_array_equal(
      params["body"]["conv1"]["kernel"],
      torch_model.features[0].weight.detach().numpy().transpose(2, 3, 1, 0))


def test_cli_convert(torch_model, tmp_path):
  # (not torchvision's file name: its hash would not match random weights)
  path = tmp_path / "alexnet.pth"
  torch.save(torch_model.state_dict(), path)
  result = subprocess.run(  # README's convert command
      readme_commands.argv("jaxtransfer convert", **{
          "alexnet-owt-7be5be79.pth": str(path),
          "weights/alexnet_imagenet": str(tmp_path / "out")}),
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Converted" in result.stdout
  assert (tmp_path / "out" / conversion.PARAMS_SUBDIR).is_dir()


# ---------------------------------------------------------------------------
# Bad input.

def test_missing_file_says_where_to_get_it(tmp_path):
  with pytest.raises(UserError, match="download.pytorch.org/models/alexnet-owt-7be5be79.pth"):
    conversion.convert_file(str(tmp_path / "alexnet-owt-7be5be79.pth"),
                            str(tmp_path / "out"))


def test_other_architecture_lists_keys_and_converts_nothing(tmp_path):
  torch.manual_seed(0)
  other = nn.Sequential(nn.Conv2d(3, 96, 11, 4, 2), nn.ReLU(), nn.Conv2d(96, 256, 5))
  path = tmp_path / "other.pth"
  torch.save(other.state_dict(), path)
  with pytest.raises(UserError) as error:
    conversion.convert_file(str(path), str(tmp_path / "out"))
  message = str(error.value)
  assert "features.0.weight: missing (expected (64, 3, 11, 11))" in message
  assert "0.weight: unexpected (96, 3, 11, 11)" in message
  assert "Nothing was converted" in message
  assert not (tmp_path / "out").exists()


def test_wrong_shapes_are_listed(torch_model, tmp_path):
  state = dict(torch_model.state_dict())
  state["features.3.weight"] = torch.zeros(128, 64, 5, 5)
  path = tmp_path / "alexnet_bad.pth"
  torch.save(state, path)
  with pytest.raises(UserError, match=r"features.3.weight: shape \(128, 64, 5, 5\), "
                     r"expected \(192, 64, 5, 5\)"):
    conversion.convert_file(str(path), str(tmp_path / "out"))
  assert not (tmp_path / "out").exists()


class _WritesAFile:
  def __init__(self, marker):
    self.marker = marker

  def __reduce__(self):
    return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
  marker = tmp_path / "pwned.txt"
  path = tmp_path / "alexnet_evil.pth"
  torch.save({"features.0.weight": _WritesAFile(str(marker))}, path)
  with pytest.raises(UserError) as error:
    conversion.convert_file(str(path), str(tmp_path / "out"))
  assert "refused to load" in str(error.value)
  assert "would run code" in str(error.value)
  assert not marker.exists()
  assert not (tmp_path / "out").exists()
  # The payload is live: an unsafe load in another process does write the file.
  subprocess.run([sys.executable, "-c",
                  f"import torch; torch.load({str(path)!r}, weights_only=False)"],
                 capture_output=True, cwd=str(tmp_path), check=False)
  assert marker.exists()


def test_a_torchvision_name_with_the_wrong_hash_is_refused(torch_model, tmp_path):
  path = tmp_path / "alexnet-owt-7be5be79.pth"  # random weights: hash differs
  torch.save(torch_model.state_dict(), path)
  with pytest.raises(UserError, match="promises 7be5be79"):
    conversion.convert_file(str(path), str(tmp_path / "out"))
  assert conversion.check_name_hash(str(path), "7be5be79" + "0" * 56) is True


def test_existing_output_directory_is_not_overwritten(torch_model, converted):
  with pytest.raises(UserError, match="not empty"):
    conversion.convert_file(str(converted["path"]), str(converted["out"]))


def test_imagenet_init_without_converted_weights_names_the_command(tmp_path):
  with pytest.raises(UserError, match="jaxtransfer convert"):
    conversion.load_converted(str(tmp_path))


def _stacked_params(num_classes, seed):
  params = init_variables(models.Classifier(num_classes), jax.random.key(seed),
                          jnp.zeros((1, 64, 64, 3)))["params"]
  return jax.tree.map(lambda a: np.asarray(a)[None], params)  # one seed


def test_checkpoint_head_is_reused_only_when_its_shapes_fit():
  fresh, other = _stacked_params(10, 0), _stacked_params(10, 1)
  merged = initialization.merge_pretrained(fresh, other, "same classes")
  np.testing.assert_array_equal(merged["head"]["fc2"]["kernel"],
                                other["head"]["fc2"]["kernel"])
  hundred = _stacked_params(100, 1)
  merged = initialization.merge_pretrained(fresh, hundred, "100 classes")
  np.testing.assert_array_equal(merged["head"]["fc2"]["kernel"],
                                fresh["head"]["fc2"]["kernel"])
  np.testing.assert_array_equal(merged["body"]["conv1"]["kernel"],
                                hundred["body"]["conv1"]["kernel"])


@needs_cifar10
def test_imagenet_arm_trains_from_converted_weights(converted, tmp_path):
  workdir = tmp_path / "w"
  result = run_cli("--config=configs/imagenet_init.py:smoke",
                   f"--config.init_weights={converted['out']}",
                   "--config.freeze=head", "--config.train_subset=320",
                   "--config.val_subset=200", "--config.num_epochs=1",
                   "--config.progress_bar=False", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "ImageNet weights" in result.stderr
  trained, _ = checkpoints.load_params(str(workdir))
  # freeze=head: the body is exactly the converted ImageNet body.
  for layer, arrays in converted["params"]["body"].items():
    for name, value in arrays.items():
      np.testing.assert_array_equal(trained["body"][layer][name][0], value)
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert len(records) == 1 and records[0]["trainable_parameters"] < 1_000_000

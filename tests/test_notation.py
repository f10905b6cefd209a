"""Seed 002's notation (jaxtransfer/models/notation.py): the parser, every
preset row's layer shapes against the seed's tables (worked out by hand
below), and bad architecture strings."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import needs_cifar10, run_cli, tiny_config
from model_init import init_variables
from jaxtransfer import models
from jaxtransfer.engine import training, validation
from jaxtransfer.core.errors import UserError
from jaxtransfer.models import notation


def _kernels(arch, num_classes=10, **overrides):
  config = tiny_config(model="notation", arch=arch, **overrides)
  validation.validate(config)
  model = models.make_model(config, num_classes)
  size = config.image_size
  variables = jax.eval_shape(lambda: model.init(
      jax.random.key(0), jnp.zeros((1, size, size, 3)), False))
  return {f"{part}/{name}": tuple(layer["kernel"].shape)
          for part in ("body", "head")
          for name, layer in variables["params"][part].items()}


# (preset, image size, {layer: kernel shape}) from the seed's tables: 3x3
# convs with 'same' padding, C halves the size, L flattens (NHWC).
EXPECTED = [
    ("v1", 32, {"body/fc1": (3072, 512), "body/fc2": (512, 256),
                "body/fc3": (256, 128), "head/fc1": (128, 128),
                "head/fc2": (128, 10)}),
    ("v1.2", 32, {"body/fc1": (3072, 2048), "body/fc2": (2048, 1024),
                  "body/fc3": (1024, 512), "head/fc1": (512, 128),
                  "head/fc2": (128, 10)}),
    ("v2", 32, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                "body/conv3": (3, 3, 32, 64), "body/fc1": (4 * 4 * 64, 512),
                "head/fc1": (512, 128), "head/fc2": (128, 10)}),
    ("v2.1", 32, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                  "body/fc1": (8 * 8 * 32, 512), "head/fc1": (512, 128),
                  "head/fc2": (128, 10)}),
    ("v2.3", 64, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                  "body/conv3": (3, 3, 32, 32), "body/conv4": (3, 3, 32, 64),
                  "body/conv5": (3, 3, 64, 64), "body/fc1": (8 * 8 * 64, 512),
                  "head/fc1": (512, 128), "head/fc2": (128, 10)}),
    ("v3", 32, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                "body/conv3": (3, 3, 32, 64), "body/conv4": (3, 3, 64, 64),
                "head/conv1": (3, 3, 64, 64), "head/fc1": (2 * 2 * 64, 10)}),
    ("v3.3", 32, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                  "head/conv1": (3, 3, 32, 32), "head/conv2": (3, 3, 32, 32),
                  "head/conv3": (3, 3, 32, 64), "head/conv4": (3, 3, 64, 64),
                  "head/conv5": (3, 3, 64, 64), "head/fc1": (2 * 2 * 64, 10)}),
    ("v4", 32, {"body/conv1": (3, 3, 3, 32), "body/conv2": (3, 3, 32, 32),
                "head/conv1": (3, 3, 32, 32), "head/conv2": (3, 3, 32, 64),
                "head/conv3": (3, 3, 64, 64), "head/fc1": (4 * 4 * 64, 512),
                "head/fc2": (512, 128), "head/fc3": (128, 10)}),
]


@pytest.mark.parametrize("arch, size, expected", EXPECTED,
                         ids=[e[0] for e in EXPECTED])
def test_presets_build_the_seeds_layer_shapes(arch, size, expected):
  assert notation.PRESETS[arch][2] == size
  assert _kernels(arch, image_size=size) == expected


def test_every_preset_parses_back_to_its_string_and_builds():
  for arch, (encoder, classifier, size) in notation.PRESETS.items():
    for text, field in ((encoder, "encoder"), (classifier, "classifier")):
      assert notation.to_string(notation.parse(text, field)) == text
    kernels = _kernels(arch, image_size=size)
    widths = [int(w) for w in __import__("re").findall(
        r"\((\d+)\)", encoder + ">" + classifier)]
    assert [k[-1] for k in kernels.values()] == widths, arch


def test_a_preset_follows_the_data_a_written_classifier_does_not():
  assert _kernels("v4", num_classes=5, image_size=32)["head/fc3"] == (128, 5)
  with pytest.raises(UserError, match=r"ends in L'\(10\), but the data has 5"):
    _kernels("", num_classes=5, image_size=32, encoder="C(8)",
             classifier="L'(10)")


def test_stride_two_and_dropout():
  kernels = _kernels("v4_stride2", image_size=32)
  assert kernels["head/fc1"] == (4 * 4 * 64, 512)  # S halves as C does
  config = tiny_config(model="notation", arch="v4", image_size=32)
  model = models.make_model(config, 10)
  x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
  params = init_variables(model, jax.random.key(1), x, False)
  run = lambda key: model.apply(params, x, True, rngs={"dropout": key})
  assert not np.allclose(run(jax.random.key(2)), run(jax.random.key(3)))
  np.testing.assert_array_equal(model.apply(params, x, False),
                                model.apply(params, x, False))


@pytest.mark.parametrize("overrides, message", [
    ({"encoder": "C(32)>X(3)", "classifier": "L'(10)"},
     r"config.encoder='C\(32\)>X\(3\)': cannot parse at character 7 \('X\(3\)'\)"),
    ({"encoder": "C(32) C(32)", "classifier": "L'(10)"},
     r"at character 7 \('C'\): expected '>' between layers"),
    ({"encoder": "C(32)>", "classifier": "L'(10)"},
     r"cannot parse at character 7 \('the end'\)"),
    ({"encoder": "C(3.5)", "classifier": "L'(10)"},
     r"C\(3.5\) at character 1: a width is a whole number"),
    ({"encoder": "D(1.5)>C(8)", "classifier": "L'(10)"}, r"a dropout rate"),
    ({"encoder": "C(8)>L(64)", "classifier": "C(8)>L'(10)"},
     r"config.classifier=.C\(8\)>L'\(10\).: C\(8\) cannot take a vector "
     r"\(its input is the encoder's flat output\)"),
    ({"encoder": "C(8)>C(8)>C(8)>C(8)>C(8)>C(8)", "classifier": "L'(10)"},
     r"halves the image below 1 px \(config.image_size=32"),
    ({"encoder": "C(8)", "classifier": "L(64)>C(8)"},
     r"its last layer is the output and must be linear"),
    ({"arch": "v5"}, r"config.arch='v5' is not a seed 002 preset"),
    ({"arch": "v4_nodropout"}, r"did you mean 'v4_no_dropout'"),
    ({}, r"needs config.arch"),
])
def test_bad_architectures_name_the_field(overrides, message):
  with pytest.raises(UserError, match=message):
    validation.validate(tiny_config(model="notation", image_size=32,
                                   **overrides))


def test_cli_bad_string_exits_2_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  result = run_cli("--config=configs/default.py", "--config.model=notation",
                   "--config.image_size=32", "--config.encoder=C(32)>C(32",
                   "--config.classifier=L'(10)", f"--workdir={workdir}")
  assert result.returncode == 2, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert "config.encoder='C(32)>C(32': cannot parse at character 7" in last
  assert not workdir.exists()


@needs_cifar10
def test_a_notation_net_trains_on_cifar10(tmp_path):
  """v4 at 32 px learns in one epoch of 2,560 images (well above the 10%
  of chance), and its trainable parameters are the table's."""
  config = tiny_config(model="notation", arch="v4", image_size=32,
                       train_subset=2560, val_subset=500, num_epochs=1,
                       batch_size=64, optimizer="adam", learning_rate=1e-3)
  history = training.train_and_evaluate(config, str(tmp_path))
  kernels = _kernels("v4", image_size=32)
  count = sum(int(np.prod(k)) + k[-1] for k in kernels.values())
  assert history[-1]["trainable_parameters"] == count
  assert history[-1]["val_accuracy"] > 0.2


def test_low_level_skip_concatenates_the_first_layer():
  # v4: conv1 (C', 32 px) -> skip conv, stride 2 to the 16 px output; the
  # classifier takes 32 + 32 channels.
  kernels = _kernels("v4", image_size=32, low_level_skip=True)
  assert kernels["body/skip"] == (3, 3, 32, 32)
  assert kernels["head/conv1"] == (3, 3, 64, 32)
  # v2 ends in L(512): the skip (16 px after C(32)'s pool) is flattened.
  kernels = _kernels("v2", image_size=32, low_level_skip=True)
  assert kernels["head/fc1"] == (512 + 16 * 16 * 32, 128)
  with pytest.raises(UserError, match="low_level_skip=True needs an encoder "
                     "that starts with a convolution"):
    _kernels("v1", image_size=32, low_level_skip=True)

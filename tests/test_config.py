"""Config files, arguments, validation and the one-line errors of the CLI."""

import importlib
import shutil

import pytest

from conftest import run_cli, tiny_config
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import validation

CONFIGS = ["default", "random_init", "autoencoder", "ae_init", "imagenet_init"]


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_every_config_loads_and_validates(name, arg):
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(arg)
  if name == "imagenet_init":
    with pytest.raises(UserError, match="jaxtransfer convert"):
      validation.validate(config)  # init_weights is the user's to give
    config.init_weights = "/converted/weights"
  validation.validate(config)
  if arg == "smoke":
    assert config.train_subset > 0 and config.image_size < 128
  else:
    assert config.image_size == 128 and config.learning_rate == 1e-3


def test_config_roles():
  from configs import ae_init, autoencoder, imagenet_init, random_init
  assert ae_init.get_config().init == "autoencoder"
  assert imagenet_init.get_config().init == "imagenet"
  assert autoencoder.get_config().task == "autoencoder"
  assert random_init.get_config().init == "random"


def test_unknown_config_argument_names_the_known_ones():
  from configs import ae_init
  with pytest.raises(UserError, match="unknown config argument 'smok'.*smoke"):
    ae_init.get_config("smok")


def test_parse_arg_types_values():
  arg = configlib.parse_arg("smoke,num_seeds=3", smoke=False, num_seeds=1)
  assert arg.smoke is True and arg.num_seeds == 3
  with pytest.raises(UserError, match="expected int"):
    configlib.parse_arg("num_seeds=many", num_seeds=1)


def test_config_is_locked_against_new_fields():
  from configs import default
  config = default.get_config()
  with pytest.raises(AttributeError, match="learning_rate"):
    config.lerning_rate = 0.1


@pytest.mark.parametrize("field, value, message", [
    ("image_size", 62, "at least 63 px"),
    ("num_epochs", 0, r"config.num_epochs=0: must be at least 1"),
    ("batch_size", -4, r"config.batch_size=-4"),
    ("learning_rate", 0.0, "must be positive"),
    ("freeze", "heda", "did you mean 'head'"),
    ("init", "imagenet1k", "is not one of"),
    ("task", "segmentation", "is not one of"),
    ("augment.rotation_degrees", (20.0, 10.0), "low <= high"),
    ("trainable_rules", (("body/.*", "yes"),), "needs True or False"),
    ("trainable_rules", (("body/(", True),), "bad regex"),
])
def test_validation_names_the_field(field, value, message):
  with pytest.raises(UserError, match=message):
    validation.validate(tiny_config(**{field: value}))


def _assert_one_line_error(result, *needles):
  assert result.returncode == 2, result.stderr
  lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
  assert lines[-1].startswith("error: "), result.stderr
  assert "Traceback" not in result.stderr
  for needle in needles:
    assert needle in lines[-1], lines[-1]


def test_cli_unknown_field_is_one_line_with_suggestions(tmp_path):
  result = run_cli("--config=configs/ae_init.py:smoke", f"--workdir={tmp_path}",
                   "--config.lerning_rate=0.1")
  _assert_one_line_error(result, "'lerning_rate'", "did you mean 'learning_rate'")
  assert list(tmp_path.iterdir()) == []


def test_cli_wrong_type_is_one_line(tmp_path):
  result = run_cli("--config=configs/ae_init.py", f"--workdir={tmp_path}",
                   "--config.batch_size=lots")
  _assert_one_line_error(result, "config.batch_size")


def test_cli_too_small_image_is_one_line(tmp_path):
  result = run_cli("--config=configs/random_init.py:smoke",
                   f"--workdir={tmp_path}", "--config.image_size=32")
  _assert_one_line_error(result, "at least 63 px")
  assert not (tmp_path / "checkpoints").exists()


def test_cli_typo_inside_a_config_file(tmp_path):
  bad = tmp_path / "configs" / "typo.py"
  bad.parent.mkdir()
  bad.write_text(
      "from configs import default\n"
      "def get_config(arg=None):\n"
      "  config = default.get_config()\n"
      "  config.lerning_rate = 0.1\n"
      "  return config\n")
  shutil.copy(importlib.import_module("configs.default").__file__,
              tmp_path / "configs" / "default.py")
  (tmp_path / "configs" / "__init__.py").write_text("")
  result = run_cli(f"--config={bad}", f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, "lerning_rate", "learning_rate")


def test_cli_missing_config_file(tmp_path):
  result = run_cli("--config=configs/nope.py", f"--workdir={tmp_path}")
  _assert_one_line_error(result, "configs/nope.py does not exist")

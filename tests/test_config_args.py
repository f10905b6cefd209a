"""A config file's arguments (`--config=FILE:smoke,name=value`): a value the
user gives is never replaced by a preset such as `smoke`."""

from __future__ import annotations

import glob
import importlib.util
import os

import pytest

from conftest import REPO_ROOT

from jaxtransfer.core import configlib

CONFIG_FILES = sorted(
    os.path.relpath(p, REPO_ROOT)
    for p in glob.glob(os.path.join(REPO_ROOT, "configs", "**", "*.py"),
                       recursive=True)
    if not os.path.basename(p).startswith("__"))


def _load(path):
  spec = importlib.util.spec_from_file_location(
      "config_under_test", os.path.join(REPO_ROOT, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _arguments(module) -> dict:
  """The arguments a config file's get_config declares (its parse_arg spec)."""
  seen = {}
  original = configlib.parse_arg

  def recording(arg, **spec):
    seen.update(spec)
    return original(arg, **spec)

  configlib.parse_arg = recording
  try:
    module.get_config("smoke")
  finally:
    configlib.parse_arg = original
  return seen


def _other_value(default):
  """A legal-looking value different from an argument's default."""
  if isinstance(default, bool):
    return None  # smoke itself, or a switch: not a number to override
  if isinstance(default, int):
    return default + 1
  if isinstance(default, float):
    return default * 2 if default else 0.5
  return None  # strings are each config's own vocabulary


def test_parse_arg_records_what_the_user_gave():
  arg = configlib.parse_arg("smoke,folds=1", smoke=False, folds=5, n=2)
  assert configlib.given(arg, "folds") and configlib.given(arg, "smoke")
  assert not configlib.given(arg, "n")
  assert configlib.preset(arg, "folds", 3) == 1
  assert configlib.preset(arg, "n", 7) == 7


@pytest.mark.parametrize("path", [p for p in CONFIG_FILES
                                  if "def get_config" in open(
                                      os.path.join(REPO_ROOT, p)).read()])
def test_a_given_argument_changes_the_smoke_config(path):
  """Every numeric argument the user gives next to `smoke` changes the
  config (the preset does not silently replace it)."""
  module = _load(path)
  arguments = _arguments(module)
  if "smoke" not in arguments:
    pytest.skip(f"{path} takes no smoke argument")
  smoke = configlib.to_dict(module.get_config("smoke"))
  tried = 0
  for name, default in arguments.items():
    value = _other_value(default)
    if value is None:
      continue
    tried += 1
    given = configlib.to_dict(module.get_config(f"smoke,{name}={value}"))
    assert given != smoke, f"{path}:smoke,{name}={value} changed nothing"
  if not tried:
    pytest.skip(f"{path} has no numeric argument")


@pytest.mark.parametrize("spec, field, expected", [
    ("configs/sweeps/kfold.py:smoke,folds=4", "folds", 4),
    ("configs/sweeps/kfold.py:smoke,num_epochs=3", "num_epochs", 3),
    ("configs/sweeps/kfold.py:smoke,train_subset=900", "train_subset", 900),
    ("configs/study.py:smoke,num_seeds=3", "num_seeds", 3),
    ("configs/joint/v1.py:smoke,num_seeds=2", "num_seeds", 2),
    ("configs/sweeps/initializers.py:smoke,num_seeds=2", "num_seeds", 2),
])
def test_the_users_value_wins(spec, field, expected):
  path, _, arg = spec.partition(":")
  assert configlib.to_dict(_load(path).get_config(arg))[field] == expected

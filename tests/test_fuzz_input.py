"""Fuzzing the input (hypothesis): whatever a user types, the lab answers
with its result or one line naming the problem, and writes nothing on a
failure.

Two levels. In process, many examples: random and mutated config fields and
values (typos, wrong types, out-of-range numbers, malformed split, attack,
corruption and grid specs) through the config checks that run before
anything is read: each either passes or raises UserError with one line,
never another exception. Through the command line, a few examples (each is
a process): the same overrides, and every command pointed at wrong places;
the property is exit status 0, or 2 with one `error:` line and no
traceback, and the file system left as it was on a failure. The
command-line examples are derandomized (the same few in every CI run: each
costs a process); the in-process ones draw anew each run.
"""

from __future__ import annotations

import os
import string

from hypothesis import HealthCheck, given, settings, strategies as st
import ml_collections
import pytest

from conftest import needs_cifar10, run_cli

from configs import default
from jaxtransfer.core import configlib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import validation

FIELDS = [f for f in configlib.known_fields(default.get_config())
          if not isinstance(configlib.get_dotted(
              configlib.to_dict(default.get_config()), f), dict)]


def _mutate(name: str, draw) -> str:
  """A typo of a field name: a letter dropped, doubled, swapped or changed."""
  i = draw(st.integers(0, max(len(name) - 1, 0)))
  kind = draw(st.sampled_from(["drop", "double", "swap", "change", "none"]))
  if kind == "drop":
    return name[:i] + name[i + 1:]
  if kind == "double":
    return name[:i] + name[i:i + 1] * 2 + name[i + 1:]
  if kind == "swap" and i + 1 < len(name):
    return name[:i] + name[i + 1] + name[i] + name[i + 2:]
  if kind == "change":
    return name[:i] + draw(st.sampled_from(string.ascii_lowercase)) + name[i + 1:]
  return name


SPLITS = st.sampled_from([
    "train", "test", "train[:10%]", "train[60%:20%]", "train[5:5]", "trian",
    "train[abc]", "train[:-1]", "train+test", "", "train[50%:]", "test[:0]"])
ATTACKS = st.sampled_from([
    "fgsm:8/255", "pgd:8/255:2/255:10", "pgd:8/255", "fgsm:-1", "fgsm:0",
    "fgsm_rs:8/255:10/255", "pgd:1/0:1:1", "cw:1", "fgsm:2", "pgd:8/255:2/255:0"])
CORRUPTIONS = st.sampled_from([
    "gaussian_noise:3", "all", "all:6", "contrast:0", "contrast", "fog:1",
    "gaussian_blur:2.5", "", "pixelate:5,jpeg_compression:1"])
NUMBERS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=True,
                                                          allow_infinity=True),
                    st.sampled_from([0, -1, 1, 2, 10**9]))
VALUES = st.one_of(NUMBERS, st.text(max_size=12), st.booleans(), SPLITS,
                   st.tuples(st.integers(-5, 5), st.integers(-5, 5)))


@st.composite
def overrides(draw):
  """(field, value) pairs: mostly real fields (some with typos), values of
  any type, specs for the fields that take them."""
  pairs = []
  for _ in range(draw(st.integers(1, 3))):
    field = draw(st.sampled_from(FIELDS))
    if field in ("train_split", "val_split"):
      value = draw(SPLITS)
    elif field == "adversarial":
      value = draw(ATTACKS)
    elif field == "eval.attacks":
      value = (draw(ATTACKS),)
    elif field == "eval.corruptions":
      value = (draw(CORRUPTIONS),)
    elif field == "corruption":
      value = draw(st.sampled_from(["", "grayscale", "gaussian_blur:1.0",
                                    "gaussian_blur:-1", "blur", "grayscale:2"]))
    else:
      value = draw(VALUES)
    if draw(st.integers(0, 4)) == 0:
      field = _mutate(field, draw)
    pairs.append((field, value))
  return pairs


def _apply(config, field, value) -> bool:
  """config.<field> = value as a --config.field=value override would:
  False where the override itself is refused (an unknown field, a value of
  the wrong type: absl's parser says so in one line, test_bad_input)."""
  *parents, leaf = field.split(".")
  node = config
  try:
    for parent in parents:
      node = node[parent]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
      return False
    node[leaf] = value
  except (TypeError, KeyError, AttributeError, ValueError):
    return False
  return True


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(overrides())
def test_config_checks_answer_in_one_line(pairs):
  config = default.get_config()
  config.progress_bar = False
  for field, value in pairs:
    _apply(config, field, value)
  try:
    validation.validate(config)
  except UserError as e:
    message = str(e)
    assert message and "\n" not in message, message
    assert "Traceback" not in message


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + ",=:_-. ",
               max_size=40))
def test_config_arguments_answer_in_one_line(text):
  """`--config=FILE:<text>`: parsed or refused with one line."""
  try:
    configlib.parse_arg(text, smoke=False, num_seeds=3, folds=5, lr=0.1,
                        arms="a+b")
  except UserError as e:
    assert str(e) and "\n" not in str(e)


# ---------------------------------------------------------------------------
# Through the command line (each example a process: few of them).

TINY = ("--config=configs/random_init.py:smoke", "--config.train_subset=320",
        "--config.val_subset=200", "--config.batch_size=32",
        "--config.num_epochs=1", "--config.progress_bar=False")


def _override_text(field, value) -> str:
  if isinstance(value, str):
    return f"--config.{field}={value}"
  return f"--config.{field}={value!r}"


def _tree(root) -> dict:
  found = {}
  for folder, dirs, files in os.walk(root):
    for name in dirs + files:
      path = os.path.join(folder, name)
      found[os.path.relpath(path, root)] = (
          os.path.getsize(path) if os.path.isfile(path) else "dir")
  return found


def _assert_answer(result):
  assert result.returncode in (0, 2), (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  if result.returncode == 2:
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), last


@needs_cifar10
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(pairs=overrides())
def test_cli_overrides_answer_in_one_line(tmp_path_factory, pairs):
  """A run that would start training is stopped at the data (a data_dir
  that does not exist), so every example ends in status 2; what matters is
  which line and that nothing was created."""
  root = tmp_path_factory.mktemp("fuzz")
  workdir = root / "w"
  args = [*TINY, *(_override_text(f, v) for f, v in pairs),
          "--config.data_dir=/nonexistent/tfds", f"--workdir={workdir}"]
  result = run_cli(*args, timeout=300)
  _assert_answer(result)
  assert result.returncode == 2
  assert not workdir.exists()


PLACES = ["missing", "file", "empty", "nested-missing"]
COMMANDS = [("report",), ("analyze",), ("--mode=eval", "--workdir={}"),
            ("convert", "--torch_checkpoint={}", "--out={}/out")]


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), place=st.sampled_from(PLACES))
def test_commands_on_wrong_places(tmp_path_factory, command, place):
  root = tmp_path_factory.mktemp("places")
  target = root / "target"
  if place == "file":
    target.write_text("not a run\n")
  elif place == "empty":
    target.mkdir()
  elif place == "nested-missing":
    target = root / "no" / "such" / "dir"
  if any("{}" in part for part in command):
    args = [part.format(target) for part in command]
  else:
    args = [*command, str(target)]
  before = _tree(root)
  result = run_cli(*args, timeout=300)
  _assert_answer(result)
  assert result.returncode == 2
  assert _tree(root) == before

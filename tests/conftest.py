"""Shared fixtures: the real CIFAR-10 copy, tiny configs, running the CLI."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from xdist.scheduler import LoadScopeScheduling

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
SHARED_TFDS = os.path.join(os.path.dirname(REPO_ROOT), "shared", "tfds")

# The prepared CIFAR-10 beside the repository (as CI has it) unless the user
# points TFDS elsewhere.
if "TFDS_DATA_DIR" not in os.environ and os.path.isdir(SHARED_TFDS):
  os.environ["TFDS_DATA_DIR"] = SHARED_TFDS

# The tests compile the same programs in many processes and runs (kill/
# resume, CLI cases, tiny runs of one model): JAX's persistent compilation
# cache, shared by the whole session (its xdist workers inherit this
# environment) and its subprocesses, compiles each once, small ones too (a
# run's data order, eager ops). A cached executable is the same binary, so
# bit-identity checks are unaffected.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax-cache-")
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)  # `from configs import default`


def cifar10_dir() -> str | None:
  data_dir = os.environ.get("TFDS_DATA_DIR")
  if data_dir and os.path.isdir(os.path.join(data_dir, "cifar10")):
    return data_dir
  return None


needs_cifar10 = pytest.mark.skipif(
    cifar10_dir() is None,
    reason="needs a prepared TFDS cifar10 (set TFDS_DATA_DIR; CI uses ../shared/tfds)")


# A two-layer notation net at 32 px: for tests of the loop, workdirs,
# studies and reports rather than of a model. A cold run of tiny_config
# with it took 10.3 s (13.1 s CPU) against 15.8 s (22.1 s CPU) with the
# default AlexNet at 64 px.
SMALL_NET = dict(model="notation", encoder="C(8)>C(16)",
                 classifier="L(32)>L'(10)", image_size=32)
SMALL_NET_FLAGS = tuple(f"--config.{k}={v}" for k, v in SMALL_NET.items())


def tiny_config(**overrides):
  """A classifier config that trains in seconds on 2 CPU cores."""
  from configs import default

  config = default.get_config()
  config.image_size = 64
  config.train_subset = 320
  config.val_subset = 200
  config.batch_size = 32
  config.eval_batch_size = 100
  config.num_epochs = 2
  config.progress_bar = False
  config.log_every_steps = 5
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split(".")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


class _ForkingCli:
  """`python -m jaxtransfer.main` forked from one process per test worker
  that imported it once (tests/cli_server.py says why and how)."""

  def __init__(self):
    self.environ = _environ_of_commands()
    self.process = subprocess.Popen(
        [sys.executable, os.path.join(TESTS_DIR, "cli_server.py")],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env=dict(os.environ))
    self.outputs = tempfile.mkdtemp(prefix="jt-cli-")

  def run(self, argv, timeout):
    stdout = os.path.join(self.outputs, "stdout")
    stderr = os.path.join(self.outputs, "stderr")
    self.process.stdin.write(json.dumps(dict(
        argv=list(argv), stdout=stdout, stderr=stderr, timeout=timeout)) + "\n")
    self.process.stdin.flush()
    reply = self.process.stdout.readline()
    if not reply:
      raise RuntimeError("tests/cli_server.py stopped")
    reply = json.loads(reply)
    with open(stdout) as out, open(stderr) as err:
      output, errors = out.read(), err.read()
    command = [sys.executable, "-m", "jaxtransfer.main", *argv]
    if reply["timed_out"]:
      raise subprocess.TimeoutExpired(command, timeout, output, errors)
    return subprocess.CompletedProcess(command, reply["returncode"], output,
                                       errors)

  def close(self):
    self.process.stdin.close()
    self.process.wait()
    shutil.rmtree(self.outputs, ignore_errors=True)


def _environ_of_commands() -> dict[str, str]:
  """The environment a command gets, less pytest's per-test variable."""
  return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


_forking_cli: list[_ForkingCli] = []  # this process's, once started


@atexit.register
def _close_forking_cli():
  while _forking_cli:
    _forking_cli.pop().close()


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
  """`python -m jaxtransfer.main ARGS` from the repository root.

  Forked from a process that has imported the CLI (tests/cli_server.py),
  started again when a test has changed the environment since (a variable
  JAX reads at import)."""
  if _forking_cli and _forking_cli[0].environ != _environ_of_commands():
    _close_forking_cli()
  if not _forking_cli:
    _forking_cli.append(_ForkingCli())
  return _forking_cli[0].run(args, timeout)


def run_command(argv: list[str], timeout: float = 600
                ) -> subprocess.CompletedProcess:
  """A command line from the repository root (README's, as
  readme_commands.argv gives it): the CLI's through run_cli, anything else
  in a new process."""
  if list(argv[:3]) == [sys.executable, "-m", "jaxtransfer.main"]:
    return run_cli(*argv[3:], timeout=timeout)
  return subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=timeout)


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
  """tag -> [(step, value), ...] of a TensorBoard run directory, read with
  TensorBoard's own loader (what `tensorboard --logdir` shows)."""
  from tensorboard.backend.event_processing import event_accumulator

  accumulator = event_accumulator.EventAccumulator(str(run_dir))
  accumulator.Reload()
  return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
          for tag in accumulator.Tags()["scalars"]}


def import_torchvision():
  """torchvision, for reference models and ops in the tests.

  PyPI's Linux torchvision wheels are built against CUDA torch; beside the
  CPU build of torch (these machines, CI) their compiled extension
  (detection ops such as nms) cannot load, and `import torchvision` then
  fails while registering fake kernels for those ops. The models and the
  tensor transforms are pure Python on top of torch, so the tests skip that
  registration (torchvision._meta_registrations) when the extension is
  missing. With a matching torch/torchvision nothing is changed.
  """
  import importlib
  import importlib.util
  import types
  import torch  # noqa: F401

  try:
    return importlib.import_module("torchvision")
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules if m.startswith("torchvision")]:
    del sys.modules[name]
  sys.modules["torchvision._meta_registrations"] = types.ModuleType(
      "torchvision._meta_registrations")
  return importlib.import_module("torchvision")


# The modules with a module-scoped fixture (a run or model their tests all
# read; tests/test_suite_scheduling.py keeps this list true). pytest-xdist's
# default scheduling ('load') may split a module between the two workers,
# and each then builds the fixture: the smoke twice is two more minutes of
# CI. Each of these modules is one unit of work for one worker, dealt first
# (pytest-xdist deals the larger units first); every other test is a unit of
# its own, as with 'load'. `--dist=loadgroup` would do this with marks, but
# with pytest 9.2 it groups nothing (pytest-xdist issue #1386).
SHARED_FIXTURE_MODULES = frozenset({
    "test_analysis.py", "test_attacks.py", "test_bad_input.py",
    "test_conversion.py", "test_datasets.py", "test_distributed.py",
    "test_end_to_end.py", "test_initializers.py", "test_interrupts.py",
    "test_lab.py", "test_optimizers.py", "test_stages.py", "test_zoo.py"})


def work_unit(nodeid: str) -> str:
  """The unit of work a test belongs to: its module's path for
  SHARED_FIXTURE_MODULES, else the test itself."""
  module = nodeid.split("::", 1)[0]
  return module if os.path.basename(module) in SHARED_FIXTURE_MODULES else nodeid


class SharedFixturesTogether(LoadScopeScheduling):
  """pytest-xdist's load-scope scheduling with work_unit as the scope (its
  own 'loadgroup' overrides the same method; test_suite_scheduling.py
  checks that the scheduler still asks it)."""

  def _split_scope(self, nodeid: str) -> str:
    return work_unit(nodeid)


def pytest_xdist_make_scheduler(config, log):
  """SharedFixturesTogether with the default --dist=load (another --dist
  the user asks for is theirs)."""
  if config.getvalue("dist") != "load":
    return None
  return SharedFixturesTogether(config, log)

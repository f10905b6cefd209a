"""One code path for 1..N devices and processes: 8 CPU devices and 2 CPU
processes (gloo collectives on loopback) train like 1 device."""

import json
import os
import subprocess
import sys

import pytest

import readme_commands
from conftest import REPO_ROOT, SMALL_NET_FLAGS, needs_cifar10, run_cli

# The two-layer net: what is compared is the sums across devices and
# processes, not the model (with it, 8 devices' losses were 1.0e-7 relative
# from 1 device's).
TINY = ("--config=configs/random_init.py:smoke", "--config.train_subset=128",
        "--config.val_subset=64", "--config.batch_size=32",
        "--config.eval_batch_size=64", "--config.num_epochs=1",
        "--config.progress_bar=False", "--config.augment.hflip=True",
        *SMALL_NET_FLAGS)


def _run(args, workdir, devices=1, command=None, timeout=300):
  env = dict(os.environ)
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
  env["PYTHON"] = sys.executable
  command = command or [sys.executable, "-m", "jaxtransfer.main",
                        f"--workdir={workdir}"]
  return subprocess.run([*command, *args], cwd=REPO_ROOT, env=env,
                        capture_output=True, text=True, timeout=timeout)


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
  """The run on the one CPU device a process has by default, forked from
  the CLI server (the multi-device runs are fresh processes)."""
  workdir = tmp_path_factory.mktemp("one_device")
  result = run_cli(*TINY, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return _records(workdir)


def _assert_same_training(got, want):
  """Same data, keys and steps; only the order of the cross-device sums
  (gradients, metrics) differs, so values agree to float rounding: 1e-6
  relative is ~10x what was seen (4 steps). Longer runs drift further, as Adam
  turns rounding-level gradients into lr-sized steps (tests/test_study.py)."""
  assert len(got) == len(want)
  for g, w in zip(got, want):
    assert g["step"] == w["step"]
    for key in ("train_loss", "val_loss"):
      assert g[key] == pytest.approx(w[key], rel=1e-6), key
    for key in ("train_accuracy", "val_accuracy"):
      assert g[key] == w[key], key


@needs_cifar10
def test_eight_devices_train_like_one(one_device, tmp_path):
  result = _run(TINY, tmp_path, devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  eight = _records(tmp_path)
  assert eight[0]["devices"] == 8 and one_device[0]["devices"] == 1
  _assert_same_training(eight, one_device)


def test_batch_not_divisible_by_devices_names_both_numbers(tmp_path):
  result = _run((*TINY, "--config.batch_size=12"), tmp_path, devices=8)
  assert result.returncode == 2
  assert "error: config.batch_size=12: does not divide by the 8 devices" in result.stderr
  assert "Traceback" not in result.stderr


@needs_cifar10
def test_two_processes_train_like_one(one_device, tmp_path):
  logs = tmp_path / "logs"
  os.environ["LAUNCH_LOG_DIR"] = str(logs)
  try:
    # README's command (launch.sh, 2 processes, random_init.py:smoke), smaller
    readme = readme_commands.argv("./launch.sh", W=str(tmp_path / "w"))
    assert TINY[0] in readme
    result = _run(TINY[1:], tmp_path / "w", command=readme)
  finally:
    del os.environ["LAUNCH_LOG_DIR"]
  assert result.returncode == 0, result.stderr[-3000:] + (logs / "process_1.log").read_text()[-2000:]
  two = _records(tmp_path / "w")
  assert two[0]["processes"] == 2 and two[0]["devices"] == 2
  _assert_same_training(two, one_device)  # one line per epoch: only process 0 writes
  assert os.listdir(tmp_path / "w" / "checkpoints")
  assert "Process 1 of 2" in (logs / "process_1.log").read_text()

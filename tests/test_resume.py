"""A run killed mid-training resumes from its last checkpoint and ends exactly
where an uninterrupted run ends."""

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO_ROOT, needs_cifar10, run_cli

TINY = ("--config=configs/random_init.py:smoke", "--config.train_subset=640",
        "--config.val_subset=200", "--config.batch_size=32",
        "--config.num_epochs=4", "--config.progress_bar=False")
COMPARED = ("epoch", "step", "train_loss", "train_accuracy", "val_loss",
            "val_accuracy")


def _metrics(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _kill_after_first_epoch(workdir):
  process = subprocess.Popen(
      [sys.executable, "-m", "jaxtransfer.main", *TINY, f"--workdir={workdir}"],
      cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    if _metrics(workdir):
      break
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  return process.returncode


@needs_cifar10
def test_killed_run_resumes_and_matches_the_uninterrupted_run(tmp_path):
  straight = tmp_path / "straight"
  assert run_cli(*TINY, f"--workdir={straight}").returncode == 0
  expected = [{k: r[k] for k in COMPARED} for r in _metrics(straight)]
  assert len(expected) == 4

  killed = tmp_path / "killed"
  assert _kill_after_first_epoch(killed) == -signal.SIGKILL
  done_before = len(_metrics(killed))
  assert 1 <= done_before < 4, "the run finished before it was killed"

  result = run_cli(*TINY, f"--workdir={killed}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "resumed" in result.stderr or "starting from scratch" in result.stderr
  resumed = [{k: r[k] for k in COMPARED} for r in _metrics(killed)]
  assert resumed == expected

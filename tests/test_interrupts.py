"""Runs that are killed, stopped or diverge lose nothing and resume exactly;
one writer per workdir."""

import json
import os
import random
import signal
import subprocess
import time

import jax.numpy as jnp
import pytest

from benchmarks import kill_resume
from conftest import REPO_ROOT, SMALL_NET, needs_cifar10, run_cli, tiny_config
from jaxtransfer.core import checkpoints, workdir as workdir_lib
from jaxtransfer.engine import experiment, steps, training


# kill_resume's run (benchmarks/kill_resume.py) for two epochs instead of
# three: a kill after the first epoch's checkpoint and the resume that
# finishes the second test the same thing, one epoch of each run sooner.
ARGS = (*kill_resume.ARGS, "--config.num_epochs=2")
EPOCHS = 2
STEPS_PER_EPOCH = 640 // 32  # kill_resume.ARGS


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """The run uninterrupted (forked from the CLI server: the runs compared
  with it are the fresh processes)."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  start = time.perf_counter()
  result = run_cli(*ARGS, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return (kill_resume.outcome(workdir), time.perf_counter() - start,
          workdir_lib.read_metrics(workdir))


def expected_epoch_seconds(reference) -> float:
  """The reference's second epoch: training plus evaluation."""
  record = reference[2][1]
  return record["epoch_seconds"] + record["eval_seconds"]


def assert_resumed_from_the_checkpoint(workdir, args=ARGS):
  """Finishes a killed run in `workdir` and checks that it resumed from the
  newest complete checkpoint the kill left (not from scratch): the step it
  says it resumed from, and the epochs before it kept as saved (timings
  included, which a retrained epoch would not reproduce). Returns that step."""
  on_disk = kill_resume.complete_steps(str(workdir))
  assert on_disk, "the kill came before any complete checkpoint"
  store = checkpoints.RunCheckpoints(str(workdir), read_only=True)
  try:
    assert store.steps() == on_disk  # orbax agrees on what is complete
    saved = store.restore_history(on_disk[-1])
  finally:
    store.close()
  assert saved and saved[-1]["step"] == on_disk[-1]
  result = kill_resume.finish(str(workdir), args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert kill_resume.resumed_from(result.stderr) == on_disk[-1], (
      on_disk, result.stderr[-3000:])
  assert "starting from scratch" not in result.stderr
  records = workdir_lib.read_metrics(str(workdir))
  assert records[:len(saved)] == saved
  return on_disk[-1]


@needs_cifar10
@pytest.mark.parametrize("when", ["training", "checkpoint write"])
def test_killed_run_resumes_bit_identical(reference, tmp_path, when):
  (expected, _, _) = reference
  assert len(expected[0]) == EPOCHS  # x 1 seed
  # Killed at a known point: once the first epoch's checkpoint is complete,
  # a seeded moment in the epoch after it (training, evaluation, saving), or
  # the moment the next checkpoint write is under way (a partial checkpoint
  # beside a complete one). A wall-clock delay from the start could land
  # before any checkpoint, when the "resume" is a fresh run.
  epoch_seconds = expected_epoch_seconds(reference)
  delay = (random.Random(7).uniform(0.1, 0.9) * epoch_seconds
           if when == "training" else None)
  what = kill_resume.kill_once(str(tmp_path), delay, ARGS,
                               after_checkpoint=True)
  assert what.startswith("killed"), what
  step = assert_resumed_from_the_checkpoint(tmp_path)
  assert step % STEPS_PER_EPOCH == 0 and step < EPOCHS * STEPS_PER_EPOCH, what
  assert kill_resume.identical(kill_resume.outcome(str(tmp_path)), expected), what
  # No partial checkpoint was ever restored, and none is left behind.
  assert not [d for d in os.listdir(tmp_path / "checkpoints") if "tmp" in d]


@needs_cifar10
def test_sigterm_checkpoints_mid_epoch_and_resumes_bit_identical(reference, tmp_path):
  (expected, _, _) = reference
  process = subprocess.Popen(kill_resume.command(str(tmp_path), ARGS),
                             cwd=REPO_ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None and not (
      metrics.exists() and metrics.read_text().strip()):
    time.sleep(0.01)
  time.sleep(0.3)  # into the second epoch
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, stderr[-2000:]
  last = stderr.strip().splitlines()[-1]
  assert last.startswith("interrupted: stopped at epoch") and "Run the same command" in last
  assert "Traceback" not in stderr
  steps = checkpoints.RunCheckpoints(str(tmp_path), read_only=True).steps()
  assert steps[-1] % STEPS_PER_EPOCH != 0, steps  # a checkpoint mid-epoch
  result = kill_resume.finish(str(tmp_path), ARGS)
  assert result.returncode == 0, result.stderr[-3000:]
  assert kill_resume.identical(kill_resume.outcome(str(tmp_path)), expected)


@needs_cifar10
def test_absurd_learning_rate_stops_naming_epoch_and_step(tmp_path):
  result = run_cli(*ARGS, "--config.learning_rate=1e6",
                   "--config.log_every_steps=1", f"--workdir={tmp_path}")
  assert result.returncode == 3, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert "error: the loss became non-finite" in last
  assert "at epoch 1, step 2" in last
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "checkpoints") or not os.listdir(
      tmp_path / "checkpoints")  # the bad state is never saved


@needs_cifar10
def test_divergence_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  workdir = str(tmp_path)
  experiment.train(tiny_config(num_epochs=1, **SMALL_NET),
                   workdir)  # one good epoch
  good = checkpoints.RunCheckpoints(workdir, read_only=True).latest_step()
  # Resume for a second epoch whose forward pass turns non-finite.
  healthy = steps.forward

  def poisoned(*args, **kwargs):
    outputs, batch_stats = healthy(*args, **kwargs)
    return outputs * jnp.inf, batch_stats

  monkeypatch.setattr(steps, "forward", poisoned)
  with pytest.raises(training.Diverged, match=r"at epoch 2, step 11"):
    experiment.train(tiny_config(num_epochs=2, **SMALL_NET), workdir)
  assert checkpoints.RunCheckpoints(workdir, read_only=True).steps()[-1] == good
  lines = (tmp_path / "metrics.jsonl").read_text().strip().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1]


@needs_cifar10
def test_one_writer_per_workdir_and_a_killed_run_leaves_no_stuck_lock(tmp_path):
  first = subprocess.Popen(kill_resume.command(str(tmp_path), ARGS),
                           cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  lock = tmp_path / ".lock"
  deadline = time.time() + 300
  while time.time() < deadline and not (lock.exists() and lock.read_text()):
    time.sleep(0.01)
  second = run_cli(*ARGS, f"--workdir={tmp_path}")  # forked: another pid
  assert second.returncode == 2
  last = second.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: workdir {tmp_path} is in use by another run (pid {first.pid}")
  first.send_signal(signal.SIGKILL)
  first.wait()
  third = run_cli(*ARGS, f"--workdir={tmp_path}")  # the kernel dropped the lock
  assert third.returncode == 0, third.stderr[-2000:]


def test_a_stop_signal_during_a_stderr_write_still_stops(monkeypatch, capfd):
  """The handler runs between two bytecodes of the main thread, which may be
  inside a write to sys.stderr (a log line, the progress bar): Python's
  buffered stderr then refuses a second write ("reentrant call"). The stop is
  requested all the same, and the message still reaches the terminal."""
  import signal as signals
  import sys
  from jaxtransfer import cli

  class StderrMidWrite:
    def write(self, text):
      raise RuntimeError("reentrant call inside <_io.BufferedWriter name='<stderr>'>")

    flush = write

  requests = []
  monkeypatch.setattr(training, "request_stop", lambda: requests.append(1))
  monkeypatch.setattr(cli, "received_signal", [])
  monkeypatch.setattr(sys, "stderr", StderrMidWrite())
  cli.on_stop_signal(signals.SIGTERM, None)
  assert requests == [1]
  assert cli.received_signal == [signals.SIGTERM]
  assert "SIGTERM: saving a checkpoint at the next step and stopping" in (
      capfd.readouterr().err)

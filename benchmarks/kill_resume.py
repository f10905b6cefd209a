"""Kill a run anywhere, start it again, and check it ends bit-identical.

  python -m benchmarks.kill_resume [--points=20] [--seed=0]

Trains a small run once without interruption (the reference), then, for each
kill point, starts the same command in a fresh workdir, SIGKILLs it after a
random delay within the reference's duration (start-up, data loading,
compilation, training, evaluation and checkpoint writes are all fair game) or
as soon as a checkpoint write is under way, starts it again until it
finishes, and compares the final parameters (every array, bit for bit) and
every epoch's metrics (all but the timing fields) with the reference.
Prints a table; `tests/test_interrupts.py` runs a handful of these in CI.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

ARGS = ("--config=configs/random_init.py:smoke", "--config.train_subset=640",
        "--config.val_subset=200", "--config.batch_size=32",
        "--config.num_epochs=3", "--config.keep_checkpoints=1",
        "--config.progress_bar=False", "--config.augment.hflip=True",
        "--config.augment.rotate=True")
COMPARED = ("epoch", "step", "seed", "train_loss", "train_accuracy",
            "val_loss", "val_accuracy")


def command(workdir: str, args=ARGS) -> list[str]:
  return [sys.executable, "-m", "jaxtransfer.main", *args, f"--workdir={workdir}"]


def finish(workdir: str, args=ARGS, timeout: float = 600) -> subprocess.CompletedProcess:
  return subprocess.run(command(workdir, args), cwd=REPO_ROOT, capture_output=True,
                        text=True, timeout=timeout)


def outcome(workdir: str) -> tuple[list[dict], dict]:
  """(metrics without timing fields, final parameters as numpy)."""
  from jaxtransfer.core import checkpoints, workdir as workdir_lib
  records = [{k: r[k] for k in COMPARED} for r in workdir_lib.read_metrics(workdir)]
  params, _ = checkpoints.load_params(workdir)
  return records, params


def identical(a: tuple[list[dict], dict], b: tuple[list[dict], dict]) -> bool:
  import jax
  import numpy as np
  if a[0] != b[0]:
    return False
  leaves_a, tree_a = jax.tree.flatten(a[1])
  leaves_b, tree_b = jax.tree.flatten(b[1])
  return tree_a == tree_b and all(
      x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
      for x, y in zip(map(np.asarray, leaves_a), map(np.asarray, leaves_b)))


def complete_steps(workdir: str) -> list[int]:
  """The steps of the complete checkpoints on disk. Orbax writes a step to
  `<step>.orbax-checkpoint-tmp-<time>/` and renames it to `<step>/` once every
  file is written (core/checkpoints.py): a name of digits alone is complete."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    return []
  return sorted(int(name) for name in os.listdir(directory) if name.isdigit())


def resumed_from(stderr: str) -> int | None:
  """The step a run says it resumed from (run_setup.initial_state's log
  line), or None where it started from scratch."""
  steps = re.findall(r"resumed \S+ from step (\d+)$", stderr, re.MULTILINE)
  return int(steps[-1]) if steps else None


def kill_once(workdir: str, delay: float | None, args=ARGS,
              after_checkpoint: bool = False) -> str:
  """Starts the run and SIGKILLs it after `delay` seconds, or (delay None)
  as soon as a checkpoint is being written. With `after_checkpoint`, both
  count from the moment a complete checkpoint is on disk, so that the next
  run has one to resume from. Returns what was happening."""
  process = subprocess.Popen(command(workdir, args), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  start = time.perf_counter()
  armed = None if after_checkpoint else start
  while process.poll() is None:
    if armed is None:
      if complete_steps(workdir):
        armed = time.perf_counter()
      time.sleep(0.001)
      continue
    elapsed = time.perf_counter() - armed
    if delay is not None and elapsed >= delay:
      break
    if delay is None and os.path.isdir(checkpoint_dir) and any(
        "tmp" in name for name in os.listdir(checkpoint_dir)):
      break
    time.sleep(0.001)
  if process.poll() is not None:
    return "finished before the kill"
  writing = os.path.isdir(checkpoint_dir) and any(
      "tmp" in name for name in os.listdir(checkpoint_dir))
  process.send_signal(signal.SIGKILL)
  process.wait()
  epochs = len([l for l in open(os.path.join(workdir, "metrics.jsonl"))]) if (
      os.path.exists(os.path.join(workdir, "metrics.jsonl"))) else 0
  return (f"killed at {time.perf_counter() - start:.2f} s, "
          f"{'while writing a checkpoint' if writing else 'not writing'}, "
          f"metrics.jsonl had {epochs} epoch line{'' if epochs == 1 else 's'}, "
          f"complete checkpoints {complete_steps(workdir)}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--points", type=int, default=20)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  os.environ.setdefault("TFDS_DATA_DIR", os.path.join(
      os.path.dirname(REPO_ROOT), "shared", "tfds"))

  rng = random.Random(args.seed)
  rows = []
  with tempfile.TemporaryDirectory() as root:
    start = time.perf_counter()
    result = finish(os.path.join(root, "reference"))
    duration = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-2000:]
    reference = outcome(os.path.join(root, "reference"))
    for point in range(args.points):
      workdir = os.path.join(root, f"kill{point}")
      # Every 4th point waits for a checkpoint write; of the others, half
      # fall anywhere in the run, half in its last 40% (training, evaluation
      # and saving rather than start-up).
      low = 0.5 if point % 2 else 0.6 * duration
      delay = None if point % 4 == 3 else rng.uniform(low, duration)
      what = kill_once(workdir, delay)
      result = finish(workdir)
      same = result.returncode == 0 and identical(outcome(workdir), reference)
      rows.append((point, "during a checkpoint write" if delay is None
                   else f"after {delay:.2f} s", what, same))
      print(rows[-1], flush=True)

  print(f"\n{datetime.date.today()} | {platform.node()} | reference run "
        f"{duration:.1f} s | {' '.join(ARGS)}")
  print("| point | kill | what it hit | resumed bit-identical |")
  print("|---|---|---|---|")
  for point, when, what, same in rows:
    print(f"| {point} | {when} | {what} | {'yes' if same else '**no**'} |")
  print(f"\n{sum(r[3] for r in rows)} of {len(rows)} kill points resumed "
        "bit-identically.")


if __name__ == "__main__":
  main()

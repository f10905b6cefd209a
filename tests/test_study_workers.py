"""Workers sharing a study (study/workers.py, study/submit.py): real
processes through submitit's LocalExecutor, a worker killed mid-arm, a
study directory of another config, and the SLURM job array that a stand-in
sbatch receives."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

import jaxtransfer

import readme_commands
from conftest import REPO_ROOT, needs_cifar10, run_cli, run_command

# Records whose values depend on timing or the machine, not on the training.
TIMING = ("epoch_seconds", "eval_seconds", "compile_seconds",
          "train_images_per_second", "host_peak_rss_mb", "device_peak_mb",
          "feature_seconds")

CONFIG_FILE = """
import sys
sys.path.insert(0, {tests!r})
import ml_collections
from conftest import SMALL_NET, tiny_config


def get_config(arg=None):
  # Half tiny_config's images and the two-layer net: the tests compare
  # floats between ways of running a study, not what it learns.
  config = tiny_config(num_epochs={epochs}, train_subset=160, val_subset=100,
                       **SMALL_NET)
  with config.unlocked():
    config.study = ml_collections.ConfigDict()
    config.study.grid = {{"learning_rate": {rates!r}}}
  return config
"""
RATES = (1e-3, 5e-4, 2e-3, 3e-4)


def _config_file(tmp_path, name="study_config.py", epochs=2, rates=RATES):
  path = tmp_path / name
  path.write_text(CONFIG_FILE.format(tests=os.path.join(REPO_ROOT, "tests"),
                                     epochs=epochs, rates=rates))
  return path


def _load(path):
  """The config a --config=path gives (its get_config())."""
  namespace = {}
  exec(compile(path.read_text(), str(path), "exec"), namespace)
  return namespace["get_config"]()


def _arms(rates=RATES):
  return [f"learning_rate={r}" for r in rates]


def _metrics(arm_dir):
  path = arm_dir / "metrics.jsonl"
  return ([json.loads(line) for line in path.read_text().splitlines()]
          if path.exists() else [])


def _trained(records):
  return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _submit(config_path, workdir, *flags):
  return run_cli("study", "submit", f"--config={config_path}",
                 f"--workdir={workdir}", *flags)


def _untimed_report(text):
  """report.md without its timing columns (s/epoch, compile s)."""
  lines = []
  for line in text.splitlines():
    if line.startswith("| arm |") or re.match(r"\| learning_rate=", line):
      cells = line.split("|")
      header = [c.strip() for c in text.split("| arm |")[1].splitlines()[0]
                .split("|")]
      drop = {i + 2 for i, c in enumerate(header)
              if c in ("s/epoch (all seeds)", "compile s")}
      line = "|".join(c for i, c in enumerate(cells) if i not in drop)
    lines.append(line)
  return "\n".join(lines)


@needs_cifar10
def test_two_local_workers_share_a_study_exactly_as_one_process(tmp_path):
  from jaxtransfer.study import runner
  config_path = _config_file(tmp_path)
  runner.run(_load(config_path), str(tmp_path / "one"))

  result = _submit(config_path, tmp_path / "two", "--workers=2",
                   "--executor=local")
  assert result.returncode == 0, result.stderr[-3000:]
  two = tmp_path / "two"
  claims = {arm: json.loads((two / "workers" / f"{arm}.json").read_text())
            for arm in _arms()}
  # Every arm trained once, by one worker, and both workers had work.
  assert {c["state"] for c in claims.values()} == {"done"}
  assert {c["worker"] for c in claims.values()} == {0, 1}, claims
  for arm in _arms():
    records = _metrics(two / arm)
    assert len(records) == 2  # num_epochs x num_seeds
    assert len({(r["epoch"], r["seed"]) for r in records}) == len(records)
    # The same floats as the one-process run of the same study.
    assert _trained(records) == _trained(_metrics(tmp_path / "one" / arm))
  # One report, written once, equal to the one-process run's but for timing.
  assert result.stdout.count("and wrote the report") == 1, result.stdout
  mark = json.loads((two / "workers" / "report.json").read_text())
  assert mark["worker"] in (0, 1)
  ours = (two / "report.md").read_text()
  theirs = (tmp_path / "one" / "report.md").read_text()
  assert "| learning_rate=0.001 |" in ours
  assert _untimed_report(ours) == _untimed_report(theirs)
  # study.json: the same plan, every arm done.
  assert (json.loads((two / "study.json").read_text()) ==
          json.loads((tmp_path / "one" / "study.json").read_text()))
  status = run_cli("study", "status", str(two))
  assert status.returncode == 0, status.stderr[-2000:]
  assert "4 arms: 4 done, 0 running, 0 waiting, 0 failed" in status.stdout


def _finished_steps(checkpoint_dir):
  if not checkpoint_dir.is_dir():
    return []
  return sorted(int(n) for n in os.listdir(checkpoint_dir) if n.isdigit())


@needs_cifar10
def test_a_killed_worker_s_arm_resumes_from_its_checkpoint(tmp_path):
  from jaxtransfer.study import runner
  rates = (1e-3, 5e-4)
  config_path = _config_file(tmp_path, epochs=3, rates=rates)
  runner.run(_load(config_path), str(tmp_path / "whole"))  # uninterrupted

  workdir = tmp_path / "killed"
  first = workdir / _arms(rates)[0]
  process = subprocess.Popen(
      [sys.executable, "-m", "jaxtransfer.main", "study", "submit",
       f"--config={config_path}", f"--workdir={workdir}", "--workers=1",
       "--executor=local"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 300
  while (time.time() < deadline and process.poll() is None
         and not _finished_steps(first / "checkpoints")):
    time.sleep(0.02)
  claim = json.loads((workdir / "workers" / f"{first.name}.json").read_text())
  os.kill(claim["pid"], signal.SIGKILL)  # the worker, mid-arm
  _, stderr = process.communicate(timeout=120)
  steps = _finished_steps(first / "checkpoints")
  assert steps and len(_metrics(first)) < 3, "killed after the arm finished"
  assert process.returncode == 2 and "worker 0" in stderr, stderr[-2000:]
  status = run_cli("study", "status", str(workdir))
  assert re.search(r"waiting\s+learning_rate=0\.001\s+stopped at epoch "
                   rf"{len(_metrics(first))}/3", status.stdout), status.stdout

  result = _submit(config_path, workdir, "--workers=1", "--executor=local")
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = json.loads((workdir / "workers" / f"{first.name}.json").read_text())
  assert resumed["state"] == "done" and resumed["pid"] != claim["pid"]
  assert resumed["resumed_from_step"] == steps[-1]  # from its checkpoint
  for arm in _arms(rates):
    records = _metrics(workdir / arm)
    assert sorted((r["epoch"], r["seed"]) for r in records) == [
        (1, 0), (2, 0), (3, 0)]
    assert _trained(records) == _trained(_metrics(tmp_path / "whole" / arm))
  assert (workdir / "report.md").exists()


def _snapshot(root):
  return {os.path.relpath(os.path.join(d, f), root):
          (os.stat(os.path.join(d, f)).st_mtime_ns,
           os.stat(os.path.join(d, f)).st_size)
          for d, _, files in os.walk(root) for f in files}


@needs_cifar10
def test_workers_refuse_a_study_directory_of_another_config(tmp_path):
  from jaxtransfer.study import units, workers
  workdir = tmp_path / "study"
  workers.start(units.prepare(_load(_config_file(tmp_path)), str(workdir)))
  before = _snapshot(workdir)
  other = _config_file(tmp_path, "other.py", rates=(1e-2, 1e-3))
  for result in (_submit(other, workdir, "--workers=2", "--executor=local"),
                 run_cli(f"--config={other}", f"--workdir={workdir}")):
    assert result.returncode == 2, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()
    assert len(error) == 1 and "holds a run with a different config" in error[0]
  assert _snapshot(workdir) == before
  bad = (("--executor=pbs", "--executor='pbs': one of local, slurm"),
         ("--workers=0", "--workers=0: at least 1"))
  for flag, message in bad:
    result = _submit(_config_file(tmp_path), workdir, flag)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: {message}"), result.stderr[-2000:]
  assert _snapshot(workdir) == before


SBATCH = """#!/bin/sh
cp "$1" {record}
echo "Submitted batch job 1234"
"""


def _stand_in_slurm(tmp_path):
  """(environment with a stand-in sbatch first on PATH, the file where it
  copies the script it is given)."""
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  record = tmp_path / "sbatch_script.sh"
  (bin_dir / "sbatch").write_text(SBATCH.format(record=record))
  (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # (submitit looks)
  for tool in ("sbatch", "srun"):
    (bin_dir / tool).chmod(0o755)
  return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


@needs_cifar10
def test_slurm_submission_is_the_expected_job_array(tmp_path):
  env, record = _stand_in_slurm(tmp_path)
  workdir = tmp_path / "study"
  result = subprocess.run(
      [sys.executable, "-m", "jaxtransfer.main", "study", "submit",
       f"--config={_config_file(tmp_path)}", f"--workdir={workdir}",
       "--workers=3", "--executor=slurm", "--slurm_partition=gpu-long",
       "--slurm_gpus_per_task=1", "--slurm_timeout_min=60",
       "--slurm_cpus_per_task=8", "--slurm_mem_gb=32",
       "--slurm_array_parallelism=2"],
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
      env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "job 1234 array 0-2" in result.stdout
  script = record.read_text()
  for line in ("#SBATCH --partition=gpu-long", "#SBATCH --gpus-per-task=1",
               "#SBATCH --time=60", "#SBATCH --cpus-per-task=8",
               "#SBATCH --mem=32GB", "#SBATCH --array=0-2%2",
               "#SBATCH --signal=USR2@90", "#SBATCH --open-mode=append"):
    assert line in script.splitlines(), script
  assert "-m submitit.core._submit" in script
  # the folder that holds the jaxtransfer being run (the checkout, or
  # site-packages when the package is installed, as in CI)
  package_root = os.path.dirname(os.path.dirname(os.path.abspath(
      jaxtransfer.__file__)))
  assert f"export PYTHONPATH={package_root}" in script
  # Each array task's pickled call: a Worker of this study, its index.
  from submitit.core import utils
  folder = workdir / "workers" / "submitit"
  calls = [utils.DelayedSubmission.load(folder / f"1234_{i}" /
                                        f"1234_{i}_submitted.pkl")
           for i in range(3)]
  assert [c.args for c in calls] == [(0,), (1,), (2,)]
  assert {c.function.workdir for c in calls} == {str(workdir)}
  assert len({c.function.submission for c in calls}) == 1
  # The plan is written before any worker starts: every arm waiting.
  status = run_cli("study", "status", str(workdir))
  assert "4 arms: 0 done, 0 running, 4 waiting" in status.stdout


def test_readme_s_slurm_command_submits_its_study_as_a_job_array(tmp_path):
  """README's `study submit ... --executor=slurm` and `study status`, as
  written (W and P filled in), against the stand-in sbatch: the whole
  initialisation x freezing study planned, eight array tasks on partition P."""
  env, record = _stand_in_slurm(tmp_path)
  workdir = tmp_path / "study"
  result = subprocess.run(
      readme_commands.argv("jaxtransfer study submit", W=str(workdir),
                           P="gpu-long"),
      cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "job 1234 array 0-7" in result.stdout
  script = record.read_text().splitlines()
  assert "#SBATCH --partition=gpu-long" in script
  assert "#SBATCH --array=0-7%8" in script  # 8 tasks, all at once
  status = run_command(
      readme_commands.argv("jaxtransfer study status", W=str(workdir)),
      timeout=300)
  assert status.returncode == 0, status.stderr[-2000:]
  # configs/study.py: 3 inits x 3 freezes; without converted weights the
  # three ImageNet arms are skipped when planned.
  assert re.search(r"9 arms: 0 done, 0 running, \d waiting", status.stdout), (
      status.stdout)

"""`jaxtransfer study submit`: a study's workers (workers.py) as a job array
through submitit, on SLURM or, with executor 'local', as processes here.

  jaxtransfer study submit --config=configs/study.py --workdir=/shared/W \\
      --workers=8 --executor=slurm --slurm_partition=gpu \\
      --slurm_gpus_per_task=1 --slurm_timeout_min=240

Each array task runs `Worker(index)`: one worker until no unit is left. A
Worker is submitit-checkpointable: a task that reaches its time limit or is
preempted (SLURM sends submitit's USR2 first) is requeued with the same
arguments, and its worker takes the units again; the arm it was training
resumes from that arm's last checkpoint (the end of its last epoch), as a
killed arm does. The submitting command writes the study's plan first (so
`jaxtransfer study status W` shows every arm waiting), then submits; with
executor 'local' it also waits for the workers and reports them.

  <workdir>/workers/submitit/<job id>_*   submitit's job files and logs
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from typing import Any

from absl import logging
import submitit

from jaxtransfer.core.errors import UserError
from jaxtransfer.study import units, workers

EXECUTORS = ("local", "slurm")
SUBMITIT_DIR = "submitit"
# The folder that holds the jaxtransfer package being run.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Resources:
  """What each worker asks for (None: the cluster's default)."""
  timeout_min: int = 240
  partition: str | None = None
  gpus_per_task: int | None = None
  cpus_per_task: int | None = None
  mem_gb: float | None = None
  array_parallelism: int | None = None  # workers running at once


class Worker(submitit.helpers.Checkpointable):
  """One array task: a worker on the study, from the submission's config.
  checkpoint() (submitit's, inherited) requeues it with the same config,
  directory and submission: the requeued worker skips what is done."""

  def __init__(self, config, workdir: str, submission: str):
    self.config, self.workdir, self.submission = config, workdir, submission

  def __call__(self, index: int) -> dict[str, Any]:
    logging.set_verbosity(logging.INFO)
    outcome = workers.work(self.config, self.workdir, worker=index,
                           submission=self.submission, keep_going=True,
                           always_report=False)
    outcome.pop("plan")
    return outcome


def check_request(executor: str, count: int, resources: Resources) -> None:
  if executor not in EXECUTORS:
    raise UserError(f"--executor={executor!r}: one of {', '.join(EXECUTORS)}")
  if count < 1:
    raise UserError(f"--workers={count}: at least 1")
  if resources.timeout_min < 1:
    raise UserError(f"--slurm_timeout_min={resources.timeout_min}: at least 1")
  if executor == "slurm" and not resources.partition:
    raise UserError("--executor=slurm needs --slurm_partition")


def executor_for(executor: str, folder: str, count: int,
                 resources: Resources, name: str):
  """A submitit AutoExecutor for `count` workers of `resources`."""
  made = submitit.AutoExecutor(folder=os.path.join(folder, "%j"),
                               cluster=executor)
  parameters: dict[str, Any] = {"timeout_min": resources.timeout_min,
                                "name": name}
  # The workers import this checkout's jaxtransfer, whatever is installed.
  setup = [f"export PYTHONPATH={shlex.quote(PACKAGE_ROOT)}"
           "${PYTHONPATH:+:$PYTHONPATH}"]
  if executor == "local":
    # submitit's local jobs set CUDA_VISIBLE_DEVICES to their gpus_per_node
    # (none): give them the devices this command sees instead.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    setup.append("unset CUDA_VISIBLE_DEVICES" if visible is None else
                 f"export CUDA_VISIBLE_DEVICES={shlex.quote(visible)}")
  parameters[f"{executor}_setup"] = setup
  if executor == "slurm":
    parameters["slurm_partition"] = resources.partition
    parameters["slurm_array_parallelism"] = (resources.array_parallelism
                                             or count)
    for field, value in (("gpus_per_task", resources.gpus_per_task),
                         ("cpus_per_task", resources.cpus_per_task),
                         ("mem_gb", resources.mem_gb)):
      if value:  # (None or 0: the cluster's default)
        parameters[f"slurm_{field}"] = value
  made.update_parameters(**parameters)
  return made


def submit(config, workdir: str, *, executor: str, count: int,
           resources: Resources, fresh: bool = False,
           wait: bool | None = None) -> tuple[list[str], list[dict]]:
  """Checks the study, writes its plan, submits `count` workers; returns
  lines to print and the workers' outcomes (workers.work's, without the
  plan). `wait` (default: for the local executor) waits for them; without
  it there are no outcomes."""
  check_request(executor, count, resources)
  study = units.prepare(config, workdir, fresh)  # (writes nothing)
  workers.start(study, fresh)
  submission = workers.new_submission()
  folder = os.path.join(workdir, workers.STATE_DIR, SUBMITIT_DIR)
  made = executor_for(executor, folder, count, resources,
                      f"jaxtransfer-{os.path.basename(workdir)}")
  try:
    jobs = made.map_array(Worker(config, workdir, submission), range(count))
  except (submitit.core.utils.FailedJobError, OSError, RuntimeError) as e:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f"could not submit the workers ({executor}): {line}") \
        from None
  first = jobs[0].job_id.split("_")[0]
  lines = [f"submitted {count} worker(s) ({executor}, submission "
           f"{submission}): job {first}" + (
               f" array 0-{count - 1}" if executor == "slurm" else
               f" .. {jobs[-1].job_id}"),
           f"logs: {folder}/",
           f"progress: jaxtransfer study status {workdir}"]
  if not (executor == "local" if wait is None else wait):
    return lines, []
  failures, outcomes = [], []
  for index, job in enumerate(jobs):
    try:
      outcome = job.result()
      outcomes.append(outcome)
      lines.append(f"worker {index}: trained {', '.join(outcome['ran']) or 'nothing'}"
                   + (" and wrote the report" if outcome["report"] else ""))
    except Exception as e:  # pylint: disable=broad-except
      text = str(e).strip().splitlines()
      failures.append(f"worker {index} (job {job.job_id}): "
                      f"{text[-1] if text else type(e).__name__}")
  lines += workers.status(workdir)
  if failures:
    print("\n".join(lines), flush=True)
    raise UserError("; ".join(failures) + f" (logs: {folder}/)")
  return lines, outcomes

"""What `jaxtransfer analyze` reads and where it writes: the runs of a
study or the one run of a workdir, and the analysis directory."""

from __future__ import annotations

import json
import os

from jaxtransfer.core import checkpoints, registry, workdir as workdir_lib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import experiment

ANALYSIS_DIR = "analysis"


def run_dirs(workdir: str) -> list[tuple[str, str]]:
  """(name, run directory) of what to analyse: a study's finished arms in
  study order (a staged arm's last stage), or the run in `workdir`."""
  study_file = os.path.join(workdir, "study.json")
  if not os.path.exists(study_file):
    if workdir_lib.read_config(workdir) is None:
      raise UserError(f"{workdir} holds no jaxtransfer run or study")
    return [(os.path.basename(os.path.normpath(workdir)), workdir)]
  with open(study_file) as f:
    plan = json.load(f)
  found = []
  for arm in plan["arms"]:
    arm_dir = os.path.join(workdir, arm["name"])
    if workdir_lib.read_config(arm_dir) and (
        os.path.isdir(checkpoints.checkpoint_dir(arm_dir))
        or registry.run_kind_of(experiment.config_from_workdir(arm_dir))
        is not None):
      found.append((arm["name"], arm_dir))
  if not found:
    raise UserError(f"{workdir}: no arm of the study has a checkpoint yet")
  return found

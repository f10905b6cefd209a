"""A run's directory: what it holds, and the rule that nothing in it is lost.

  <workdir>/config.json     the run's config, written when the run starts
  <workdir>/metrics.jsonl   one JSON line per epoch
  <workdir>/checkpoints/    orbax checkpoints (see checkpoints.py)
  <workdir>/eval.json       the last `--mode=eval` result
  <workdir>/autoencoder/    the pre-trained autoencoder's own run (ae_init)
  <workdir>/archive/<time>/ earlier runs moved aside by --fresh

Resuming a workdir with a config that changes the experiment is refused;
`--fresh` moves the old run into archive/ instead of deleting anything.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any

from absl import logging

from jaxtransfer import configlib, distributed
from jaxtransfer.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
ARCHIVE_DIR = "archive"
RUN_ARTIFACTS = (CONFIG_FILE, METRICS_FILE, EVAL_FILE, "checkpoints",
                 "autoencoder")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat


def write_json_atomic(path: str, payload: Any) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(payload, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_config(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def archive_run(workdir: str) -> str | None:
  """Moves an existing run's files into <workdir>/archive/<time>/; returns it."""
  present = [name for name in RUN_ARTIFACTS
             if os.path.exists(os.path.join(workdir, name))]
  if not present:
    return None
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
  target = os.path.join(workdir, ARCHIVE_DIR, stamp)
  os.makedirs(target)
  for name in present:
    os.rename(os.path.join(workdir, name), os.path.join(target, name))
  logging.warning("--fresh: moved the previous run in %s to %s", workdir, target)
  return target


def prepare(workdir: str, config_dict: dict[str, Any], fresh: bool = False) -> None:
  """Creates the workdir, or checks that it holds a run of the same experiment.

  Fields in configlib.RESUMABLE_FIELDS may differ (e.g. more epochs); any
  other difference is refused with the fields that differ and the way out.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
  if not os.access(workdir, os.W_OK):
    raise UserError(f"workdir {workdir} is not writable")
  if fresh and distributed.is_primary():
    archive_run(workdir)
  distributed.barrier("workdir-archived")
  previous = read_config(workdir)
  if previous is not None:
    old = _flatten(configlib.identity(previous))
    new = _flatten(configlib.identity(config_dict))
    changed = configlib.differences(old, new)
    if changed:
      raise UserError(
          f"workdir {workdir} holds a run with a different config "
          f"({'; '.join(changed)}). Use a new --workdir, or pass --fresh to "
          f"move the old run to {os.path.join(workdir, ARCHIVE_DIR)}/ and "
          "start again")
  distributed.barrier("workdir-checked")
  if distributed.is_primary():
    write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_dict)


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def append_metrics(workdir: str, record: dict[str, Any]) -> None:
  with open(os.path.join(workdir, METRICS_FILE), "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def sync_metrics(workdir: str, history: list[dict[str, Any]]) -> None:
  """Makes metrics.jsonl hold exactly `history` (the restored checkpoint's).

  Lines past the checkpoint belong to epochs that will be trained again with
  the same data order and keys; they are dropped (and logged) so every epoch
  appears once.
  """
  if not distributed.is_primary():
    return
  current = read_metrics(workdir)
  if current == history:
    return
  dropped = [r.get("epoch") for r in current[len(history):]]
  if dropped:
    logging.warning("metrics.jsonl: epochs %s were not checkpointed and will "
                    "be trained again", dropped)
  path = os.path.join(workdir, METRICS_FILE)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    for record in history:
      f.write(json.dumps(record, sort_keys=True) + "\n")
  os.replace(tmp, path)

"""A run's directory: what it holds, and the rule that nothing in it is lost.

  <workdir>/config.json     the run's config, written when the run starts
  <workdir>/metrics.jsonl   one JSON line per epoch
  <workdir>/tensorboard/    the same scalars as TensorBoard event files
  <workdir>/checkpoints/    orbax checkpoints (see checkpoints.py)
  <workdir>/eval.json       the last `--mode=eval` result
  <workdir>/autoencoder/    the pre-trained autoencoder's own run (ae_init)
  <workdir>/archive/<time>/ earlier runs moved aside by --fresh
  <workdir>/.lock           who is writing to the workdir (one run at a time)
  <workdir>/provenance.json every `--mode=train` command run here: command,
                            config, commit, date (provenance.py); kept
                            across --fresh

Resuming a workdir with a config that changes the experiment is refused;
`--fresh` moves the old run into archive/ instead of deleting anything.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import re
import socket
import time
from typing import Any, Callable

from absl import logging

from jaxtransfer.core import configlib, distributed, registry
from jaxtransfer.core.errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
PROVENANCE_FILE = "provenance.json"
ARCHIVE_DIR = "archive"
TENSORBOARD_DIR = "tensorboard"
RUN_ARTIFACTS = (CONFIG_FILE, METRICS_FILE, EVAL_FILE, "checkpoints",
                 TENSORBOARD_DIR, "autoencoder")


# Fields that may change between a run and its resumption: they do not change
# the trajectory (more epochs extend it; where data lives is not what it is).
RESUMABLE_FIELDS = frozenset({
    "num_epochs", "keep_checkpoints", "log_every_steps", "progress_bar",
    "data_dir", "eval",  # how a run is evaluated is not what it trained
})

# Fields (dotted for nested ones) added after runs already existed, with the
# value that reproduces what those runs did: a stored config without such a field is the same run
# as a new config that has this value (so old workdirs still resume).
LEGACY_DEFAULTS: dict[str, Any] = {
    "model": "alexnet", "dropout": -1.0, "bn_momentum": -1.0, "train_split": "train",
    "val_split": "test", "stored_size": 0, "stored_resize": "crop",
    "classes": [], "class_fraction": {}, "normalization": "imagenet",
    "optimizer": "adam", "framework": "torch", "momentum": 0.9,
    "nesterov": False, "optimizer_kwargs": {}, "weight_decay": 0.0,
    "kernel_l2": 0.0, "bias_l2": 0.0, "l2_form": "squared", "kernel_l1": 0.0, "bias_l1": 0.0,
    "lr_schedule": "constant", "lr_step_epochs": 10, "lr_step_factor": 0.1,
    "lr_boundaries": [], "lr_values": [], "warmup_epochs": 0,
    "head": "", "adversarial": "", "train_sample": 0, "holdout_fraction": 0.0, "augment.brightness": 0.0,
    "augment.contrast": 0.0, "augment.saturation": 0.0, "augment.hue": 0.0,
    "augment.six_views": False, "augment.six_views_crop": 0.86,
    "augment.six_views_hue": [-0.45, 0.45],
    "augment.six_views_brightness": [0.7, 1.3],
    "augment.six_views_saturation": [0.4, 2.0],
    "augment.six_views_contrast": [0.5, 1.5], "augment.six_views_epoch": True,
    "augment.random_resized_crop": False, "augment.rrc_scale": [0.08, 1.0],
    "augment.rrc_ratio": [3.0 / 4.0, 4.0 / 3.0],
    "reinit": [],
    "corruption": "", "per_class_metrics": False, "low_level_skip": False, "resample": "", "arch": "", "encoder": "", "classifier": "",
    "joint.alpha": 1.0, "bias_init": "", "variants": [], "folds": 5,
    "fold": -1,
    "joint.beta": 1.0, "joint.delta": 0.0, "joint.jigsaw_grid": 2,
}
# ... and fields those runs had that are gone, with the value that the new
# fields above reproduce.
LEGACY_REMOVED: dict[str, Any] = {
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
}


def identity(config_dict: dict[str, Any]) -> dict[str, Any]:
  """The fields that define a run's trajectory (everything but RESUMABLE_FIELDS)."""
  return {k: v for k, v in config_dict.items() if k not in RESUMABLE_FIELDS}


def _with_legacy(flat: dict[str, Any]) -> dict[str, Any]:
  """A flattened config dict with the legacy values of the fields it lacks."""
  # A feature's own fields: their defaults are the feature's to declare
  # (registry.default), not this table's.
  legacy = {**LEGACY_DEFAULTS, **registry.defaults(), **LEGACY_REMOVED}
  return {**configlib.flatten(legacy), **flat}


def identity_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """`field: old -> new` for every field that defines a run and differs
  between two config dicts (to_dict's); empty if they are the same run.
  A field one of them lacks counts as its LEGACY_DEFAULTS / LEGACY_REMOVED
  value (a run from before the field existed)."""
  old, new = (_with_legacy(configlib.flatten(identity(c))) for c in (old, new))
  return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def safe_name(name: str) -> str:
  """A name as a directory name: runs of other characters become '_'."""
  return re.sub(r"[^A-Za-z0-9_.=+,-]+", "_", name)


REPORT_FILE = "report.md"  # a study's, or a run's, report


def write_lines(workdir: str, lines: list[str]) -> str:
  """<workdir>/report.md from markdown lines (atomically); returns its path."""
  path = os.path.join(workdir, REPORT_FILE)
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines).rstrip() + "\n")
  os.replace(tmp, path)
  return path


def write_json_atomic(path: str, payload: Any) -> None:
  """`path` as JSON, whole or not at all (a failed write leaves no file)."""
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      json.dump(payload, f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_outputs(write: Callable[[str], None], path: str,
                  what: str = "the result above") -> None:
  """write(path) for an output of a command whose result is already shown
  (an evaluation): a failure is one line naming the file, not a traceback."""
  try:
    write(path)
  except OSError as e:
    raise UserError(f"{what} is printed, but {path} could not be written "
                    f"({e.strerror or e})") from None


def read_config(workdir: str) -> dict[str, Any] | None:
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def archive_run(workdir: str, whole: bool = False) -> str | None:
  """Moves an existing run's files into <workdir>/archive/<time>/; returns it.

  `whole`: everything in the workdir but archive/ and the lock (a study:
  its plan, report and every arm's and source run's directory).
  """
  if whole:
    present = sorted(name for name in os.listdir(workdir)
                     if name not in (ARCHIVE_DIR, LOCK_FILE, PROVENANCE_FILE))
  else:
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


def _nearest_existing(path: str) -> str:
  while not os.path.exists(path):
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return path


def check(workdir: str, config_dict: dict[str, Any], fresh: bool = False) -> None:
  """Read-only: can a run of `config_dict` start or resume in `workdir`?

  The workdir must be (or be creatable as) a writable directory, and a run
  already in it must be of the same experiment: fields in
  RESUMABLE_FIELDS may differ (e.g. more epochs); any other
  difference is refused with the fields that differ and the way out. Nothing
  is written, so a refused run leaves the workdir as it was.
  """
  existing = _nearest_existing(os.path.abspath(workdir))
  if not os.path.isdir(existing):
    raise UserError(f"cannot use workdir {workdir}: {existing} is a file, not "
                    "a directory")
  if not os.access(existing, os.W_OK):
    raise UserError(f"workdir {workdir} is not writable ({existing} denies "
                    "writing)")
  if fresh:
    return
  previous = read_config(workdir)
  if previous is not None:
    changed = identity_changes(previous, config_dict)
    if changed:
      raise UserError(
          f"workdir {workdir} holds a run with a different config "
          f"({'; '.join(changed)}). Use a new --workdir, or pass --fresh to "
          f"move the old run to {os.path.join(workdir, ARCHIVE_DIR)}/ and "
          "start again")


@contextlib.contextmanager
def claim(workdir: str, config_dict: dict[str, Any], fresh: bool = False,
          whole: bool = False):
  """Holds the workdir for a run: creates it, takes its lock (one writer per
  workdir), and moves an old run to archive/ if `fresh` (all of the
  workdir's contents if `whole`: archive_run).

  Call `check` first: claim assumes the config fits the workdir.
  """
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
  with lock(workdir):
    if fresh and distributed.is_primary():
      archive_run(workdir, whole)
    distributed.barrier("workdir-claimed")
    yield


def record_config(workdir: str, config_dict: dict[str, Any]) -> None:
  """Writes config.json (if it changed): once the run has its starting state,
  so a run refused on the way leaves the old file as it was."""
  if distributed.is_primary() and read_config(workdir) != config_dict:
    write_json_atomic(os.path.join(workdir, CONFIG_FILE), config_dict)


LOCK_FILE = ".lock"
_held_locks: dict[str, list] = {}  # lock path -> [fd, depth], this process


class Busy(UserError):
  """The workdir's lock is held by another process (a run in progress)."""


@contextlib.contextmanager
def lock(workdir: str, wait: float = 0.0):
  """An exclusive lock on <workdir>/.lock (flock), re-entrant in a process.

  The kernel drops a flock when its process dies, SIGKILL included, so a
  killed run never leaves the workdir stuck. The file says who holds it.
  Only process 0 of a multi-process run locks (the others follow it).
  `wait`: seconds to keep trying while another process holds it (a short
  hold, such as a study's plan being written); then, or at once, Busy.
  """
  if not distributed.is_primary():
    yield
    return
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  if path in _held_locks:
    _held_locks[path][1] += 1
    try:
      yield
    finally:
      _held_locks[path][1] -= 1
    return
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  deadline = time.monotonic() + wait
  while True:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      break
    except BlockingIOError:
      if time.monotonic() < deadline:
        time.sleep(0.05)
        continue
      holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "?"
      os.close(fd)
      raise Busy(
          f"workdir {workdir} is in use by another run ({holder}); wait for "
          "it to finish or stop it, or use another --workdir") from None
  holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}")
  os.ftruncate(fd, 0)
  os.pwrite(fd, holder.encode() + b"\n", 0)
  _held_locks[path] = [fd, 1]
  try:
    yield
  finally:
    del _held_locks[path]
    os.close(fd)  # releases the flock


def is_locked(workdir: str) -> bool:
  """Whether a process holds <workdir>/.lock now (this one included): a
  probe that takes and drops the lock at once, and writes nothing."""
  path = os.path.join(os.path.abspath(workdir), LOCK_FILE)
  if path in _held_locks:
    return True
  try:
    fd = os.open(path, os.O_RDWR)  # (an exclusive flock over NFS needs it)
  except FileNotFoundError:
    return False
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return True
  finally:
    os.close(fd)  # (drops the probe's lock, if it got it)
  return False


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """The records of metrics.jsonl; a last line cut short by a kill is skipped
  (sync_metrics rewrites the file from the checkpoint on resume)."""
  path = os.path.join(workdir, METRICS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  for number, line in enumerate(lines, start=1):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if number < len(lines):
        raise UserError(f"{path}: line {number} is not JSON") from None
      logging.warning("%s: the last line is incomplete (a run was killed "
                      "while writing it); ignored", path)
  return records


def recorded_pixel_stats(record: dict[str, Any] | None):
  """The (mean, std) a metrics record says the inputs were normalised with
  (training.normalization_record), or None."""
  if not record or "input_mean" not in record:
    return None
  return tuple(record["input_mean"]), tuple(record["input_std"])


def run_pixel_stats(workdir: str):
  """The (mean, std) a finished or stopped run normalised its inputs with,
  from its last metrics record; None without 'dataset' normalisation."""
  records = read_metrics(workdir)
  return recorded_pixel_stats(records[-1] if records else None)


def append_metrics(workdir: str, record: dict[str, Any]) -> None:
  path = os.path.join(workdir, METRICS_FILE)
  try:
    with open(path, "a") as f:
      f.write(json.dumps(record, sort_keys=True) + "\n")
      f.flush()
      os.fsync(f.fileno())
  except OSError as e:
    raise UserError(f"could not write {path}: {e.strerror}; the checkpoint "
                    f"of epoch {record.get('epoch')} is saved, so rerunning "
                    "the same command rebuilds the file and goes on") from None


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

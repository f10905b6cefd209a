"""Orbax checkpoints of a run: the train state, the metrics history, the config.

One `CheckpointManager` per run under `<workdir>/checkpoints`, saving three
items per step: `state` (StandardSave: step, params, optimizer state, the
running epoch sums), `history` (JSON: every epoch record so far, so
metrics.jsonl can be rebuilt exactly from any checkpoint) and `config` (JSON).
Kept: the latest `keep` checkpoints plus the best by val_loss. Orbax writes
each step to a temporary directory and renames it when complete, so a run
killed mid-save never restores a partial checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging as std_logging
import os
from typing import Any

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxtransfer.core import distributed
from jaxtransfer.core.errors import UserError, brief

CHECKPOINT_SUBDIR = "checkpoints"
# The fields of a saved state a model's apply needs (load_variables).
VARIABLES = ("params", "batch_stats")


class _ReadOnlyNotices(std_logging.Filter):
  """Orbax warns every time a manager is opened read-only, which is how
  finished runs are inspected and checkpoints evaluated: expected, dropped."""

  def filter(self, record) -> bool:
    message = record.getMessage()
    return not ("read_only=True, setting save_interval_steps" in message
                or "Given directory is read only" in message)


std_logging.getLogger("absl").addFilter(_ReadOnlyNotices())


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)


def _preservation_policy(keep: int):
  return checkpoint_managers.AnyPreservationPolicy([
      checkpoint_managers.LatestN(keep),
      # BestN keeps the last n of an ascending sort: reverse=True keeps the
      # *lowest* val_loss. Checkpoints without metrics are LatestN's to keep.
      checkpoint_managers.BestN(
          get_metric_fn=lambda metrics: metrics["val_loss"], reverse=True, n=1,
          keep_checkpoints_without_metrics=False),
  ])


class RunCheckpoints:
  """The checkpoints of one run directory."""

  def __init__(self, workdir: str, keep: int = 2, read_only: bool = False):
    self.directory = checkpoint_dir(workdir)
    # Synchronous saves: the loop writes an epoch's metrics line only after
    # its checkpoint is complete, and a failed write (a full disk) is raised
    # at once, naming the step. Leftover temporary directories of a save cut
    # short by a kill are removed when the next run opens the directory.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=_preservation_policy(keep),
        create=not read_only, read_only=read_only,
        enable_async_checkpointing=False,
        cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(
        self.directory, item_names=("state", "history", "config"),
        options=options)

  def steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state, history: list[dict[str, Any]],
           config_dict: dict[str, Any], val_loss: float | None) -> None:
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            history=ocp.args.JsonSave(history),
            config=ocp.args.JsonSave(config_dict)),
        metrics=None if val_loss is None else {"val_loss": float(val_loss)},
        force=True)

  def restore(self, step: int, abstract_state) -> tuple[Any, list[dict]]:
    """(state, history) at `step`; `abstract_state` gives shapes and shardings."""
    if self._lacks_batch_stats(step, abstract_state):
      # Saved before BatchNorm statistics were part of the state (a model
      # without BatchNorm): restore the other fields, batch_stats stays {}.
      fields = {f.name: getattr(abstract_state, f.name)
                for f in dataclasses.fields(abstract_state)
                if f.name != "batch_stats"}
      restored = self._restore(step, ocp.args.Composite(
          state=ocp.args.StandardRestore(fields),
          history=ocp.args.JsonRestore()))
      state = type(abstract_state)(batch_stats={}, **restored.state)
      return state, list(restored.history)
    restored = self._restore(step, ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        history=ocp.args.JsonRestore()))
    return restored.state, list(restored.history)

  def _lacks_batch_stats(self, step: int, abstract_state) -> bool:
    if jax.tree.leaves(getattr(abstract_state, "batch_stats", None)):
      return False
    try:
      metadata = self._manager.item_metadata(step)["state"]
      keys = metadata.keys() if hasattr(metadata, "keys") else dict(metadata).keys()
      return "batch_stats" not in keys
    except Exception:  # pylint: disable=broad-except
      return False

  def _restore(self, step: int, args):
    """manager.restore, with a damaged or foreign checkpoint as a UserError."""
    try:
      return self._manager.restore(step, args=args)
    except Exception as e:  # orbax/tensorstore raise many types
      raise self._unrestorable(step, e) from e

  def _unrestorable(self, step: int, error: Exception) -> UserError:
    others = [s for s in self.steps() if s != step]
    shape_hint = ("; if it is a run of another model, use a new --workdir"
                  if "shape" in str(error).lower() else "")
    return UserError(
        f"checkpoint {self.directory}/{step} cannot be restored "
        f"({brief(error)}): it "
        f"is damaged, foreign, or of another model{shape_hint}. Move it out "
        f"of {self.directory} to use the previous one "
        f"({others[-1] if others else 'none left'})")

  def restore_history(self, step: int) -> list[dict[str, Any]]:
    restored = self._restore(
        step, ocp.args.Composite(history=ocp.args.JsonRestore()))
    return list(restored.history)

  def restore_config(self, step: int) -> dict[str, Any]:
    restored = self._restore(
        step, ocp.args.Composite(config=ocp.args.JsonRestore()))
    return dict(restored.config)

  def restore_variables(self, step: int) -> dict[str, Any]:
    """The saved state's `params` and `batch_stats` (those it has) as numpy
    arrays, without reading the rest: the optimizer's state is two thirds
    of an Adam run's checkpoint (a 2-seed alexnet_bn run's read 2.45x
    faster than the whole state, BENCHMARKS.md)."""
    step_path = ocp.path.step.build_step_path(
        self.directory, ocp.path.step.standard_name_format(), step)
    try:
      with ocp.StandardCheckpointer() as checkpointer:
        saved = checkpointer.metadata(step_path / "state").item_metadata
      wanted = {name: saved[name] for name in VARIABLES if name in saved}
    except Exception as e:  # orbax/tensorstore raise many types
      raise self._unrestorable(step, e) from e
    as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                            wanted)
    restored = self._restore(step, ocp.args.Composite(
        state=ocp.args.PyTreeRestore(wanted, restore_args=as_numpy,
                                     partial_restore=True)))
    return restored.state

  def best_step(self) -> int | None:
    """The kept step with the lowest val_loss, from the latest history."""
    latest = self.latest_step()
    if latest is None:
      return None
    kept = set(self.steps())
    losses: dict[int, list[float]] = {}
    for record in self.restore_history(latest):
      if record.get("step") in kept and record.get("val_loss") is not None:
        losses.setdefault(record["step"], []).append(record["val_loss"])
    if not losses:
      return latest
    # The same ranking as BestN: the mean over seeds of a step's val_loss.
    return min(losses, key=lambda step: (sum(losses[step]) / len(losses[step]), step))

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def find_run_dir(path: str) -> str:
  """Accepts a run's workdir or its checkpoints/ folder; returns the workdir."""
  path = os.path.abspath(os.path.expanduser(path))
  if os.path.basename(path) == CHECKPOINT_SUBDIR:
    path = os.path.dirname(path)
  if not os.path.isdir(checkpoint_dir(path)):
    raise UserError(f"no checkpoints found under {path} (expected a run's "
                    f"workdir containing {CHECKPOINT_SUBDIR}/)")
  return path


def load_variables(path: str) -> tuple[dict[str, Any], dict[str, Any], int]:
  """(params, batch_stats, step) of the latest checkpoint of the run at
  `path`, on the host, from one read; batch_stats is {} for a model without
  BatchNorm (or a run saved before they existed)."""
  run_dir = find_run_dir(path)
  store = RunCheckpoints(run_dir, read_only=True)
  try:
    step = store.latest_step()
    if step is None:
      raise UserError(f"{checkpoint_dir(run_dir)} holds no complete checkpoint")
    raw = store.restore_variables(step)
  finally:
    store.close()
  if "params" not in raw:
    raise UserError(f"checkpoint {checkpoint_dir(run_dir)}/{step} has no params")
  logging.info("Loaded parameters from %s step %d", run_dir, step)
  return (distributed.fetch(raw["params"]),
          distributed.fetch(raw.get("batch_stats") or {}), step)


def load_params(path: str) -> tuple[dict[str, Any], int]:
  """The parameters of the latest checkpoint of the run at `path`, on the host."""
  params, _, step = load_variables(path)
  return params, step


def load_batch_stats(path: str) -> dict[str, Any]:
  """The BatchNorm statistics of the latest checkpoint of the run at `path`."""
  return load_variables(path)[1]


def latest_step(workdir: str) -> int | None:
  """The step of the newest checkpoint in `workdir`, or None."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  store = RunCheckpoints(workdir, read_only=True)
  try:
    return store.latest_step()
  finally:
    store.close()


def finished_history(workdir: str, num_epochs: int
                     ) -> list[dict[str, Any]] | None:
  """The history of a run in `workdir` that already reached `num_epochs`
  (its newest checkpoint is the last epoch's), or None."""
  if not os.path.isdir(checkpoint_dir(workdir)):
    return None
  store = RunCheckpoints(workdir, read_only=True)
  try:
    latest = store.latest_step()
    if latest is None:
      return None
    history = store.restore_history(latest)
  finally:
    store.close()
  if history and history[-1]["epoch"] >= num_epochs and (
      history[-1]["step"] == latest):
    return history
  return None

"""A config file that is a workdir's stored config: what `--mode=eval`
overrides with `--config.field=value` when no --config is given (main.py
passes `--config=<this file>:<workdir>`)."""

from __future__ import annotations

import ml_collections

from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.core.errors import UserError


def read(workdir: str | None) -> dict:
  """The config dict stored in `workdir`, or a UserError saying there is none."""
  stored = workdir_lib.read_config(workdir) if workdir else None
  if stored is None:
    raise UserError(f"{workdir} has no {workdir_lib.CONFIG_FILE}: is it a "
                    "jaxtransfer workdir? Pass --config to evaluate anyway")
  return stored


def get_config(workdir: str | None = None) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(_tuples(read(workdir)))


def _tuples(value):
  """JSON's lists back to the tuples the config files use (the type absl's
  --config.field=value overrides parse by)."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value

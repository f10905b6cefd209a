"""Where a fresh run's parameters come from (`config.init`).

Order of precedence, as big_vision's train loop: a checkpoint in the workdir
(resume: handled by training.py, which then never calls this module), then a
pre-trained body, then random. Pre-trained weights replace the `body` subtree
of freshly initialised parameters *by name*; the head stays random. Every
source is a parameter tree with the body's names (conv1..conv5), so a new
source (ImageNet weights converted from torchvision, another classifier run)
is one more entry in `load_body_params`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from jaxtransfer import checkpoints, freezing
from jaxtransfer.errors import UserError

AUTOENCODER_SUBDIR = "autoencoder"


def autoencoder_run_dir(config, workdir: str) -> str:
  """config.ae_checkpoint, or the autoencoder that ae_init trains in the workdir."""
  return config.ae_checkpoint or os.path.join(workdir, AUTOENCODER_SUBDIR)


def load_body_params(config, workdir: str) -> tuple[dict[str, Any], str] | None:
  """(body parameter tree, description) for config.init, or None for random."""
  if config.init == "random":
    return None
  if config.init == "autoencoder":
    source = autoencoder_run_dir(config, workdir)
    if not os.path.exists(source):
      raise UserError(
          f"autoencoder checkpoint {source} does not exist (set "
          "config.ae_checkpoint to an autoencoder run's workdir, or leave it "
          "'' to pre-train one into <workdir>/autoencoder)")
    params, step = checkpoints.load_params(source)
    if "body" not in params:
      raise UserError(f"{source} is not an autoencoder run: its parameters "
                      f"have no 'body' (found {sorted(params)})")
    return params["body"], f"autoencoder {source} step {step}"
  raise UserError(f"config.init={config.init!r} is not supported")


def merge_body(fresh_params: dict[str, Any], body: dict[str, Any],
               source: str) -> dict[str, Any]:
  """fresh_params with its `body` replaced by `body`, names and shapes checked.

  Any mismatch (missing, extra or differently shaped arrays) is an error
  listing every offending path; nothing is loaded partially.
  """
  expected = dict(freezing.named_leaves(fresh_params["body"]))
  found = dict(freezing.named_leaves(body))
  problems = []
  for name in sorted(set(expected) | set(found)):
    if name not in found:
      problems.append(f"body/{name}: missing (expected {tuple(expected[name].shape)})")
    elif name not in expected:
      problems.append(f"body/{name}: unexpected {tuple(np.shape(found[name]))}")
    elif tuple(np.shape(found[name])) != tuple(expected[name].shape):
      problems.append(f"body/{name}: shape {tuple(np.shape(found[name]))}, "
                      f"expected {tuple(expected[name].shape)}")
  if problems:
    raise UserError(f"parameters from {source} do not fit the AlexNet body: "
                    + "; ".join(problems))
  body = jax.tree.map(
      lambda new, old: np.asarray(new, dtype=old.dtype), body,
      fresh_params["body"])
  return {**fresh_params, "body": body}

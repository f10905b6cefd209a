"""Where a fresh run's parameters come from (`config.init`).

Order of precedence, as big_vision's train loop: a checkpoint in the workdir
(resume: handled by training.py, which then never calls this module), then a
pre-trained body, then random. Pre-trained weights replace the `body` subtree
of freshly initialised parameters *by name*; the head stays random. Every
source is a parameter tree with the body's names (conv1..conv5), so a new
source (ImageNet weights converted from torchvision, another classifier run)
is one more entry in `load_pretrained`.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from absl import logging
from jaxtransfer import checkpoints, conversion, freezing
from jaxtransfer.errors import UserError

AUTOENCODER_SUBDIR = "autoencoder"


def autoencoder_run_dir(config, workdir: str) -> str:
  """config.ae_checkpoint, or the autoencoder that ae_init trains in the workdir."""
  return config.ae_checkpoint or os.path.join(workdir, AUTOENCODER_SUBDIR)


def load_pretrained(config, workdir: str) -> tuple[dict[str, Any], str] | None:
  """(parameter subtrees to load, description) for config.init; None = random.

  The tree always has `body`; it has `head` only for init='checkpoint',
  where the source run's head is reused if its shapes fit (same classes).
  """
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
    _require_body(params, source, "an autoencoder run")
    return {"body": params["body"]}, f"autoencoder {source} step {step}"
  if config.init == "imagenet":
    if not config.init_weights:
      raise UserError(
          "config.init='imagenet' needs config.init_weights=DIR holding "
          f"converted torchvision weights; make DIR with: "
          f"{conversion.CONVERT_COMMAND}")
    params = conversion.load_converted(config.init_weights)
    _require_body(params, config.init_weights, "converted AlexNet weights")
    return {"body": params["body"]}, f"ImageNet weights {config.init_weights}"
  if config.init == "checkpoint":
    if not config.init_weights:
      raise UserError("config.init='checkpoint' needs config.init_weights=the "
                      "workdir of a jaxtransfer classifier run")
    params, step = checkpoints.load_params(config.init_weights)
    _require_body(params, config.init_weights, "a classifier run")
    loaded = {"body": params["body"]}
    if "head" in params:
      loaded["head"] = params["head"]
    return loaded, f"checkpoint {config.init_weights} step {step}"
  raise UserError(f"config.init={config.init!r} is not supported")


def _require_body(params, source: str, what: str) -> None:
  if "body" not in params:
    raise UserError(f"{source} is not {what}: its parameters have no 'body' "
                    f"(found {sorted(params)})")


def _mismatches(prefix: str, expected_tree, found_tree) -> list[str]:
  expected = dict(freezing.named_leaves(expected_tree))
  found = dict(freezing.named_leaves(found_tree))
  problems = []
  for name in sorted(set(expected) | set(found)):
    if name not in found:
      problems.append(f"{prefix}/{name}: missing (expected "
                      f"{tuple(expected[name].shape)})")
    elif name not in expected:
      problems.append(f"{prefix}/{name}: unexpected {tuple(np.shape(found[name]))}")
    elif tuple(np.shape(found[name])) != tuple(expected[name].shape):
      problems.append(f"{prefix}/{name}: shape {tuple(np.shape(found[name]))}, "
                      f"expected {tuple(expected[name].shape)}")
  return problems


def _cast_like(loaded, fresh):
  return jax.tree.map(lambda new, old: np.asarray(new, dtype=old.dtype),
                      loaded, fresh)


def merge_pretrained(fresh_params: dict[str, Any], loaded: dict[str, Any],
                     source: str) -> dict[str, Any]:
  """fresh_params with `body` (and `head`, if given and it fits) replaced.

  The body must match by name and shape: any mismatch is an error listing
  every offending path, and nothing is loaded. A head of other shapes (another
  class count) is not loaded: the fresh head stays, and the log says so.
  """
  problems = _mismatches("body", fresh_params["body"], loaded["body"])
  if problems:
    raise UserError(f"parameters from {source} do not fit the AlexNet body: "
                    + "; ".join(problems))
  merged = {**fresh_params, "body": _cast_like(loaded["body"], fresh_params["body"])}
  if "head" in loaded and "head" in fresh_params:
    head_problems = _mismatches("head", fresh_params["head"], loaded["head"])
    if head_problems:
      logging.info("Head of %s not loaded (%s): it starts random", source,
                   "; ".join(head_problems))
    else:
      merged["head"] = _cast_like(loaded["head"], fresh_params["head"])
      logging.info("Head loaded from %s", source)
  return merged

"""Which parameters train: ordered (regex, trainable) rules over parameter paths.

As big_vision's `config.schedule`: a parameter's path ('body/conv5/kernel')
is matched against the rules in order and the first full match decides; every
parameter must match some rule. The optimizer is an `optax.multi_transform`
whose frozen branch is `optax.set_to_zero()`: frozen parameters carry no
optimizer state, and because their gradients are zeroed before any stateful
transform and never leave the jitted step, XLA drops their backward pass (a
test counts the convolutions in the compiled step).
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import jax
import optax

from jaxtransfer import models
from jaxtransfer.core.errors import UserError

Rules = Sequence[tuple[str, bool]]

# The seed study's three regimes (the `alexnet` model's presets; every model
# has its own in the registry).
PRESETS: dict[str, Rules] = {
    "none": ((".*", True),),
    "head": (("body/.*", False), ("head/.*", True)),
    "head+conv5": (("body/conv5/.*", True), ("body/.*", False),
                   ("head/.*", True)),
}

TRAINABLE, FROZEN = "trainable", "frozen"


def check_rules(rules: Any) -> None:
  """Rules must be a sequence of (regex, bool) pairs with valid regexes."""
  try:
    pairs = [(pattern, trainable) for pattern, trainable in rules]
  except (TypeError, ValueError):
    raise UserError(
        f"config.trainable_rules={rules!r}: expected ((regex, trainable), ...)"
    ) from None
  for pattern, trainable in pairs:
    if not isinstance(trainable, bool):
      raise UserError(f"config.trainable_rules: {pattern!r} needs True or "
                      f"False, got {trainable!r}")
    try:
      re.compile(pattern)
    except re.error as e:
      raise UserError(f"config.trainable_rules: bad regex {pattern!r}: {e}") from None


def resolve_rules(config) -> Rules:
  """config.trainable_rules if given, else the preset named by config.freeze
  among the model's (models.ModelSpec.freeze_presets)."""
  if config.trainable_rules is not None:
    check_rules(config.trainable_rules)
    return tuple((p, t) for p, t in config.trainable_rules)
  presets = models.get_spec(config.get("model", "alexnet")).freeze_presets
  if config.freeze not in presets:
    raise UserError(f"config.freeze={config.freeze!r} is not one of "
                    f"{', '.join(presets)}")
  return presets[config.freeze]


def path_name(path) -> str:
  """'body/conv1/kernel' for a pytree key path."""
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def named_leaves(tree) -> list[tuple[str, Any]]:
  return [(path_name(p), leaf)
          for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def trainable_mask(params, rules: Rules):
  """A pytree of bools like `params`: True where the parameter trains."""
  compiled = [(re.compile(pattern), trainable) for pattern, trainable in rules]
  unmatched = []

  def decide(path, _):
    name = path_name(path)
    for regex, trainable in compiled:
      if regex.fullmatch(name):
        return trainable
    unmatched.append(name)
    return False

  mask = jax.tree_util.tree_map_with_path(decide, params)
  if unmatched:
    raise UserError(
        f"freezing rules {list(rules)} match no rule for parameters "
        f"{unmatched}: every parameter must match one")
  return mask


def make_optimizer(base: optax.GradientTransformation, mask):
  """`base` on trainable parameters; frozen ones get zero updates and no state."""
  labels = jax.tree.map(lambda t: TRAINABLE if t else FROZEN, mask)
  return optax.multi_transform(
      {TRAINABLE: base, FROZEN: optax.set_to_zero()}, labels)


def apply_updates(params, updates, mask):
  """params + updates on trainable leaves; frozen leaves are passed through.

  Not `optax.apply_updates`: adding a zero would turn -0.0 into +0.0 and cost
  a pass over the frozen weights; passing them through keeps them bit-identical.
  """
  return jax.tree.map(lambda p, u, t: p + u.astype(p.dtype) if t else p,
                      params, updates, mask)


def count_parameters(params, mask) -> tuple[int, int]:
  """(trainable, total) parameter counts."""
  sizes = jax.tree.map(lambda p: p.size, params)
  total = sum(jax.tree.leaves(sizes))
  trainable = sum(s for s, t in zip(jax.tree.leaves(sizes), jax.tree.leaves(mask)) if t)
  return trainable, total

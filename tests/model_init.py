"""A model's variables for a test, initialised as a run initialises them.

Flax's `model.init(...)` called eagerly compiles every random op of every
shape on its own (threefry, uniform, truncated normal, ...) at XLA's
default optimisation level: ~0.5 s each on a 2-core CPU, seconds per model.
`init_variables` compiles the whole initialisation once, at the level a
run's own initialisation is compiled at (run_setup.RUN_ONCE), whose values
are the default level's bit for bit (tests/test_initializers.py checks it).
Jitted and eager draws can differ in the last bit (random_normal does;
docs/testing.md says where), so a test that compares against an eager
computation draws both the same way.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from jaxtransfer.engine import run_setup


def init_variables(model, rng, *inputs, **kwargs):
  """`model.init(rng, *inputs, **kwargs)`, compiled once at the run-once
  level. Arrays are traced; everything else (`train=False`, a positional
  False) is static, as eagerly. A model, its inputs' shapes and the static
  arguments compile once per test process."""
  leaves, treedef = jax.tree.flatten((inputs, kwargs))
  traced = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
  static = tuple((True, None) if t else (False, leaf)
                 for leaf, t in zip(leaves, traced))
  arrays = [leaf for leaf, t in zip(leaves, traced) if t]
  return _init(model, treedef, static, rng, arrays)


@functools.partial(jax.jit, static_argnums=(0, 1, 2),
                   compiler_options=run_setup.RUN_ONCE)
def _init(model, treedef, static, rng, arrays):
  arrays = iter(arrays)
  leaves = [next(arrays) if is_traced else leaf for is_traced, leaf in static]
  inputs, kwargs = jax.tree.unflatten(treedef, leaves)
  return model.init(rng, *inputs, **kwargs)

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
  return _compiled(_init, model, rng, *inputs, **kwargs)


def apply(model, variables, *inputs, **kwargs):
  """`model.apply(variables, *inputs, **kwargs)` as one jitted program (as
  the training and evaluation steps run it), at XLA's default level: the
  same static/traced split as init_variables. Eagerly, each op of the
  model would compile on its own."""
  return _compiled(_apply, model, variables, *inputs, **kwargs)


def _compiled(jitted, model, first, *inputs, **kwargs):
  """jitted(model, treedef, static, first, arrays): the arrays among
  (inputs, kwargs) traced, the rest static."""
  leaves, treedef = jax.tree.flatten((inputs, kwargs))
  traced = [isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves]
  static = tuple((True, None) if t else (False, leaf)
                 for leaf, t in zip(leaves, traced))
  arrays = [leaf for leaf, t in zip(leaves, traced) if t]
  return jitted(model, treedef, static, first, arrays)


def _call(method, model, treedef, static, first, arrays):
  arrays = iter(arrays)
  leaves = [next(arrays) if is_traced else leaf for is_traced, leaf in static]
  inputs, kwargs = jax.tree.unflatten(treedef, leaves)
  return getattr(model, method)(first, *inputs, **kwargs)


_init = jax.jit(functools.partial(_call, "init"), static_argnums=(0, 1, 2),
                compiler_options=run_setup.RUN_ONCE)
_apply = jax.jit(functools.partial(_call, "apply"), static_argnums=(0, 1, 2))

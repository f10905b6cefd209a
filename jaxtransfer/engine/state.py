"""What a run holds and how its model runs: the train state, the PRNG keys,
the static Setup the jitted functions close over, the device mesh, the
model's forward pass, and the mapping of a one-model function over the
stacked models (`over_seeds`). steps.py and attacks.py build on it."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np
import optax

from jaxtransfer.core.errors import UserError
from jaxtransfer.data import augment
from jaxtransfer.engine import variants


@flax.struct.dataclass
class TrainState:
  """One model's state; the loop holds a stack of them (leading seed axis)."""
  step: jax.Array  # global step (int32); epoch = step // steps_per_epoch
  params: Any
  batch_stats: Any  # BatchNorm running statistics ({} for models without)
  opt_state: Any
  metric_sums: dict[str, jax.Array]  # sums over the current epoch's steps
  nonfinite_step: jax.Array  # first step whose loss was not finite, or -1


@dataclasses.dataclass(frozen=True)
class RunKeys:
  """All randomness of a run: one key per seed for each use, stacked."""
  init: jax.Array
  data: jax.Array
  augment: jax.Array

  @classmethod
  def from_seeds(cls, seeds, sharding=None) -> "RunKeys":
    """Keys for each seed; with a sharding, as global arrays (needed when the
    run spans several processes)."""
    def make():
      split = jnp.stack([jax.random.split(jax.random.key(s), 3) for s in seeds])
      return split[:, 0], split[:, 1], split[:, 2]
    if sharding is not None:
      make = jax.jit(make, out_shardings=sharding)
    return cls(*make())


def seeds_of(config) -> list[int]:
  """The seed of every model on the run's model axis: config.seed + k, or
  each variant's seeds in turn (variants.py)."""
  return variants.model_seeds(config)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What the step functions close over: static for the whole run."""
  model: Any
  task: Any
  tx: optax.GradientTransformation
  schedule: Callable[[Any], Any]  # step -> learning rate
  trainable: Any  # pytree of Python bools, like one model's params
  augment: augment.AugmentOptions
  image_size: int
  channels: int  # what the model takes; stored images are adapted to it
  mean: tuple[float, ...]
  std: tuple[float, ...]
  dtype: Any
  batch_size: int
  steps_per_epoch: int
  mesh: jax.sharding.Mesh
  seed_parallelism: str = "vmap"  # resolved: 'vmap' or 'unroll'
  # The body is frozen and nothing is augmented: the steps see body features
  # computed once (per seed), not images, and run the head alone.
  feature_cache: bool = False
  # Keras-style penalty on the weights (None: no regulariser configured).
  regularizer: Callable[[Any], jax.Array] | None = None
  # config.adversarial parsed: each training batch is replaced by this
  # attack on the current model (attacks.adversarial_inputs); None: off.
  adversarial: Any = None  # an attacks.Attack
  # Every model's step scalars (learning rate, weight decay, regulariser
  # strengths, loss weights: variants.Hyper) and the optimizer built from one
  # model's (`tx` is model 0's, for the state's structure).
  hyper: variants.Hyper | None = None
  make_tx: Callable[[dict], optax.GradientTransformation] | None = None
  # K-fold with all folds side by side: each model's evaluation set is its
  # own fold (stacked on the model axis: steps.stacked_eval_set).
  per_model_eval: bool = False

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  @property
  def batch_sharded(self) -> NamedSharding:
    return NamedSharding(self.mesh, P("data"))


def make_mesh(batch_size: int, what: str = "batch_size") -> jax.sharding.Mesh:
  """A 1-D mesh over all devices; the batch is split along its 'data' axis."""
  devices = jax.devices()
  if batch_size % len(devices):
    raise UserError(f"config.{what}={batch_size} does not divide by the "
                    f"{len(devices)} devices")
  return jax.sharding.Mesh(np.asarray(devices), ("data",))


def forward(setup: Setup, params, batch_stats, inputs, train: bool = False,
            dropout_key=None):
  """(outputs, new batch_stats): the model on its inputs (the head alone on
  cached features). In training mode BatchNorm uses and updates the batch's
  statistics (frozen BatchNorm layers excepted) and dropout is on."""
  variables = {"params": params}
  if batch_stats:
    variables["batch_stats"] = batch_stats
  kwargs = {"method": "classify_features"} if setup.feature_cache else {}
  if train and dropout_key is not None:
    kwargs["rngs"] = {"dropout": dropout_key}
  if train and batch_stats:
    outputs, updated = setup.model.apply(variables, inputs, train=True,
                                         mutable=["batch_stats"], **kwargs)
    return outputs, updated["batch_stats"]
  return setup.model.apply(variables, inputs, train=train, **kwargs), batch_stats


def resolve_seed_parallelism(choice: str) -> str:
  """'auto': 'vmap' on accelerators; 'unroll' on the CPU, where XLA lowers a
  vmapped convolution with per-seed kernels to a grouped convolution that
  runs ~3.7x slower than separate ones (BENCHMARKS.md)."""
  if choice != "auto":
    return choice
  return "unroll" if jax.default_backend() == "cpu" else "vmap"


def over_seeds(fn: Callable, in_axes: tuple, strategy: str) -> Callable:
  """fn for one model -> fn over a leading seed axis (arguments with axis 0).

  'vmap' batches the models into one set of kernels; 'unroll' traces fn once
  per seed into the same program. Both give one compiled program and the
  same results as each seed run alone.
  """
  if strategy == "vmap":
    return jax.vmap(fn, in_axes=in_axes)

  def unrolled(*args):
    num_seeds = {jax.tree.leaves(a)[0].shape[0]
                 for a, axis in zip(args, in_axes) if axis == 0}.pop()
    outputs = [
        fn(*(jax.tree.map(lambda x, i=i: x[i], a) if axis == 0 else a
             for a, axis in zip(args, in_axes)))
        for i in range(num_seeds)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)

  return unrolled

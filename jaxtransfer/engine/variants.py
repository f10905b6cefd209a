"""Vectorised sweeps: many models in one compiled program.

The seeds of a run already train side by side (a leading model axis, one
program). A sweep extends that axis to arms that differ only in what
changes the initial parameters or a scalar of the step (VECTOR_FIELDS):

  seed, kernel_init, bias_init         the initial parameters
  learning_rate, weight_decay          the optimizer (per model, as the
  kernel_l1/l2, bias_l1/l2             regulariser and loss weights)
  joint.alpha, joint.beta

`config.variants` lists them: ({'name': 'he_normal', 'kernel_init':
'he_normal', 'bias_init': 'he_normal'}, ...), each a named set of overrides
of those fields; the run trains len(variants) x num_seeds models, variant-
major (variant v's seed k is model v * num_seeds + k, seeded variant.seed
(or config.seed) + k). `config.study.vectorize=True` makes a study group
its arms this way (study/vectorize.py). Anything else that differs (the
model, the data, the optimizer's kind, the schedule's shape, whether
weight decay is on at all) changes the program: such arms stay separate.

How the models run side by side follows config.seed_parallelism:
  unroll (the CPU's default) traces the step once per model with that
         model's own Python scalars: model k computes exactly what its arm
         computes alone, bit for bit (tests/test_sweeps.py).
  vmap   one batched step; the scalars that differ between models become
         arrays of the model axis (those that agree stay Python numbers), so
         model k matches its arm alone to float tolerance. Only the swept
         scalars are traced: optax's inject_hyperparams would also turn
         Adam's b1/b2/eps into float32 arrays, which changes Adam's
         arithmetic against the plain optimizer (optax issue 1532); here
         those stay Python numbers as in a single run.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import optimizers

INIT_FIELDS = ("seed", "kernel_init", "bias_init")
STEP_FIELDS = ("learning_rate", "weight_decay", "kernel_l1", "kernel_l2",
               "bias_l1", "bias_l2", "joint.alpha", "joint.beta")
VECTOR_FIELDS = INIT_FIELDS + STEP_FIELDS
REGULARIZERS = ("kernel_l1", "kernel_l2", "bias_l1", "bias_l2")
# Data fields whose selection of examples depends on config.seed: with any
# of them set, variants cannot change the seed (they would need other data).
SEEDED_DATA = ("class_fraction", "train_sample", "resample")


def get_field(config, field: str):
  """config['a']['b'] for 'a.b' (a dict or a ConfigDict); KeyError if
  missing (configlib.get_dotted is the lenient reader of stored configs)."""
  node = config
  for part in field.split("."):
    node = node[part]
  return node


def set_field(config, field: str, value) -> None:
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def variants(config) -> tuple[dict[str, Any], ...]:
  """config.variants as dicts ((): a plain run)."""
  raw = config.get("variants", ()) or ()
  for i, v in enumerate(raw):
    if not (isinstance(v, dict) or hasattr(v, "to_dict")):
      raise UserError(f"config.variants[{i}]={v!r}: expected a dict of field "
                      "overrides with a 'name'")
  return tuple(dict(v.to_dict() if hasattr(v, "to_dict") else v) for v in raw)


def variant_configs(config) -> list[ml_collections.ConfigDict]:
  """One config per variant (the run's own when it has none): the run's
  config with the variant's overrides and no variants."""
  listed = variants(config)
  if not listed:
    return [config]
  out = []
  for variant in listed:
    one = ml_collections.ConfigDict(config.to_dict())
    one.variants = ()
    for field, value in variant.items():
      if field != "name":
        set_field(one, field, value)
    out.append(one)
  return out


def variant_names(config) -> list[str]:
  return [v["name"] for v in variants(config)] or [""]


def replicas(config) -> int:
  """Models per variant: config.num_seeds, or with k-fold cross-validation
  of all folds side by side (kfold.py) one per fold."""
  if config.get("validation", "test") == "kfold" and int(
      config.get("fold", -1)) < 0:
    return int(config.folds)
  return int(config.num_seeds)


def model_seeds(config) -> list[int]:
  """The seed of every model on the axis, variant-major."""
  return [int(c.seed) + k for c in variant_configs(config)
          for k in range(replicas(config))]


def model_variants(config) -> list[str]:
  """The variant name of every model on the axis ('' for a plain run)."""
  return [name for name in variant_names(config)
          for _ in range(replicas(config))]


@dataclasses.dataclass(frozen=True)
class Hyper:
  """Every model's step scalars (Python floats), in model order."""
  per_model: tuple[dict[str, float], ...]

  @classmethod
  def from_config(cls, config) -> "Hyper":
    fields = [f for f in STEP_FIELDS
              if not f.startswith("joint.") or config.task == "joint"]
    return cls(tuple({f: float(get_field(c, f)) for f in fields}
                     for c in variant_configs(config)
                     for _ in range(replicas(config))))

  @property
  def varying(self) -> tuple[str, ...]:
    first = self.per_model[0]
    return tuple(f for f in first
                 if any(m[f] != first[f] for m in self.per_model))

  def shared(self) -> dict[str, float]:
    return {f: v for f, v in self.per_model[0].items()
            if f not in self.varying}

  def stacked(self) -> dict[str, jax.Array]:
    return {f: jnp.asarray([m[f] for m in self.per_model], jnp.float32)
            for f in self.varying}


def over_models(fn: Callable, in_axes: tuple, strategy: str,
                hyper: Hyper) -> Callable:
  """fn(hyper_dict, *args) for one model -> fn over the model axis (the
  arguments with axis 0), as steps.over_seeds, with each model's scalars.

  'unroll' passes model k's own Python scalars (its trace is its arm's
  alone); 'vmap' passes the scalars that agree as Python numbers and those
  that differ as the model's slice of an array.
  """
  if strategy == "vmap":
    shared, stacked = hyper.shared(), hyper.stacked()

    def one(varying, *args):
      return fn({**shared, **varying}, *args)

    return lambda *args: jax.vmap(one, in_axes=(0, *in_axes))(stacked, *args)

  def unrolled(*args):
    outputs = [
        fn(scalars, *(jax.tree.map(lambda x, i=i: x[i], a) if axis == 0 else a
                      for a, axis in zip(args, in_axes)))
        for i, scalars in enumerate(hyper.per_model)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)

  return unrolled


def init_groups(config) -> list[tuple[ml_collections.ConfigDict, slice]]:
  """(variant config, its models' slice of the axis) per run of variants
  with the same initialisers, in order: what init_state builds each with."""
  groups: list[tuple[Any, slice]] = []
  seeds = replicas(config)
  for v, one in enumerate(variant_configs(config)):
    key = (one.kernel_init, one.get("bias_init", ""))
    if groups and (groups[-1][0].kernel_init,
                   groups[-1][0].get("bias_init", "")) == key:
      groups[-1] = (groups[-1][0], slice(groups[-1][1].start, (v + 1) * seeds))
    else:
      groups.append((one, slice(v * seeds, (v + 1) * seeds)))
  return groups


def validate(config) -> None:
  """config.variants: named, unique, only VECTOR_FIELDS, and weight decay on
  for all or none (it is a stage of the optimizer's state)."""
  listed = variants(config)
  if not listed:
    return
  names = []
  for i, variant in enumerate(listed):
    name = variant.get("name")
    if not isinstance(name, str) or not name or "/" in name:
      raise UserError(f"config.variants[{i}]: needs a 'name' (a non-empty "
                      "string without '/')")
    if name in names:
      raise UserError(f"config.variants: the name {name!r} appears twice")
    names.append(name)
    other = [f for f in variant if f != "name" and f not in VECTOR_FIELDS]
    if other:
      raise UserError(
          f"config.variants[{i}] ({name}): {other[0]!r} cannot vary inside "
          f"one program (only {', '.join(VECTOR_FIELDS)}): make it a "
          "separate run")
    if "seed" in variant and any(config.get(f) for f in SEEDED_DATA):
      raise UserError(
          f"config.variants[{i}] ({name}): 'seed' cannot vary with "
          f"{'/'.join(SEEDED_DATA)} set (the seed picks the examples)")
  decays = {float(c.weight_decay) > 0 for c in variant_configs(config)}
  if len(decays) > 1:
    raise UserError("config.variants: weight_decay is 0 in some variants and "
                    "positive in others; it is a stage of the optimizer "
                    "(split them into two runs)")


def learning_rates(config, steps_per_epoch: int, step: int) -> list[float]:
  """Every model's learning rate at `step` (host side, for the records)."""
  rates = [optimizers.learning_rate_at(
      optimizers.make_schedule(c, steps_per_epoch), step)
           for c in variant_configs(config)]
  return [rate for rate in rates for _ in range(replicas(config))]


def split_models(tree, config) -> dict[str, Any]:
  """A stacked tree [models, ...] -> {variant name: its [num_seeds, ...]}."""
  seeds = replicas(config)
  return {name: jax.tree.map(lambda a, v=v: np.asarray(a)[v * seeds:
                                                          (v + 1) * seeds],
                             tree)
          for v, name in enumerate(variant_names(config))}

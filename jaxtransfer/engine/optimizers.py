"""Optimizers, learning-rate schedules and Keras-style regularisers from a config.

`make_optimizer(config, steps_per_epoch)` returns the base optax transformation
(which `freezing.make_optimizer` applies to trainable parameters only, so
neither the update nor the weight decay ever touches a frozen parameter) and
the learning-rate schedule in steps. Defaults follow `config.framework`:
'torch' for the PyTorch seeds (000-002), 'keras' for the Keras seed (004);
`config.optimizer_kwargs` overrides any argument of the optax constructor.

Defaults (optax argument: torch / keras; source argument in brackets):

  adam     optax.adam     b1 0.9 / 0.9; b2 0.999 / 0.999   [Adam betas | beta_1,
                          eps 1e-8 / 1e-7                   beta_2, epsilon]
  adamw    optax.adamw    as adam; weight_decay = config.weight_decay
                          (decoupled)                      [AdamW, as Adam]
  sgd      optax.sgd      momentum = config.momentum (0: none),
                          nesterov = config.nesterov       [SGD, dampening 0]
  rmsprop  optax.rmsprop  decay 0.99 / 0.9                 [alpha | rho]
                          eps 1e-8 / 1e-7                  [eps | epsilon]
                          eps_in_sqrt False / True         [see below]
                          momentum none / none             [momentum 0 | 0.0]
  adagrad  optax.adagrad  initial_accumulator_value 0 / 0.1
                          eps 1e-10 / 1e-7                 [Adagrad, same names]

The numbers are the constructors' defaults in torch 2.x (`torch.optim.Adam`,
`AdamW`, `SGD`, `RMSprop`, `Adagrad`) and Keras 3 (`keras/src/optimizers/*.py`;
tf.keras 2.11-2.15's `keras/optimizers/*.py` have the same). Learning rates
come from `config.learning_rate` and the schedule, never the framework.

Weight decay (`config.weight_decay`): adamw decouples it (p -= lr*wd*p beside
the Adam step, as torch's and Keras' AdamW); every other optimizer adds it to
the gradient first (g + wd*p, PyTorch's coupled L2: optax.add_decayed_weights
chained before the optimizer), also under framework='keras' (Keras' own
`weight_decay=` argument is decoupled; its L2 is `kernel_l2` below).

Where optax and the frameworks differ (optax 0.2.8's `optax/_src`):
  * adam/adamw, keras: Keras adds epsilon to sqrt(v) before bias correction
    ("epsilon hat": p -= lr*sqrt(1-b2^t)/(1-b1^t) * m/(sqrt(v)+eps)); optax
    and torch add it after (p -= lr * m_hat/(sqrt(v_hat)+eps)). Keras is thus
    optax with eps/sqrt(1-b2^t): 3.2e-6 at step 1, 1.3e-7 at step 1000.
    Only visible where |grad| is near that size.
  * rmsprop, torch: exact (eps outside the sqrt, eps_in_sqrt=False). keras:
    exact for Keras 3 and tf.keras >= 2.11 (lr*g/sqrt(v+eps), eps_in_sqrt=True).
    tf.keras <= 2.10 (optimizer_v2, momentum 0) put eps outside: set
    optimizer_kwargs.eps_in_sqrt=False for that.
  * adagrad: optax's `scale_by_rss` uses g/sqrt(S+eps) (and 0 where S == 0).
    keras: exact for Keras 3 and tf.keras >= 2.11 (g/sqrt(S+eps)); tf.keras
    <= 2.10 (ResourceApplyAdagradV2) used g/(sqrt(S)+eps). torch uses
    g/(sqrt(S)+eps): optax matches it to float32 precision while S >> eps =
    1e-10 (|grad| >> 1e-5) and gives smaller steps below that (1/sqrt(2) of
    torch's when S == eps).
  * sgd, keras: Keras keeps lr inside its momentum buffer (m = mu*m - lr*g;
    p += m); optax and torch outside (v = mu*v + g; p -= lr*v). The same
    while the learning rate is constant; after a schedule drop Keras' old
    momentum still carries the old rate.
  * rmsprop with optimizer_kwargs.momentum: optax scales by lr before the
    momentum trace (as Keras), torch after: the same at a constant rate.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxtransfer.core.errors import UserError

FRAMEWORKS = ("torch", "keras")
REGULARIZERS = ("kernel_l2", "kernel_l1", "bias_l2", "bias_l1")
L2_FORMS = ("squared", "norm")  # l2 * sum(w^2) (Keras) or l2 * ||w||_2 per tensor


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """An optax optimizer, its defaults per framework and its weight decay."""
  name: str
  constructor: Callable[..., optax.GradientTransformation]
  defaults: Mapping[str, Mapping[str, Any]]  # framework -> constructor kwargs
  # 'coupled': g + wd*p before the optimizer; 'decoupled': the constructor's
  # own `weight_decay` argument (p -= lr*wd*p).
  weight_decay: str = "coupled"
  # Constructor kwargs taken from other config fields (sgd's momentum).
  from_config: Callable[[Any], dict[str, Any]] | None = None

  def accepted(self) -> tuple[str, ...]:
    """The constructor's argument names that optimizer_kwargs may set."""
    return tuple(n for n in inspect.signature(self.constructor).parameters
                 if n != "learning_rate")


def _sgd_from_config(config) -> dict[str, Any]:
  # momentum 0: no trace in the state, as torch's SGD keeps no buffer.
  return {"momentum": float(config.momentum) or None,
          "nesterov": bool(config.nesterov)}


_ADAM = {"torch": {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
         "keras": {"b1": 0.9, "b2": 0.999, "eps": 1e-7}}

OPTIMIZERS: dict[str, OptimizerSpec] = {
    "adam": OptimizerSpec("adam", optax.adam, _ADAM),
    "adamw": OptimizerSpec(
        "adamw", optax.adamw, _ADAM, weight_decay="decoupled",
        from_config=lambda config: {"weight_decay": float(config.weight_decay)}),
    "sgd": OptimizerSpec("sgd", optax.sgd, {"torch": {}, "keras": {}},
                         from_config=_sgd_from_config),
    "rmsprop": OptimizerSpec(
        "rmsprop", optax.rmsprop,
        {"torch": {"decay": 0.99, "eps": 1e-8, "eps_in_sqrt": False},
         "keras": {"decay": 0.9, "eps": 1e-7, "eps_in_sqrt": True}}),
    "adagrad": OptimizerSpec(
        "adagrad", optax.adagrad,
        {"torch": {"initial_accumulator_value": 0.0, "eps": 1e-10},
         "keras": {"initial_accumulator_value": 0.1, "eps": 1e-7}}),
}


# ----------------------------------------------------------------- schedules
# Each maps (config, steps_per_epoch, warmup_steps, learning_rate) to a
# schedule of the absolute step, used from warmup_steps on (make_schedule
# adds the warmup). learning_rate is config.learning_rate, or one model's
# rate in a vectorised sweep (a traced scalar under vmap).

def _constant(config, steps_per_epoch: int, warmup_steps: int,
              learning_rate) -> optax.Schedule:
  return optax.constant_schedule(learning_rate)


def _step(config, steps_per_epoch: int, warmup_steps: int,
          learning_rate) -> optax.Schedule:
  """learning_rate * lr_step_factor ** (epoch // lr_step_epochs)."""
  return optax.exponential_decay(
      init_value=learning_rate,
      transition_steps=int(config.lr_step_epochs) * steps_per_epoch,
      decay_rate=float(config.lr_step_factor), staircase=True)


def _piecewise(config, steps_per_epoch: int, warmup_steps: int,
               learning_rate) -> optax.Schedule:
  """lr_values[i] for epochs in [lr_boundaries[i-1], lr_boundaries[i]).

  config.learning_rate is not used: lr_values[0] is the first rate. The
  values are taken as given (no products of scales), so each is exact.
  """
  boundaries = np.asarray([int(b) * steps_per_epoch for b in config.lr_boundaries],
                          np.int32)
  values = np.asarray(config.lr_values, np.float32)
  return lambda step: jnp.asarray(values)[
      jnp.searchsorted(boundaries, step, side="right")]


def _cosine(config, steps_per_epoch: int, warmup_steps: int,
            learning_rate) -> optax.Schedule:
  """From learning_rate at the end of warmup to 0 at the end of training."""
  decay_steps = max(int(config.num_epochs) * steps_per_epoch - warmup_steps, 1)
  cosine = optax.cosine_decay_schedule(learning_rate, decay_steps)
  return lambda step: cosine(step - warmup_steps)


SCHEDULES: dict[str, Callable[..., optax.Schedule]] = {
    "constant": _constant,
    "step": _step,
    "piecewise": _piecewise,
    "cosine": _cosine,
}


def make_schedule(config, steps_per_epoch: int,
                  learning_rate=None) -> optax.Schedule:
  """The learning rate at each optimizer step (epoch e = step // steps_per_epoch).

  With warmup_epochs > 0 the rate rises linearly from 0 (at step 0) to the
  schedule's rate at the end of the warmup; the schedule's epochs
  (lr_boundaries, lr_step_epochs) stay counted from the start of training,
  while 'cosine' decays over the epochs after the warmup. `learning_rate`
  replaces config.learning_rate (a vectorised sweep's per-model rate).
  """
  if steps_per_epoch < 1:
    raise ValueError(f"steps_per_epoch={steps_per_epoch} must be at least 1")
  _check_choice(config, "lr_schedule", tuple(SCHEDULES))
  if learning_rate is None:
    learning_rate = float(config.learning_rate)
  warmup_steps = int(round(float(config.warmup_epochs) * steps_per_epoch))
  schedule = SCHEDULES[config.lr_schedule](config, steps_per_epoch,
                                           warmup_steps, learning_rate)
  if warmup_steps <= 0:
    return schedule
  peak = schedule(warmup_steps)
  if not isinstance(peak, jax.core.Tracer):
    peak = float(peak)
  ramp = optax.linear_schedule(0.0, peak, warmup_steps)
  return optax.join_schedules(
      [ramp, lambda step: schedule(step + warmup_steps)], [warmup_steps])


def learning_rate_at(schedule: optax.Schedule, step: int) -> float:
  """The schedule's learning rate at `step`, as a Python float."""
  return float(schedule(step))


# ---------------------------------------------------------------- optimizers

def optimizer_arguments(config) -> dict[str, Any]:
  """The constructor's kwargs (learning rate aside): the framework's
  defaults, then config fields (momentum, nesterov, adamw's weight_decay),
  then config.optimizer_kwargs."""
  spec = _spec(config)
  _check_choice(config, "framework", FRAMEWORKS)
  arguments = dict(spec.defaults[config.framework])
  if spec.from_config is not None:
    arguments.update(spec.from_config(config))
  overrides = config.optimizer_kwargs
  overrides = dict(overrides.to_dict() if hasattr(overrides, "to_dict")
                   else overrides or {})
  accepted = spec.accepted()
  for name in overrides:
    if name == "learning_rate":
      raise UserError("config.optimizer_kwargs.learning_rate: set "
                      "config.learning_rate and config.lr_schedule instead")
    if name not in accepted:
      raise UserError(
          f"config.optimizer_kwargs: {name!r} is not an argument of "
          f"optax.{spec.constructor.__name__} (accepted: {', '.join(accepted)})")
  arguments.update(overrides)
  return arguments


# The scalars a vectorised sweep may vary between the models of one program
# (engine/variants.py): each is read from `hyper` when given, else from the config.
HYPER_FIELDS = ("learning_rate", "weight_decay") + REGULARIZERS


def make_optimizer(config, steps_per_epoch: int, hyper=None
                   ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(base transformation, learning-rate schedule) for `config`.

  A constant rate without warmup enters optax as a number (no schedule
  counter in the optimizer state); any other as the schedule. `hyper`
  ({'learning_rate', 'weight_decay'}: Python floats, or traced scalars of
  one model under vmap) replaces those config values; what the state holds
  (a weight-decay stage, a schedule counter) follows the config alone, so
  every model of a sweep has the same state structure.
  """
  spec = _spec(config)
  hyper = hyper or {}
  arguments = optimizer_arguments(config)
  if "weight_decay" in hyper and spec.weight_decay == "decoupled":
    arguments["weight_decay"] = hyper["weight_decay"]
  rate = hyper.get("learning_rate", float(config.learning_rate))
  schedule = make_schedule(config, steps_per_epoch, rate)
  constant = config.lr_schedule == "constant" and not config.warmup_epochs
  learning_rate = rate if constant else schedule
  transformation = spec.constructor(learning_rate, **arguments)
  weight_decay = hyper.get("weight_decay", float(config.weight_decay))
  if spec.weight_decay == "coupled" and float(config.weight_decay) > 0:
    transformation = optax.chain(optax.add_decayed_weights(weight_decay),
                                 transformation)
  return transformation, schedule


def _spec(config) -> OptimizerSpec:
  _check_choice(config, "optimizer", tuple(OPTIMIZERS))
  return OPTIMIZERS[config.optimizer]


# ------------------------------------------------------------ regularisation

def is_regularized(config) -> bool:
  """Whether any of the Keras-style regularisers is on."""
  return any(float(config[name]) for name in REGULARIZERS)


def _key(entry) -> str:
  return str(getattr(entry, "key", getattr(entry, "idx", entry)))


def regularization(params, config, trainable_mask=None,
                   hyper=None) -> jax.Array:
  """Keras' kernel_/bias_regularizer penalty, to add to the loss.

  kernel_l2 * sum(k^2) + kernel_l1 * sum(|k|) over every leaf named 'kernel',
  bias_l2 * sum(b^2) + bias_l1 * sum(|b|) over every 'bias' whose module
  also has a 'kernel' (Conv/Dense: BatchNorm's scale and bias are not
  regularised, as in Keras). With `trainable_mask` (a tree of bools like
  `params`) only trainable leaves count. A float32 scalar; a constant 0
  (nothing traced) when all four strengths are 0. `hyper` replaces any of
  the four strengths (a vectorised sweep's model: a traced strength is
  always applied, a Python 0 never).

  config.l2_form='norm' takes each tensor's L2 norm instead of its sum of
  squares (kernel_l2 * ||k||_2 + bias_l2 * ||b||_2, PyTorch's hand-written
  `sum(torch.norm(p))`), with a zero gradient at an all-zero tensor, as
  torch's.
  """
  hyper = hyper or {}
  value = lambda name: hyper.get(name, float(config[name]))
  l2 = {"kernel": value("kernel_l2"), "bias": value("bias_l2")}
  l1 = {"kernel": value("kernel_l1"), "bias": value("bias_l1")}
  squared = config.get("l2_form", "squared") == "squared"
  total = jnp.zeros((), jnp.float32)
  if not any(_nonzero(v) for v in (*l2.values(), *l1.values())):
    return total
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  mask = ([True] * len(leaves) if trainable_mask is None
          else treedef.flatten_up_to(trainable_mask))
  paths = [tuple(_key(k) for k in path) for path, _ in leaves]
  with_kernel = {path[:-1] for path in paths if path[-1] == "kernel"}
  for path, (_, leaf), trainable in zip(paths, leaves, mask):
    name = path[-1]
    if not trainable or name not in l2:
      continue
    if name == "bias" and path[:-1] not in with_kernel:
      continue
    x = jnp.asarray(leaf, jnp.float32)
    if _nonzero(l2[name]):
      total = total + l2[name] * (jnp.sum(x * x) if squared else _norm(x))
    if _nonzero(l1[name]):
      total = total + l1[name] * jnp.sum(jnp.abs(x))
  return total


def _norm(x: jax.Array) -> jax.Array:
  """||x||_2 with gradient 0, not NaN, at x = 0 (torch.norm's)."""
  squares = jnp.sum(x * x)
  positive = squares > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


def _nonzero(strength) -> bool:
  """A Python strength is on when it is not 0; a traced one always is."""
  return isinstance(strength, jax.core.Tracer) or bool(strength)


# ---------------------------------------------------------------- validation

def _fail(field: str, value: Any, problem: str) -> None:
  raise UserError(f"config.{field}={value!r}: {problem}")


def _check_choice(config, field: str, choices: tuple[str, ...]) -> None:
  value = config[field]
  if value not in choices:
    near = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(f"config.{field}={value!r} is not one of "
                    f"{', '.join(choices)}{hint}")


def _is_int(value: Any) -> bool:
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate(config) -> None:
  """Raises UserError, one line naming the field, for an optimizer,
  schedule or regulariser setting that cannot work."""
  _check_choice(config, "optimizer", tuple(OPTIMIZERS))
  _check_choice(config, "framework", FRAMEWORKS)
  optimizer_arguments(config)
  if not config.learning_rate > 0:
    _fail("learning_rate", config.learning_rate, "must be positive")
  for field in ("weight_decay",) + REGULARIZERS:
    if not config[field] >= 0:
      _fail(field, config[field], "must be 0 (off) or positive")
  _check_choice(config, "l2_form", L2_FORMS)
  if not 0 <= config.momentum < 1:
    _fail("momentum", config.momentum, "must be in [0, 1)")
  num_epochs = config.num_epochs
  if not 0 <= config.warmup_epochs < num_epochs:
    _fail("warmup_epochs", config.warmup_epochs,
          f"must be at least 0 and below num_epochs={num_epochs}")
  _check_choice(config, "lr_schedule", tuple(SCHEDULES))
  if config.lr_schedule == "step":
    if not (_is_int(config.lr_step_epochs) and config.lr_step_epochs >= 1):
      _fail("lr_step_epochs", config.lr_step_epochs,
            "must be a whole number of epochs, at least 1")
    if not config.lr_step_factor > 0:
      _fail("lr_step_factor", config.lr_step_factor, "must be positive")
  if config.lr_schedule == "piecewise":
    _validate_piecewise(tuple(config.lr_boundaries), tuple(config.lr_values),
                        num_epochs)


def _validate_piecewise(boundaries: tuple, values: tuple, num_epochs: int) -> None:
  if len(values) != len(boundaries) + 1:
    _fail("lr_values", values,
          f"needs one more value than lr_boundaries={boundaries} "
          f"({len(boundaries) + 1}), got {len(values)}")
  if not all(_is_int(b) and b > 0 for b in boundaries):
    _fail("lr_boundaries", boundaries, "must be positive whole epochs")
  for before, after in zip(boundaries, boundaries[1:]):
    if not before < after:
      _fail("lr_boundaries", boundaries,
            f"must be strictly increasing ({after} follows {before})")
  for boundary in boundaries:
    if boundary >= num_epochs:
      _fail("lr_boundaries", boundaries,
            f"boundary {boundary} is not below num_epochs={num_epochs}")
  if not all(v > 0 for v in values):
    _fail("lr_values", values, "every learning rate must be positive")

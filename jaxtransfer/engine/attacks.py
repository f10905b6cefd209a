"""L-inf adversarial attacks in pixel space, for evaluating any classifier.

Three attacks, all one projected sign-gradient ascent on the loss in pixel
space [0, 1] (before resizing and normalisation, so the radius means the same
for every model and dataset statistics):

- 'fgsm:EPS' -- the fast gradient sign method (Goodfellow, Shlens, Szegedy,
  "Explaining and Harnessing Adversarial Examples", ICLR 2015):
  x + eps * sign(grad_x loss), clipped to [0, 1].
- 'pgd:EPS:STEP:STEPS' -- projected gradient descent (Madry, Makelov, Schmidt,
  Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
  Attacks", ICLR 2018): a uniform random start in the eps ball, then STEPS
  sign-gradient steps of size STEP, each projected onto the eps ball around x
  and onto [0, 1]. 'pgd:EPS:STEP:STEPS:no_rs' starts at x itself.
- 'fgsm_rs:EPS:ALPHA' -- FGSM from a random start (Wong, Rice, Kolter, "Fast is
  better than free: Revisiting adversarial training", ICLR 2020): delta drawn
  from U(-eps, eps), one sign-gradient step of size ALPHA at x + delta, then
  the projection (as PGD with one step).

Numbers are fractions ('8/255') or decimals ('0.03'); `Attack.name` writes
them back canonically (k/255 where that is exact, else the shortest decimal),
so `parse_attack(a.name) == a`.

`perturb` is pure and jittable; the caller's `loss_fn(images, labels)` closes
over the model (in inference mode), resizing and normalisation. It must be a
mean (or sum) of per-example losses: then an example's perturbation depends on
that example alone (and the random start, drawn for the batch's shape), so
whatever padding holds changes nothing. Gradients of a
saturated softmax can underflow to zero, leaving such examples unperturbed
(sign(0) = 0), as in every cross-entropy FGSM/PGD.

The same attacks serve adversarial training (config.adversarial,
`adversarial_inputs`): each training batch is replaced by its attack on the
current model.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from jaxtransfer import data
from jaxtransfer.core.errors import UserError
from jaxtransfer.data import augment
from jaxtransfer.engine import state

KINDS = ("fgsm", "pgd", "fgsm_rs")
NO_RANDOM_START = "no_rs"  # optional last field of a pgd attack
_EXAMPLES = {"fgsm": "fgsm:8/255", "pgd": "pgd:8/255:2/255:10",
             "fgsm_rs": "fgsm_rs:8/255:10/255"}
_FIELDS = {"fgsm": "eps", "pgd": "eps:step_size:steps",
           "fgsm_rs": "eps:alpha"}

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
LossAndLogitsFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def _number_text(value: float) -> str:
  """k/255 when that is the value exactly, else the shortest decimal."""
  decimal = repr(float(value))
  if not math.isfinite(value):
    return decimal
  k = round(value * 255)
  if float(fractions.Fraction(k, 255)) == value and len(decimal) > 6:
    return f"{k}/255"
  return decimal[:-2] if decimal.endswith(".0") else decimal


@dataclasses.dataclass(frozen=True)
class Attack:
  """An L-inf attack; build it with `parse_attack`. FGSM is the case
  random_start=False, step_size=eps, steps=1; fgsm_rs the case
  random_start=True, steps=1."""
  kind: str  # 'fgsm', 'pgd' or 'fgsm_rs'
  eps: float  # L-inf radius in pixel space [0, 1]
  step_size: float  # pgd and fgsm_rs: alpha (fgsm: eps)
  steps: int  # pgd: iterations (1 otherwise)
  random_start: bool  # pgd: True (Madry); fgsm_rs: True; fgsm: False

  def __post_init__(self):
    problem = _check(self)
    if problem:
      raise UserError(f"attack {self!r}: {problem}")

  @property
  def name(self) -> str:
    """The canonical string, e.g. 'pgd:8/255:2/255:10'."""
    eps = _number_text(self.eps)
    if self.kind == "fgsm":
      return f"fgsm:{eps}"
    if self.kind == "fgsm_rs":
      return f"fgsm_rs:{eps}:{_number_text(self.step_size)}"
    suffix = "" if self.random_start else f":{NO_RANDOM_START}"
    return f"pgd:{eps}:{_number_text(self.step_size)}:{self.steps}{suffix}"


def _check(attack: Attack) -> str | None:
  """What is wrong with an attack's fields, or None."""
  if attack.kind not in KINDS:
    return f"unknown kind {attack.kind!r} (one of {', '.join(KINDS)})"
  if not 0 < attack.eps <= 1:
    return f"eps={_number_text(attack.eps)} is outside (0, 1]"
  if not (math.isfinite(attack.step_size) and attack.step_size > 0):
    return f"step size {_number_text(attack.step_size)} is not > 0"
  if (isinstance(attack.steps, bool) or not isinstance(attack.steps, int)
      or attack.steps < 1):
    return f"steps={attack.steps!r} is not an integer >= 1"
  if attack.kind == "fgsm" and (attack.step_size != attack.eps or
                                attack.steps != 1 or attack.random_start):
    return "fgsm takes one step of size eps from x (no random start)"
  if attack.kind == "fgsm_rs" and (attack.steps != 1 or not attack.random_start):
    return "fgsm_rs takes one step from a random start"
  return None


def _parse_number(field: str, what: str, text: str) -> float:
  try:
    value = float(fractions.Fraction(field.strip()))
  except (ValueError, ZeroDivisionError, OverflowError):
    raise UserError(f"attack {text!r}: {what}={field!r} is not a number "
                    "(a fraction like 8/255 or a decimal)") from None
  return value


def parse_attack(text: str) -> Attack:
  """'fgsm:EPS', 'pgd:EPS:STEP:STEPS[:no_rs]' or 'fgsm_rs:EPS:ALPHA' -> Attack.
  Anything else raises UserError naming the value."""
  if not isinstance(text, str):
    raise UserError(f"attack {text!r}: expected a string like 'pgd:8/255:2/255:10'")
  kind, *fields = text.strip().split(":")
  if kind not in KINDS:
    raise UserError(f"attack {text!r}: unknown kind {kind!r} (one of "
                    f"{', '.join(KINDS)}, e.g. {_EXAMPLES['pgd']!r})")
  random_start = kind != "fgsm"
  if kind == "pgd" and len(fields) == 4 and fields[3].strip() == NO_RANDOM_START:
    fields, random_start = fields[:3], False
  if len(fields) != _FIELDS[kind].count(":") + 1:
    raise UserError(f"attack {text!r} does not parse: {kind} needs "
                    f"{_FIELDS[kind]} (e.g. {_EXAMPLES[kind]!r})")
  eps = _parse_number(fields[0], "eps", text)
  if not 0 < eps <= 1:
    raise UserError(f"attack {text!r}: eps={fields[0].strip()} is outside (0, 1]")
  step_size, steps = eps, 1
  if kind != "fgsm":
    what = "alpha" if kind == "fgsm_rs" else "step_size"
    step_size = _parse_number(fields[1], what, text)
    if not (math.isfinite(step_size) and step_size > 0):
      raise UserError(f"attack {text!r}: {what}={fields[1].strip()} is not > 0")
  if kind == "pgd":
    field = fields[2].strip()
    if not (field.isascii() and field.isdigit()) or int(field) < 1:
      raise UserError(f"attack {text!r}: steps={field!r} is not an integer >= 1")
    steps = int(field)
  return Attack(kind, eps, step_size, steps, random_start)


def perturb(attack: Attack, loss_fn: LossFn, images: jax.Array,
            labels: jax.Array, key: jax.Array | None) -> jax.Array:
  """Adversarial images: float [B, H, W, C] in [0, 1] -> the same, within
  `attack.eps` of `images` in L-inf, chosen to increase loss_fn(x, labels).
  `key` is used only for the random start (may be None without one)."""
  x = jnp.asarray(images)
  dtype = x.dtype
  eps = jnp.asarray(attack.eps, dtype)
  step_size = jnp.asarray(attack.step_size, dtype)
  low, high = jnp.maximum(x - eps, 0), jnp.minimum(x + eps, 1)
  grad = jax.grad(lambda z: loss_fn(z, labels))

  if attack.random_start:
    if key is None:
      raise ValueError(f"attack {attack.name} needs a key for its random start")
    delta = jax.random.uniform(key, x.shape, dtype, -attack.eps, attack.eps)
    start = jnp.clip(x + delta, 0, 1)
  else:
    start = x

  def step(_, x_adv):
    ascent = jnp.sign(grad(x_adv)).astype(dtype)
    return jnp.clip(x_adv + step_size * ascent, low, high)

  return jax.lax.fori_loop(0, attack.steps, step, start)


def adversarial_sums(attack: Attack, loss_and_logits_fn: LossAndLogitsFn,
                     images: jax.Array, labels: jax.Array, weights: jax.Array,
                     key: jax.Array | None) -> dict[str, jax.Array]:
  """{'correct': weighted count of adversarial images still classified right,
  'count': sum of weights}; loss_and_logits_fn(images, labels) -> (mean loss,
  logits [B, classes]). Weights 0 mark padding."""
  loss_fn = lambda x, y: loss_and_logits_fn(x, y)[0]
  adversarial = perturb(attack, loss_fn, images, labels, key)
  _, logits = loss_and_logits_fn(adversarial, labels)
  weights = jnp.asarray(weights, jnp.float32)
  hits = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  return {"correct": jnp.sum(hits * weights), "count": jnp.sum(weights)}


def cross_entropy_loss_and_logits(logits_fn: Callable[[jax.Array], Any]
                                  ) -> LossAndLogitsFn:
  """loss_and_logits_fn from logits_fn(pixel images) -> logits: the mean
  softmax cross-entropy with integer labels, computed in float32."""
  def loss_and_logits(images, labels):
    logits = logits_fn(images)
    loss = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), labels).mean()
    return loss, logits
  return loss_and_logits


# ---------------------------------------------------------------------------
# Attacking a run's models: what --mode=eval runs for config.eval.attacks.

def evaluate_attack_batches(setup, attack: Attack, variables, images, labels,
                            weights, key) -> dict[str, jax.Array]:
  """One model's {'correct', 'count'} under `attack` over a padded
  evaluation set [num_batches, B, ...] of uint8 images. The attack sees the
  whole network (a frozen body included) in inference mode, from pixels."""

  def logits_fn(pixels):
    inputs = data.to_model_input(pixels, setup.image_size, setup.mean,
                                 setup.std, setup.dtype,
                                 channels=setup.channels)
    outputs, _ = state.forward(setup, variables["params"],
                               variables["batch_stats"], inputs)
    return outputs

  loss_and_logits = cross_entropy_loss_and_logits(logits_fn)

  def body(totals, batch):
    batch_images, batch_labels, batch_weights, batch_key = batch
    batch_images, batch_labels, batch_weights = (
        jax.lax.with_sharding_constraint(x, setup.batch_sharded)
        for x in (batch_images, batch_labels, batch_weights))
    sums = adversarial_sums(attack, loss_and_logits,
                            data.to_unit_float(batch_images), batch_labels,
                            batch_weights, batch_key)
    return jax.tree.map(jnp.add, totals, sums), None

  zeros = {"correct": jnp.zeros((), jnp.float32),
           "count": jnp.zeros((), jnp.float32)}
  batch_keys = jax.random.split(key, images.shape[0])
  totals, _ = jax.lax.scan(body, zeros, (images, labels, weights, batch_keys))
  return totals


def make_attack_evaluator(setup, attack: Attack):
  """jit(over_seeds(evaluate_attack_batches)) over stacked variables; the
  images are attacked directly (never the feature cache: the gradient must
  reach the pixels through the body)."""
  image_setup = dataclasses.replace(setup, feature_cache=False)
  return jax.jit(state.over_seeds(
      functools.partial(evaluate_attack_batches, image_setup, attack),
      (0, None, None, None, None), setup.seed_parallelism))


# ---------------------------------------------------------------------------
# Adversarial training: what the train step runs when config.adversarial is
# set (Madry et al. with 'pgd:...', Wong et al.'s fast training with
# 'fgsm_rs:...').

ATTACK_KEY = 2  # fold_in(step_key, 2): the attack's random start (1: dropout)


def adversarial_batch(setup, attack: Attack, params, batch_stats,
                      pixels: jax.Array, labels: jax.Array,
                      key: jax.Array | None) -> jax.Array:
  """The attack on float pixels [B, H, W, C] in [0, 1] (the augmented batch,
  at the dataset's resolution) against the whole model -> the perturbed
  pixels, within attack.eps and [0, 1], as constants (no gradient flows
  through them or into `params`).

  The model runs in inference mode while the attack is computed: BatchNorm
  normalises with its running statistics and does not update them, dropout
  is off (as TRADES/MART and most PyTorch robust-training code, which
  switch to model.eval() to craft the examples). BatchNorm statistics are
  thus updated only by the training forward pass on the perturbed batch,
  once per step, from adversarial images alone. The price: a BatchNorm
  model trained from scratch is attacked through running statistics that do
  not yet describe the data for its first ~1 / (1 - bn_momentum) steps
  (alexnet_bn at initialisation: PGD's batch did not raise the training-mode
  loss). The gradient reaches the pixels through a frozen body too (never
  the feature cache)."""
  params, batch_stats = jax.lax.stop_gradient((params, batch_stats))
  setup = dataclasses.replace(setup, feature_cache=False)

  def logits_fn(x):
    inputs = data.to_model_input(x, setup.image_size, setup.mean, setup.std,
                                 setup.dtype, channels=setup.channels)
    return state.forward(setup, params, batch_stats, inputs)[0]

  loss_and_logits = cross_entropy_loss_and_logits(logits_fn)
  return jax.lax.stop_gradient(perturb(
      attack, lambda x, y: loss_and_logits(x, y)[0], pixels, labels, key))


def adversarial_inputs(setup, params, batch_stats, images: jax.Array,
                       labels: jax.Array, step_key: jax.Array) -> jax.Array:
  """The train step's model inputs under adversarial training: uint8 images
  -> [0, 1] -> augmented with step_key (exactly as without the attack) ->
  `adversarial_batch` with `setup.adversarial`, its random start from
  fold_in(step_key, ATTACK_KEY) (a resumed run draws the same) -> resized,
  channel-adapted and normalised. The step's loss, gradient and train metrics
  are then those of the adversarial batch."""
  pixels = augment.augment_batch(step_key, data.to_unit_float(images),
                                 setup.augment)
  pixels = adversarial_batch(setup, setup.adversarial, params, batch_stats,
                             pixels, labels,
                             jax.random.fold_in(step_key, ATTACK_KEY))
  return data.to_model_input(pixels, setup.image_size, setup.mean, setup.std,
                             setup.dtype, channels=setup.channels)

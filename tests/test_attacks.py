"""Adversarial attacks: parsing, FGSM against a hand-computed input gradient,
PGD's projection and strength on a small trained classifier, fgsm_rs's
randomness, and everything under jit."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from model_init import init_variables
from jaxtransfer import data
from jaxtransfer.engine import attacks
from jaxtransfer.engine.attacks import Attack, parse_attack
from jaxtransfer.core.errors import UserError

SHAPE = (4, 4, 3)  # tiny images
DIM = int(np.prod(SHAPE))
CLASSES = 3

# jitted once per (attack, loss function): eager dispatch is slower here
_perturb = jax.jit(attacks.perturb, static_argnums=(0, 1))

# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("fgsm:8/255", Attack("fgsm", 8 / 255, 8 / 255, 1, False)),
    ("pgd:8/255:2/255:10", Attack("pgd", 8 / 255, 2 / 255, 10, True)),
    ("fgsm_rs:8/255:10/255", Attack("fgsm_rs", 8 / 255, 10 / 255, 1, True)),
    ("fgsm:0.03", Attack("fgsm", 0.03, 0.03, 1, False)),
    ("pgd:0.1:0.025:7", Attack("pgd", 0.1, 0.025, 7, True)),
    ("fgsm_rs:0.5:1", Attack("fgsm_rs", 0.5, 1.0, 1, True)),
    ("pgd:8/255:2/255:10:no_rs", Attack("pgd", 8 / 255, 2 / 255, 10, False)),
])
def test_parse_forms_and_canonical_name(text, expected):
  attack = parse_attack(text)
  assert attack == expected
  assert attack.name == text  # these are written canonically
  assert parse_attack(attack.name) == attack


@pytest.mark.parametrize("text, name", [
    ("fgsm:16/510", "fgsm:8/255"),  # the same number, reduced
    ("fgsm:1/3", "fgsm:85/255"),
    ("pgd:0.0313:1e-2:3", "pgd:0.0313:0.01:3"),
    ("fgsm:1.0", "fgsm:1"),
    ("fgsm_rs: 8/255 :0.04", "fgsm_rs:8/255:0.04"),
    ("pgd:1/7:1/70:003", None),
])
def test_name_round_trips(text, name):
  attack = parse_attack(text)
  if name is not None:
    assert attack.name == name
  assert parse_attack(attack.name) == attack


@pytest.mark.parametrize("text, message", [
    ("cw:8/255", "unknown kind 'cw'"),
    ("FGSM:8/255", "unknown kind 'FGSM'"),
    ("", "unknown kind ''"),
    ("fgsm", "does not parse: fgsm needs eps"),
    ("fgsm:8/255:2/255", "does not parse: fgsm needs eps"),
    ("pgd:8/255", "does not parse: pgd needs eps:step_size:steps "
     r"\(e.g. 'pgd:8/255:2/255:10'\)"),
    ("pgd:8/255:2/255", "does not parse: pgd needs"),
    ("pgd:8/255:2/255:10:5", "does not parse: pgd needs"),
    ("fgsm_rs:8/255", "does not parse: fgsm_rs needs eps:alpha"),
    ("fgsm:0", r"eps=0 is outside \(0, 1\]"),
    ("fgsm:1.5", r"eps=1.5 is outside \(0, 1\]"),
    ("fgsm:2", r"eps=2 is outside \(0, 1\]"),
    ("pgd:-1/255:1/255:3", r"eps=-1/255 is outside \(0, 1\]"),
    ("pgd:8/255:2/255:0", "steps='0' is not an integer >= 1"),
    ("pgd:8/255:2/255:2.5", "steps='2.5' is not an integer >= 1"),
    ("pgd:8/255:2/255:-3", "steps='-3' is not an integer >= 1"),
    ("pgd:8/255:0:10", "step_size=0 is not > 0"),
    ("fgsm_rs:8/255:-1/255", "alpha=-1/255 is not > 0"),
    ("pgd:8/255:1e400:10", "step_size='1e400' is not a number"),
    ("fgsm:1e400", "eps='1e400' is not a number"),
    ("fgsm:abc", "eps='abc' is not a number"),
    ("fgsm:1/0", "eps='1/0' is not a number"),
    ("fgsm:nan", "eps='nan' is not a number"),
    ("fgsm:", "eps='' is not a number"),
    ("pgd:8/255:two:10", "step_size='two' is not a number"),
])
def test_parse_errors(text, message):
  with pytest.raises(UserError, match=message) as caught:
    parse_attack(text)
  line = str(caught.value)
  assert "\n" not in line
  assert line.startswith(f"attack {text!r}")


def test_inconsistent_attack_is_refused():
  with pytest.raises(UserError, match="fgsm takes one step of size eps"):
    Attack("fgsm", 0.1, 0.2, 1, False)
  with pytest.raises(UserError, match="fgsm_rs takes one step"):
    Attack("fgsm_rs", 0.1, 0.1, 1, False)
  with pytest.raises(UserError, match="not an integer"):
    Attack("pgd", 0.1, 0.1, 2.0, True)
  with pytest.raises(UserError, match="eps=nan is outside"):
    Attack("pgd", float("nan"), 0.1, 2, True)
  with pytest.raises(UserError, match="step size inf is not > 0"):
    Attack("pgd", 0.1, float("inf"), 2, True)


# ------------------------------------------------- a hand-written linear model


def _linear_problem(seed=0, batch=6, low=0.0, high=1.0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(DIM, CLASSES)).astype(np.float32)
  b = rng.normal(size=CLASSES).astype(np.float32)
  x = rng.uniform(low, high, size=(batch,) + SHAPE).astype(np.float32)
  y = rng.integers(0, CLASSES, size=batch).astype(np.int32)
  return w, b, x, y


def _linear_loss(w, b):
  def loss_fn(images, labels):
    logits = images.reshape(images.shape[0], -1) @ w + b
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def _linear_perturb(attack, w, b, x, y, key):
  """perturb against x @ w + b, compiled once per attack."""
  return attacks.perturb(attack, _linear_loss(w, b), x, y, key)


def _numpy_input_gradient(w, b, x, y):
  """d/dx of the mean cross-entropy of x @ w + b: (softmax - onehot) W^T / B."""
  flat = x.reshape(len(x), -1).astype(np.float64)
  logits = flat @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  onehot = np.eye(CLASSES)[y]
  return ((p - onehot) @ w.T / len(x)).reshape(x.shape)


def test_fgsm_is_eps_times_sign_of_the_input_gradient():
  w, b, x, y = _linear_problem(low=0.2, high=0.8)  # eps 0.05: never clipped
  grad = _numpy_input_gradient(w, b, x, y)
  assert np.abs(grad).min() > 1e-6  # every sign is well defined
  eps = 0.05
  adv = np.asarray(_linear_perturb(parse_attack("fgsm:0.05"), w, b, x, y, None))
  np.testing.assert_allclose(adv - x, eps * np.sign(grad), atol=1e-6)
  assert len(np.unique(np.sign(grad))) == 2  # both directions were taken


def test_fgsm_clips_to_the_unit_interval():
  w, b, x, y = _linear_problem(seed=1)
  x[0, 0] = 0.0
  x[1, 1] = 1.0
  grad = _numpy_input_gradient(w, b, x, y)
  adv = np.asarray(_linear_perturb(parse_attack("fgsm:0.5"), w, b, x, y, None))
  assert adv.min() >= 0 and adv.max() <= 1
  unclipped = x + 0.5 * np.sign(grad)
  assert (unclipped < 0).any() and (unclipped > 1).any()  # clipping was needed
  np.testing.assert_allclose(adv, np.clip(unclipped, 0, 1), atol=1e-6)


@pytest.mark.parametrize("text", ["pgd:8/255:2/255:3", "fgsm_rs:0.3:0.5"])
def test_stays_in_the_ball_and_the_unit_interval(text):
  w, b, x, y = _linear_problem(seed=2)
  attack = parse_attack(text)
  adv = np.asarray(_linear_perturb(attack, w, b, x, y, jax.random.key(0)))
  assert np.abs(adv - x).max() <= attack.eps + 1e-6
  assert np.abs(adv - x).max() > attack.eps / 2  # it did move
  assert adv.min() >= 0 and adv.max() <= 1


def test_pgd_one_step_of_eps_without_random_start_is_fgsm():
  w, b, x, y = _linear_problem(seed=3)
  fgsm = _linear_perturb(parse_attack("fgsm:0.1"), w, b, x, y, None)
  pgd = Attack("pgd", 0.1, 0.1, 1, random_start=False)
  assert pgd.name == "pgd:0.1:0.1:1:no_rs"
  np.testing.assert_array_equal(
      _linear_perturb(pgd, w, b, x, y, jax.random.key(0)), fgsm)


@pytest.mark.parametrize("text", ["pgd:8/255:2/255:3", "fgsm_rs:0.3:0.5"])
def test_random_start_depends_on_the_key_alone(text):
  """(With steps * step_size >= 2 eps, PGD on a linear model reaches the same
  corner of the ball from any start: fewer steps here.)"""
  w, b, x, y = _linear_problem(seed=2)
  attack = parse_attack(text)
  run = lambda key: np.asarray(_linear_perturb(attack, w, b, x, y,
                                               jax.random.key(key)))
  first = run(0)
  np.testing.assert_array_equal(first, run(0))
  assert np.abs(first - run(1)).max() > 0


def test_random_start_needs_a_key():
  w, b, x, y = _linear_problem()
  with pytest.raises(ValueError, match="needs a key"):
    attacks.perturb(parse_attack("fgsm_rs:0.1:0.1"), _linear_loss(w, b), x, y,
                    None)


# ------------------------------------------------- a small trained classifier


class Linear(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Dense(CLASSES)(x.reshape(x.shape[0], -1))


MEAN, STD = (0.5, 0.45, 0.4), (0.25, 0.2, 0.3)
PGD = "pgd:6/255:2/255:10"


@pytest.fixture(scope="module")
def trained():
  return _train_classifier()


def _train_classifier(spread=0.07, noise=0.1):
  """A linear classifier on normalised pixels (as `steps` feeds a model),
  trained to separate three random class prototypes."""
  rng = np.random.default_rng(0)
  prototypes = rng.uniform(0.5 - spread, 0.5 + spread, size=(CLASSES,) + SHAPE)
  labels = rng.integers(0, CLASSES, size=256).astype(np.int32)
  images = np.clip(prototypes[labels] + rng.normal(0, noise, (256,) + SHAPE),
                   0, 1).astype(np.float32)
  model = Linear()
  logits_of = lambda params, x: model.apply(
      {"params": params}, data.to_model_input(x, 4, MEAN, STD))
  def loss(params):
    return optax.softmax_cross_entropy_with_integer_labels(
        logits_of(params, images), labels).mean()
  tx = optax.adam(0.05)

  @jax.jit
  def train(params):
    def step(_, carry):
      params, opt_state = carry
      updates, opt_state = tx.update(jax.grad(loss)(params), opt_state)
      return optax.apply_updates(params, updates), opt_state
    return jax.lax.fori_loop(0, 300, step, (params, tx.init(params)))[0]

  params = train(init_variables(model, jax.random.key(0), images[:1])["params"])
  loss_and_logits = attacks.cross_entropy_loss_and_logits(
      functools.partial(logits_of, params))
  loss_fn = lambda x, y: loss_and_logits(x, y)[0]
  return loss_and_logits, loss_fn, images, labels


def _accuracy_and_loss(loss_and_logits, images, labels):
  _, logits = loss_and_logits(images, labels)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return float(np.mean(np.argmax(logits, -1) == labels)), np.asarray(losses)


def test_pgd_is_at_least_as_strong_as_fgsm(trained):
  loss_and_logits, loss_fn, images, labels = trained
  clean, _ = _accuracy_and_loss(loss_and_logits, images, labels)
  assert clean >= 0.95
  # (for a linear model FGSM is nearly optimal: PGD wins here by 5 of 256
  # examples, whatever the random start's key)
  results = {}
  for text in ("fgsm:6/255", PGD):
    adversarial = _perturb(parse_attack(text), loss_fn, images, labels,
                           jax.random.key(1))
    results[text.split(":")[0]] = _accuracy_and_loss(loss_and_logits,
                                                     adversarial, labels)
  (fgsm, fgsm_loss), (pgd, pgd_loss) = results["fgsm"], results["pgd"]
  assert fgsm < clean and pgd < clean
  assert pgd <= fgsm
  assert pgd_loss.mean() >= fgsm_loss.mean()


def test_adversarial_sums_under_jit_ignores_padding(trained):
  loss_and_logits, loss_fn, images, labels = trained
  attack = parse_attack(PGD + ":no_rs")  # (random numbers compile slowly)
  weights = np.ones(len(labels), np.float32)
  weights[200:] = 0  # padding
  sums_fn = jax.jit(functools.partial(attacks.adversarial_sums, attack,
                                      loss_and_logits))
  sums = sums_fn(images, labels, weights, None)
  assert float(sums["count"]) == 200
  adversarial = _perturb(attack, loss_fn, images, labels, None)
  _, logits = loss_and_logits(adversarial, labels)
  hits = np.asarray(jnp.argmax(logits, -1) == labels)
  assert float(sums["correct"]) == hits[:200].sum()
  assert hits[:200].sum() < 200  # the attack did something
  # an example's perturbation depends on it alone: what the padding holds
  # changes nothing
  blank_images, blank_labels = images.copy(), labels.copy()
  blank_images[200:], blank_labels[200:] = 0, 0
  blank = _perturb(attack, loss_fn, blank_images, blank_labels, None)
  np.testing.assert_array_equal(blank[:200], adversarial[:200])
  assert np.abs(np.asarray(blank[200:] - adversarial[200:])).max() > 0.1
  blank_sums = sums_fn(blank_images, blank_labels, weights, None)
  assert float(blank_sums["correct"]) == float(sums["correct"])


def test_jit_matches_eager():
  """Through resizing (4 -> 6) and channel adaptation (3 -> 1), as `steps`.
  (No random start: drawing random numbers compiles slowly on the CPU.)"""
  attack = parse_attack("pgd:8/255:2/255:2:no_rs")
  rng = np.random.default_rng(5)
  w = jnp.asarray(rng.normal(size=(36, CLASSES)), jnp.float32)
  def loss_fn(images, labels):
    inputs = data.to_model_input(images, 6, (0.5,), (0.25,), channels=1)
    logits = inputs.reshape(len(inputs), -1) @ w
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  x = rng.uniform(size=(5,) + SHAPE).astype(np.float32)
  y = rng.integers(0, CLASSES, 5).astype(np.int32)
  eager = attacks.perturb(attack, loss_fn, x, y, None)
  jitted = jax.jit(functools.partial(attacks.perturb, attack, loss_fn))(x, y, None)
  np.testing.assert_allclose(jitted, eager, atol=1e-6)
  assert np.abs(np.asarray(jitted) - x).max() <= attack.eps + 1e-6
  assert np.abs(np.asarray(jitted) - x).max() > 0

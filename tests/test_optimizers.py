"""Optimizers against numpy references of PyTorch's and Keras' update rules
(and those references against torch.optim and keras.optimizers themselves),
learning-rate schedules, config validation and Keras-style regularisation."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from jaxtransfer.engine import freezing, optimizers
from jaxtransfer.core.errors import UserError

LR = 0.01
P0 = np.array([0.5, -1.0, 2.0, -0.25, 0.75], np.float32)
# Three steps of fixed gradients of order 0.05-1.
GRADS = [np.array(g, np.float32) for g in (
    [0.3, -0.7, 1.2, 0.05, -0.4],
    [-0.2, -0.5, 0.9, 0.1, -0.6],
    [0.4, 0.2, -1.1, 0.08, 0.3])]


def _config(**overrides):
  config = default.get_config()
  config.learning_rate = LR
  for name, value in overrides.items():
    config[name] = value
  return config


def _run(tx, grads=GRADS, p0=P0):
  """Each step's update (not the new params: float32 would round them)."""
  params, state, out = jnp.asarray(p0), tx.init(jnp.asarray(p0)), []
  for g in grads:
    updates, state = tx.update(jnp.asarray(g), state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(updates, np.float64))
  return out


# --- numpy references of one step: (p, g, state, t) -> (new p, state) -------

def torch_adam(lr, wd=0.0, b1=0.9, b2=0.999, eps=1e-8, decoupled=False):
  def step(p, g, s, t):
    m, v = s or (0 * p, 0 * p)
    if decoupled:  # AdamW: p *= 1 - lr*wd; else Adam's g += wd*p
      p = p * (1 - lr * wd)
    g = g if decoupled else g + wd * p
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1**t), v / (1 - b2**t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), (m, v)
  return step


def keras_adam(lr, b1=0.9, b2=0.999, eps=1e-7):
  def step(p, g, s, t):
    m, v = s or (0 * p, 0 * p)
    alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    m, v = m + (g - m) * (1 - b1), v + (g * g - v) * (1 - b2)
    return p - alpha * m / (np.sqrt(v) + eps), (m, v)
  return step


def torch_sgd(lr, momentum, nesterov=False, wd=0.0):
  def step(p, g, s, t):
    g = g + wd * p
    buf = g if s is None else momentum * s + g  # dampening 0
    direction = g + momentum * buf if nesterov else buf
    return p - lr * direction, buf
  return step


def keras_sgd(lr, momentum, nesterov=False):
  def step(p, g, s, t):
    m = momentum * (0 * p if s is None else s) - lr * g
    return p + (momentum * m - lr * g if nesterov else m), m
  return step


def rmsprop(lr, decay, eps, eps_in_sqrt, wd=0.0):
  """torch: decay 0.99, eps 1e-8 outside; keras: 0.9, 1e-7 inside."""
  def step(p, g, s, t):
    g = g + wd * p
    v = decay * (0 * p if s is None else s) + (1 - decay) * g * g
    denominator = np.sqrt(v + eps) if eps_in_sqrt else np.sqrt(v) + eps
    return p - lr * g / denominator, v
  return step


def adagrad(lr, init, eps, eps_in_sqrt, wd=0.0):
  """torch: init 0, eps 1e-10 outside; keras: init 0.1, eps 1e-7 inside."""
  def step(p, g, s, t):
    g = g + wd * p
    acc = (init + 0 * p if s is None else s) + g * g
    denominator = np.sqrt(acc + eps) if eps_in_sqrt else np.sqrt(acc) + eps
    return p - lr * g / denominator, acc
  return step


TORCH_RMSPROP, KERAS_RMSPROP = (0.99, 1e-8, False), (0.9, 1e-7, True)
TORCH_ADAGRAD, KERAS_ADAGRAD = (0.0, 1e-10, False), (0.1, 1e-7, True)


def _reference(step, grads=GRADS, p0=P0, updates=True):
  """Each step's update (or, updates=False, the parameters after it)."""
  p, s, out = p0.astype(np.float64), None, []
  for t, g in enumerate(grads, start=1):
    new, s = step(p, g.astype(np.float64), s, t)
    out.append(new - p if updates else new)
    p = new
  return out


WD, KERAS = {"weight_decay": 0.1}, {"framework": "keras"}
SGD, RMS, ADAGRAD = {"optimizer": "sgd"}, {"optimizer": "rmsprop"}, {
    "optimizer": "adagrad"}
CASES = {  # id: (config overrides, numpy reference)
    "adam-torch": ({}, torch_adam(LR)),
    "adam-torch-wd": (WD, torch_adam(LR, wd=0.1)),
    "adam-keras": (KERAS, keras_adam(LR)),
    "adamw-torch": ({"optimizer": "adamw", **WD},
                    torch_adam(LR, wd=0.1, decoupled=True)),
    "adamw-keras": ({"optimizer": "adamw", **WD, **KERAS},
                    torch_adam(LR, wd=0.1, eps=1e-7, decoupled=True)),
    "sgd-torch-plain": ({**SGD, "momentum": 0.0}, torch_sgd(LR, 0.0)),
    "sgd-torch-momentum": (SGD, torch_sgd(LR, 0.9)),
    "sgd-torch-nesterov-wd": ({**SGD, "nesterov": True, **WD},
                              torch_sgd(LR, 0.9, nesterov=True, wd=0.1)),
    "sgd-keras": ({**SGD, **KERAS}, keras_sgd(LR, 0.9)),
    "sgd-keras-nesterov": ({**SGD, **KERAS, "nesterov": True},
                           keras_sgd(LR, 0.9, nesterov=True)),
    "rmsprop-torch": (RMS, rmsprop(LR, *TORCH_RMSPROP)),
    "rmsprop-torch-wd": ({**RMS, **WD}, rmsprop(LR, *TORCH_RMSPROP, wd=0.1)),
    "rmsprop-keras": ({**RMS, **KERAS}, rmsprop(LR, *KERAS_RMSPROP)),
    "adagrad-torch": (ADAGRAD, adagrad(LR, *TORCH_ADAGRAD)),
    "adagrad-torch-wd": ({**ADAGRAD, **WD}, adagrad(LR, *TORCH_ADAGRAD, wd=0.1)),
    "adagrad-keras": ({**ADAGRAD, **KERAS}, adagrad(LR, *KERAS_ADAGRAD)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_first_three_updates_match_the_framework(case):
  overrides, reference = CASES[case]
  tx, _ = optimizers.make_optimizer(_config(**overrides), steps_per_epoch=10)
  got, want = _run(tx), _reference(reference)
  # float32: 1 - 0.999**t in Adam's bias correction is off by 1.3e-5
  # relative (0.999 is not a float32); Keras' Adam also puts eps before bias
  # correction (module docstring), < 1e-4 relative with |grad| >= 0.05.
  rtol = {"adam-keras": 1e-4}.get(case, 2e-5 if "adam" in case else 2e-6)
  for t, (g, w) in enumerate(zip(got, want), start=1):
    np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-6 * np.abs(w).max(),
                               err_msg=f"{case} step {t}")


@pytest.mark.parametrize("case", [c for c in CASES if "torch" in c])
def test_numpy_references_are_what_torch_does(case):
  torch = pytest.importorskip("torch")
  overrides, reference = CASES[case]
  name = overrides.get("optimizer", "adam")
  kwargs = {"weight_decay": overrides.get("weight_decay", 0.0)}
  if name == "sgd":
    kwargs.update(momentum=overrides.get("momentum", 0.9),
                  nesterov=overrides.get("nesterov", False))
  param = torch.nn.Parameter(torch.tensor(P0, dtype=torch.float64))
  cls = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
         "adagrad": "Adagrad"}[name]
  optimizer = getattr(torch.optim, cls)([param], lr=LR, **kwargs)
  for g, want in zip(GRADS, _reference(reference, updates=False)):
    param.grad = torch.tensor(g, dtype=torch.float64)
    optimizer.step()
    np.testing.assert_allclose(param.detach().numpy(), want, rtol=1e-12)


KERAS_CASES = [c for c in CASES if "keras" in c]


@pytest.fixture(scope="module")
def keras():
  os.environ.setdefault("KERAS_BACKEND", "jax")
  return pytest.importorskip("keras")


def _keras_updates(keras, overrides, grads=GRADS, p0=P0):
  """Each step's update by Keras' own optimizer (keras.optimizers.*, its JAX
  backend, float64) on the same gradients from the same start."""
  name = overrides.get("optimizer", "adam")
  kwargs = {}
  if name == "adamw":  # Keras' AdamW decays by lr * wd * p, decoupled
    kwargs["weight_decay"] = overrides["weight_decay"]
  if name == "sgd":
    kwargs.update(momentum=overrides.get("momentum", 0.9),
                  nesterov=overrides.get("nesterov", False))
  cls = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop",
         "adagrad": "Adagrad"}[name]
  out = []
  with jax.enable_x64(True):
    optimizer = getattr(keras.optimizers, cls)(learning_rate=LR, **kwargs)
    variable = keras.Variable(p0.astype(np.float64), dtype="float64")
    for g in grads:
      before = np.array(variable.numpy(), np.float64)
      optimizer.apply_gradients(
          [(keras.ops.convert_to_tensor(g.astype(np.float64)), variable)])
      out.append(np.array(variable.numpy(), np.float64) - before)
  return out


@pytest.mark.parametrize("case", KERAS_CASES)
def test_keras_cases_match_keras_itself(keras, case):
  overrides, reference = CASES[case]
  theirs = _keras_updates(keras, overrides)
  # The numpy references of Keras' rules are what Keras does (float64; Keras
  # keeps the learning rate as a float32 variable: 0.01 is off by 2.2e-8
  # relative). adamw-keras' reference is optax's form, eps after the bias
  # correction; Keras' AdamW is its Adam, eps before it: < 1e-4 relative
  # with |grad| >= 0.05, as for adam-keras below.
  reference_rtol = 1e-4 if case == "adamw-keras" else 1e-7
  for t, (w, k) in enumerate(zip(_reference(reference), theirs), start=1):
    np.testing.assert_allclose(w, k, rtol=reference_rtol,
                               err_msg=f"{case} step {t}")
  # And the lab's optimizer is Keras' (float32; the tolerances of
  # test_first_three_updates_match_the_framework, Adam's eps placement 1e-4).
  tx, _ = optimizers.make_optimizer(_config(**overrides), steps_per_epoch=10)
  rtol = 1e-4 if "adam" in case else 2e-6
  for t, (g, k) in enumerate(zip(_run(tx), theirs), start=1):
    np.testing.assert_allclose(g, k, rtol=rtol, atol=1e-6 * np.abs(k).max(),
                               err_msg=f"{case} step {t}")


def test_documented_eps_differences_where_gradients_are_tiny():
  """Where |grad| is near eps the docstring's caveats show: Keras' Adam
  (eps before bias correction) and torch's Adagrad (eps outside the sqrt)."""
  tiny = [g * 1e-5 for g in GRADS]
  tx, _ = optimizers.make_optimizer(_config(framework="keras"), 10)
  got = _run(tx, tiny)[0]
  keras = _reference(keras_adam(LR), tiny)[0]
  optax_form = _reference(torch_adam(LR, eps=1e-7), tiny)[0]
  np.testing.assert_allclose(got, optax_form, rtol=1e-5)
  assert np.all(np.abs(got) > 1.05 * np.abs(keras))  # Keras' eps is larger

  tx, _ = optimizers.make_optimizer(_config(optimizer="adagrad"), 10)
  g = np.full(5, 1e-5, np.float32)  # S == eps after one step
  got = _run(tx, [g])[0]
  torch_step = _reference(adagrad(LR, *TORCH_ADAGRAD), [g])[0]
  np.testing.assert_allclose(got, torch_step / np.sqrt(2), rtol=1e-4)


def test_coupled_and_decoupled_weight_decay():
  """Adam's coupled decay at (g, p) is Adam without decay at (g + wd*p, p),
  bit for bit; adamw's update is Adam's without decay - lr*wd*p."""
  wd, p = 0.1, jnp.asarray(P0)
  make = lambda **kw: optimizers.make_optimizer(_config(**kw), 10)[0]

  def updates(tx, grads):  # at fixed parameters p
    state, out = tx.init(p), []
    for g in grads:
      u, state = tx.update(jnp.asarray(g), state, p)
      out.append(np.asarray(u))
    return np.array(out)

  plain = updates(make(), GRADS)
  coupled = updates(make(weight_decay=wd), GRADS)
  adamw = updates(make(optimizer="adamw", weight_decay=wd), GRADS)
  np.testing.assert_array_equal(
      coupled, updates(make(), [jnp.asarray(g) + wd * p for g in GRADS]))
  np.testing.assert_allclose(adamw, plain - LR * wd * P0, rtol=1e-6)
  assert np.abs(adamw - coupled).max() > 1e-4


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_frozen_parameters_never_decay(name):
  params = {"frozen": {"kernel": jnp.asarray(P0)},
            "trained": {"kernel": jnp.asarray(P0)}}
  mask = {"frozen": {"kernel": False}, "trained": {"kernel": True}}
  base, _ = optimizers.make_optimizer(
      _config(optimizer=name, weight_decay=0.1), 10)
  tx = freezing.make_optimizer(base, mask)
  state = tx.init(params)
  zero = jax.tree.map(jnp.zeros_like, params)  # only the decay moves them
  for _ in range(2):
    updates, state = tx.update(zero, state, params)
    assert np.asarray(updates["frozen"]["kernel"]).tobytes() == bytes(4 * 5)
    trained = np.asarray(updates["trained"]["kernel"])
    assert np.all(np.sign(trained) == -np.sign(P0)), trained  # towards 0
    params = freezing.apply_updates(params, updates, mask)
  assert np.asarray(params["frozen"]["kernel"]).tobytes() == P0.tobytes()


def test_optimizer_kwargs_override_the_defaults():
  config = _config(optimizer="rmsprop")
  config.optimizer_kwargs.eps = 1.0
  config.optimizer_kwargs.eps_in_sqrt = True
  assert optimizers.optimizer_arguments(config)["eps"] == 1.0
  tx, _ = optimizers.make_optimizer(config, 10)
  np.testing.assert_allclose(_run(tx), _reference(rmsprop(LR, 0.99, 1.0, True)),
                             rtol=2e-6)
  default_tx, _ = optimizers.make_optimizer(_config(optimizer="rmsprop"), 10)
  assert np.abs(_run(tx)[0] - _run(default_tx)[0]).max() > 1e-3


def test_a_bad_optimizer_kwarg_is_a_user_error():
  config = _config()
  config.optimizer_kwargs.epsilon = 1e-3
  with pytest.raises(UserError, match=r"^config\.optimizer_kwargs: 'epsilon' "
                     r"is not an argument of optax\.adam \(accepted: b1, b2, "
                     r"eps, eps_root, mu_dtype, nesterov\)$"):
    optimizers.make_optimizer(config, 10)
  with pytest.raises(UserError, match="optimizer_kwargs: 'epsilon'"):
    optimizers.validate(config)
  config = _config()
  config.optimizer_kwargs.learning_rate = 0.1
  with pytest.raises(UserError, match="optimizer_kwargs.learning_rate"):
    optimizers.validate(config)


def test_constant_rate_adds_no_schedule_state():
  """The default (constant, no warmup) step is as before: Adam's mu, nu and
  one counter; a schedule adds its own counter."""
  n = P0.size
  for overrides, leaves in (({}, 2 * n + 1),
                            ({"lr_schedule": "cosine"}, 2 * n + 2)):
    tx, _ = optimizers.make_optimizer(_config(**overrides), 10)
    size = sum(x.size for x in jax.tree.leaves(tx.init(jnp.asarray(P0))))
    assert size == leaves, overrides


# --------------------------------------------------------------- schedules

def _lr(config, steps_per_epoch, step):
  return optimizers.learning_rate_at(
      optimizers.make_schedule(config, steps_per_epoch), step)


def test_piecewise_schedule_of_seed_001():
  config = _config(lr_schedule="piecewise", num_epochs=25,
                   lr_boundaries=(7, 14, 21),
                   lr_values=(3e-4, 3e-5, 3e-6, 3e-7), learning_rate=1.0)
  spe = 10  # epoch 7 (1-based) is steps 60-69, epoch 8 starts at step 70
  expected = {0: 3e-4, 69: 3e-4, 70: 3e-5, 139: 3e-5, 140: 3e-6, 209: 3e-6,
              210: 3e-7, 249: 3e-7}
  for step, value in expected.items():
    assert _lr(config, spe, step) == np.float32(value), step


def test_step_schedule_of_seed_002():
  config = _config(lr_schedule="step", lr_step_epochs=10, lr_step_factor=0.1,
                   num_epochs=30)
  spe = 5
  for epoch, value in ((0, LR), (9, LR), (10, LR * 0.1), (19, LR * 0.1),
                       (20, LR * 0.01)):
    for step in (epoch * spe, epoch * spe + spe - 1):
      assert _lr(config, spe, step) == pytest.approx(value, rel=1e-6), epoch


def test_cosine_schedule_and_warmup():
  config = _config(lr_schedule="cosine", num_epochs=20)
  for step, value in ((0, LR), (100, LR / 2), (200, 0.0)):
    assert _lr(config, 10, step) == pytest.approx(value, rel=1e-6, abs=1e-12)
  config = _config(warmup_epochs=2)
  assert _lr(config, 10, 0) == 0.0
  assert _lr(config, 10, 10) == pytest.approx(LR / 2)
  assert _lr(config, 10, 20) == pytest.approx(LR)
  assert _lr(config, 10, 150) == pytest.approx(LR)
  # cosine decays over the epochs after the warmup
  config = _config(lr_schedule="cosine", num_epochs=22, warmup_epochs=2)
  assert _lr(config, 10, 20) == pytest.approx(LR)
  assert _lr(config, 10, 120) == pytest.approx(LR / 2, rel=1e-6)
  assert _lr(config, 10, 220) == pytest.approx(0.0, abs=1e-12)
  # piecewise boundaries stay counted from the start of training
  config = _config(lr_schedule="piecewise", num_epochs=25, warmup_epochs=2,
                   lr_boundaries=(7,), lr_values=(4e-4, 4e-5))
  assert _lr(config, 10, 10) == pytest.approx(2e-4)
  assert _lr(config, 10, 69) == pytest.approx(4e-4)
  assert _lr(config, 10, 70) == pytest.approx(4e-5)


def test_the_schedule_drives_the_optimizer():
  config = _config(optimizer="sgd", momentum=0.0, lr_schedule="step",
                   lr_step_epochs=2, lr_step_factor=0.1)
  tx, _ = optimizers.make_optimizer(config, steps_per_epoch=1)
  g, p = jnp.ones(3), jnp.zeros(3)
  state, rates = tx.init(p), []
  for _ in range(5):
    updates, state = tx.update(g, state, p)
    rates.append(-float(updates[0]))
  np.testing.assert_allclose(rates, [LR, LR, LR / 10, LR / 10, LR / 100],
                             rtol=1e-6)


# -------------------------------------------------------------- validation

PW = {"lr_schedule": "piecewise", "num_epochs": 25}
VALIDATE_CASES = [
    ({"optimizer": "adma"}, "config.optimizer='adma' is not one of adam, "
     "adamw, sgd, rmsprop, adagrad (did you mean 'adam'?)"),
    ({"framework": "jax"}, "config.framework='jax' is not one of torch, keras"),
    ({"learning_rate": 0.0}, "config.learning_rate=0.0: must be positive"),
    ({"weight_decay": -0.1}, "config.weight_decay=-0.1: must be 0 (off) or "
     "positive"),
    ({"kernel_l2": -1e-4}, "config.kernel_l2=-0.0001: must be 0 (off)"),
    ({"bias_l1": -1.0}, "config.bias_l1=-1.0: must be 0 (off)"),
    ({"momentum": 1.0}, "config.momentum=1.0: must be in [0, 1)"),
    ({"warmup_epochs": 20}, "config.warmup_epochs=20: must be at least 0 and "
     "below num_epochs=20"),
    ({"warmup_epochs": -1}, "config.warmup_epochs=-1: must be at least 0"),
    ({"lr_schedule": "cosin"}, "config.lr_schedule='cosin' is not one of "
     "constant, step, piecewise, cosine (did you mean 'cosine'?)"),
    ({"lr_schedule": "step", "lr_step_epochs": 0},
     "config.lr_step_epochs=0: must be a whole number of epochs, at least 1"),
    ({"lr_schedule": "step", "lr_step_factor": 0.0},
     "config.lr_step_factor=0.0: must be positive"),
    ({**PW, "lr_boundaries": (7, 14, 30), "lr_values": (4, 3, 2, 1)},
     "config.lr_boundaries=(7, 14, 30): boundary 30 is not below "
     "num_epochs=25"),
    ({**PW, "lr_boundaries": (7, 14), "lr_values": (2, 1)},
     "config.lr_values=(2, 1): needs one more value than "
     "lr_boundaries=(7, 14) (3), got 2"),
    ({**PW, "lr_boundaries": (7, 7), "lr_values": (3, 2, 1)},
     "config.lr_boundaries=(7, 7): must be strictly increasing (7 follows 7)"),
    ({**PW, "lr_boundaries": (0, 7), "lr_values": (3, 2, 1)},
     "config.lr_boundaries=(0, 7): must be positive whole epochs"),
    ({**PW, "lr_boundaries": (2.5,), "lr_values": (2, 1)},
     "config.lr_boundaries=(2.5,): must be positive whole epochs"),
    ({**PW, "lr_boundaries": (7,), "lr_values": (1e-3, 0.0)},
     "config.lr_values=(0.001, 0.0): every learning rate must be positive"),
]


@pytest.mark.parametrize("overrides,message", VALIDATE_CASES,
                         ids=[m.split(":")[0].split(" ")[0][:40]
                              for _, m in VALIDATE_CASES])
def test_validate_names_the_field(overrides, message):
  config = _config(**overrides)
  with pytest.raises(UserError) as error:
    optimizers.validate(config)
  assert str(error.value).startswith(message), str(error.value)
  assert "\n" not in str(error.value)


def test_valid_configs_pass():
  optimizers.validate(_config())
  optimizers.validate(_config(
      lr_schedule="piecewise", num_epochs=25, lr_boundaries=(7, 14, 21),
      lr_values=(3e-4, 3e-5, 3e-6, 3e-7), warmup_epochs=1))
  for name in optimizers.OPTIMIZERS:
    for framework in optimizers.FRAMEWORKS:
      optimizers.validate(_config(optimizer=name, framework=framework))


# ---------------------------------------------------------- regularisation

def _params():
  rng = np.random.default_rng(0)
  leaf = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)
  return {"conv1": {"kernel": leaf(3, 3, 2, 4), "bias": leaf(4)},
          "bn": {"scale": leaf(4), "bias": leaf(4)},
          "head": {"fc": {"kernel": leaf(4, 3), "bias": leaf(3)}}}


def _by_hand(strengths, *layers):
  """kernel_l2 * sum(k^2) + kernel_l1 * sum|k| + the same for biases."""
  l2k, l1k, l2b, l1b = (strengths.get(n, 0.0) for n in (
      "kernel_l2", "kernel_l1", "bias_l2", "bias_l1"))
  k, b = (np.concatenate([np.ravel(np.asarray(layer[name], np.float64))
                          for layer in layers]) for name in ("kernel", "bias"))
  return (l2k * (k**2).sum() + l1k * np.abs(k).sum()
          + l2b * (b**2).sum() + l1b * np.abs(b).sum())


def test_regularization_matches_a_hand_computation():
  params = _params()
  strengths = dict(kernel_l2=1e-3, kernel_l1=2e-4, bias_l2=3e-3, bias_l1=4e-4)
  got = optimizers.regularization(params, _config(**strengths))
  assert got.dtype == jnp.float32 and got.shape == ()
  both = (params["conv1"], params["head"]["fc"])
  assert float(got) == pytest.approx(_by_hand(strengths, *both), rel=1e-6)
  for name, value in strengths.items():  # each strength on its own
    alone = optimizers.regularization(params, _config(**{name: value}))
    assert float(alone) == pytest.approx(_by_hand({name: value}, *both),
                                         rel=1e-6), name
  # BatchNorm's scale and bias do not count
  params["bn"] = jax.tree.map(lambda x: x * 100, params["bn"])
  assert float(optimizers.regularization(params, _config(**strengths))) == (
      float(got))
  # only trainable leaves count
  mask = jax.tree.map(lambda _: True, params)
  mask["conv1"] = {"kernel": False, "bias": False}
  masked = optimizers.regularization(params, _config(**strengths), mask)
  assert float(masked) == pytest.approx(
      _by_hand(strengths, params["head"]["fc"]), rel=1e-6)


def test_l2_norm_form_matches_torch_norm_and_its_gradient():
  """l2_form='norm': l2 * sum over tensors of torch.norm(p), value and
  gradient from torch's autograd (BatchNorm's leaves still excluded)."""
  torch = pytest.importorskip("torch")
  params = _params()
  params["head"]["fc"]["bias"] = jnp.zeros(3)  # torch.norm's 0 gradient
  config = _config(kernel_l2=1e-3, bias_l2=3e-3, l2_form="norm")
  value, grads = jax.value_and_grad(
      lambda p: optimizers.regularization(p, config))(params)
  layers = {name: {k: torch.tensor(np.asarray(v, np.float64),
                                   requires_grad=True)
                   for k, v in layer.items()}
            for name, layer in (("conv1", params["conv1"]),
                                ("fc", params["head"]["fc"]))}
  expected = sum(1e-3 * torch.norm(layer["kernel"]) + 3e-3 * torch.norm(
      layer["bias"]) for layer in layers.values())
  expected.backward()
  assert float(value) == pytest.approx(expected.item(), rel=1e-6)
  for name, got in (("conv1", grads["conv1"]), ("fc", grads["head"]["fc"])):
    for leaf in ("kernel", "bias"):
      np.testing.assert_allclose(got[leaf], layers[name][leaf].grad.numpy(),
                                 rtol=1e-5, atol=1e-9)
  assert not np.any(np.asarray(grads["bn"]["scale"]))
  # not the squared form
  squared = optimizers.regularization(params, _config(kernel_l2=1e-3,
                                                      bias_l2=3e-3))
  assert float(squared) != pytest.approx(float(value), rel=1e-3)
  with pytest.raises(UserError, match=r"config.l2_form='nrom'.*'norm'"):
    optimizers.validate(_config(l2_form="nrom"))


def test_regularization_off_is_a_constant_zero():
  config = _config()
  assert not optimizers.is_regularized(config)
  assert float(optimizers.regularization(_params(), config)) == 0.0
  jaxpr = jax.make_jaxpr(
      lambda p: optimizers.regularization(p, config))(_params())
  assert not jaxpr.jaxpr.eqns  # nothing traversed
  assert optimizers.is_regularized(_config(bias_l1=1e-5))

"""benchmarks/timing.py: how many calls are made, and which state comes back."""

import jax.numpy as jnp

from benchmarks import timing


def test_seconds_per_step_chains_warmup_and_timed_steps():
  seconds, state = timing.seconds_per_step(lambda s, inc: s + inc,
                                           jnp.zeros(()), (jnp.ones(()),), 7,
                                           block_each=True)
  assert float(state) == timing.WARMUP_STEPS + 7
  assert seconds > 0


def test_seconds_per_call_makes_warmup_plus_repeats_calls():
  calls = []
  def fn(x):
    calls.append(1)
    return x * 2
  seconds = timing.seconds_per_call(fn, (jnp.ones(3),), 5, warmup=2)
  assert len(calls) == 7
  assert seconds > 0

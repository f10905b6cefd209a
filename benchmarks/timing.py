"""Timing of compiled calls and train steps, shared by the benchmarks."""

from __future__ import annotations

import time

# Untimed calls before timing: a fresh executable's first tens of calls run
# ~2x slower on XLA:CPU (BENCHMARKS.md, "XLA:CPU back-end flags").
WARMUP_STEPS = 40


def _timed(call, value, repeats: int, warmup: int, block_each: bool):
  """(mean seconds of value = call(value) over `repeats` calls after `warmup`
  untimed ones, the last value). Blocks once at the end, or after every
  call with `block_each` (no overlap of one call's dispatch with the
  previous one's work)."""
  import jax
  for _ in range(warmup):
    value = call(value)
  jax.block_until_ready(value)
  start = time.perf_counter()
  for _ in range(repeats):
    value = call(value)
    if block_each:
      jax.block_until_ready(value)
  jax.block_until_ready(value)
  return (time.perf_counter() - start) / repeats, value


def seconds_per_call(fn, args, repeats: int, *, warmup: int = WARMUP_STEPS,
                     block_each: bool = False) -> float:
  """Mean seconds of fn(*args) (the same arguments every call) over
  `repeats` calls after `warmup` untimed ones."""
  return _timed(lambda _: fn(*args), None, repeats, warmup, block_each)[0]


def seconds_per_step(step, state, inputs, repeats: int, *,
                     block_each: bool = False):
  """(mean seconds of state = step(state, *inputs) over `repeats` calls after
  WARMUP_STEPS untimed ones, the final state)."""
  return _timed(lambda s: step(s, *inputs), state, repeats, WARMUP_STEPS,
                block_each)

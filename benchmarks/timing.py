"""Timing of compiled train steps, shared by the step benchmarks."""

from __future__ import annotations

import time

# Untimed calls before timing: a fresh executable's first tens of calls run
# ~2x slower on XLA:CPU (BENCHMARKS.md, "XLA:CPU back-end flags").
WARMUP_STEPS = 40


def seconds_per_step(step, state, inputs, repeats: int):
  """(mean seconds of state = step(state, *inputs) over `repeats` calls after
  WARMUP_STEPS untimed ones, the final state); blocks once at the end."""
  import jax
  for _ in range(WARMUP_STEPS):
    state = step(state, *inputs)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(repeats):
    state = step(state, *inputs)
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / repeats, state

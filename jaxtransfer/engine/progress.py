"""What a run shows of itself while it trains: the epoch's progress bar
(tqdm: steps, running loss, images/s) and the memory it has used."""

from __future__ import annotations

import resource
import time

import jax
import tqdm


class EpochBar:
  """A tqdm bar over an epoch's steps showing the loss and images/s."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str,
               images_per_step: int, position: int = 0):
    self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                          disable=not enabled, dynamic_ncols=True,
                          leave=False, unit="step", mininterval=1.0,
                          position=position)
    self._images_per_step = images_per_step
    self._start = time.perf_counter()
    self._done = 0

  def update(self, steps: int, running_loss: float | None = None) -> None:
    self._done += steps
    self._bar.update(steps)
    if running_loss is not None:
      rate = self._done * self._images_per_step / max(
          time.perf_counter() - self._start, 1e-9)
      self._bar.set_postfix(loss=f"{running_loss:.4f}", img_s=f"{rate:,.0f}")

  def close(self) -> None:
    self._bar.close()


def memory_usage() -> dict[str, float]:
  """Peak host RSS of this process and, where the backend reports it, the
  peak device memory (MiB)."""
  usage = {"host_peak_rss_mb": round(
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
  stats = jax.local_devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    usage["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
  return usage

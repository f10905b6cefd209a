"""TensorBoard event files: the scalars of metrics.jsonl, for `tensorboard --logdir`.

Flax's examples write their metrics as TensorBoard summaries (through clu,
which needs TensorFlow); tensorboardX writes the same event files without it.

  <workdir>/tensorboard/seed_<k>/events.out.tfevents.*

A directory per seed, so that TensorBoard draws a study arm's seeds as
separate runs. Each epoch's scalars are written at its optimizer step, as the
flax examples do. metrics.jsonl stays the record: the event files are a view
of it, rewritten from it whenever a run starts or resumes, so a resumed run
shows every epoch once and nothing is in them that metrics.jsonl lacks.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Iterable

from absl import logging

from jaxtransfer.core import workdir as workdir_lib

# metrics.jsonl field -> TensorBoard tag (fields absent from a record, such as
# the autoencoder's accuracy, are skipped).
TAGS = {
    "train_loss": "train/loss",
    "train_accuracy": "train/accuracy",
    "val_loss": "val/loss",
    "val_accuracy": "val/accuracy",
    "epoch_seconds": "perf/epoch_seconds",
    "train_images_per_second": "perf/train_images_per_second",
    "host_peak_rss_mb": "perf/host_peak_rss_mb",
    "device_peak_mb": "perf/device_peak_mb",
}


def _summary_writer():
  """tensorboardX's SummaryWriter, imported here (only process 0 writes).
  tensorboardX imports torch, if installed, only to accept torch tensors
  (1.8 s of every run's start-up here); the scalars written here are
  floats, so torch is kept out of that import (a later `import torch`, as
  the converter's, is unaffected)."""
  import sys
  block = "torch" not in sys.modules
  if block:
    sys.modules["torch"] = None  # `import torch` raises ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    if block:
      del sys.modules["torch"]
  return SummaryWriter


class EventWriters:
  """One tensorboardX writer per seed under `<workdir>/tensorboard/`."""

  def __init__(self, workdir: str, history: Iterable[dict[str, Any]]):
    """Starts the event files over from `history` (the run's metrics so far)."""
    self._make_writer = _summary_writer()
    self._root = os.path.join(workdir, workdir_lib.TENSORBOARD_DIR)
    if os.path.exists(self._root):
      logging.debug("rewriting %s from metrics.jsonl", self._root)
      shutil.rmtree(self._root)
    self._writers = {}
    self.write(history)

  def write(self, records: Iterable[dict[str, Any]]) -> None:
    for record in records:
      seed = record.get("seed", 0)
      if seed not in self._writers:
        self._writers[seed] = self._make_writer(
            os.path.join(self._root, f"seed_{seed}"), flush_secs=30)
      writer = self._writers[seed]
      for field, tag in TAGS.items():
        if field in record:
          writer.add_scalar(tag, record[field], global_step=record["step"])
    for writer in self._writers.values():
      writer.flush()

  def close(self) -> None:
    for writer in self._writers.values():
      writer.close()

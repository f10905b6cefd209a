"""What a model is trained to do: its loss and the metrics summed over an epoch.

A task turns (the model's outputs, its inputs, labels, weights) into the mean
loss that is differentiated and a dict of *sums* (loss_sum, count, ...). Sums add up
across steps, devices and padded evaluation batches (padding has weight 0);
`summarize` divides them once, on the host, at the end of an epoch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _class_sums(num_classes: int, correct, labels, weights) -> dict:
  """Per-class correct and count ([num_classes] each), or {} when 0."""
  if not num_classes:
    return {}
  one_hot = jax.nn.one_hot(labels, num_classes) * weights[:, None]
  return {"class_correct": jnp.sum(one_hot * correct[:, None], axis=0),
          "class_count": jnp.sum(one_hot, axis=0)}


def _class_accuracy(sums) -> dict[str, list]:
  """class_accuracy: per class (None for a class with no examples)."""
  if "class_count" not in sums:
    return {}
  correct, count = np.asarray(sums["class_correct"]), np.asarray(sums["class_count"])
  return {"class_accuracy": [float(c) / float(n) if n else None
                             for c, n in zip(correct, count)]}


@dataclasses.dataclass(frozen=True)
class ClassificationTask:
  """Cross-entropy on integer labels; reports loss and accuracy (and with
  num_classes > 0 the accuracy per class, config.per_class_metrics)."""
  name: str = "classifier"
  num_classes: int = 0

  @property
  def sum_shapes(self) -> dict[str, tuple]:
    per_class = ({"class_correct": (self.num_classes,),
                  "class_count": (self.num_classes,)}
                 if self.num_classes else {})
    return {"loss_sum": (), "correct": (), "count": (), **per_class}

  def loss_and_sums(self, logits, inputs, labels, weights):
    del inputs
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    count = jnp.sum(weights)
    sums = {"loss_sum": jnp.sum(losses * weights),
            "correct": jnp.sum(correct * weights), "count": count,
            **_class_sums(self.num_classes, correct, labels, weights)}
    return sums["loss_sum"] / jnp.maximum(count, 1.0), sums

  def with_hyper(self, hyper: dict) -> "ClassificationTask":
    del hyper  # no loss weights
    return self

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / count,
            "accuracy": float(sums["correct"]) / count,
            **_class_accuracy(sums), **_regularization(sums, count)}


@dataclasses.dataclass(frozen=True)
class ReconstructionTask:
  """Mean squared error between the reconstruction and the model's input."""
  name: str = "autoencoder"
  sum_shapes = {"loss_sum": (), "count": ()}

  def loss_and_sums(self, reconstruction, inputs, labels, weights):
    del labels
    errors = jnp.mean(
        jnp.square(reconstruction - inputs.astype(jnp.float32)), axis=(1, 2, 3))
    count = jnp.sum(weights)
    sums = {"loss_sum": jnp.sum(errors * weights), "count": count}
    return sums["loss_sum"] / jnp.maximum(count, 1.0), sums

  def with_hyper(self, hyper: dict) -> "ReconstructionTask":
    del hyper
    return self

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / count,
            **_regularization(sums, count)}


@dataclasses.dataclass(frozen=True)
class JointTask:
  """Seed 002: loss = alpha * cross-entropy + beta * reconstruction MSE
  (+ delta * the jigsaw reconstruction's MSE), from one encoder (outputs
  {'logits', 'reconstruction'[, 'jigsaw_reconstruction']}; the target of
  both reconstructions is the model's input, normalised). `loss` is the weighted sum;
  each term is reported on its own (classification_loss,
  reconstruction_loss), with the accuracy."""
  alpha: float = 1.0
  beta: float = 1.0
  delta: float = 0.0  # the jigsaw term's weight
  name: str = "joint"
  num_classes: int = 0

  def with_hyper(self, hyper: dict) -> "JointTask":
    """This task with one model's loss weights (a vectorised sweep's: Python
    floats, or traced scalars under vmap)."""
    return dataclasses.replace(self, alpha=hyper.get("joint.alpha", self.alpha),
                               beta=hyper.get("joint.beta", self.beta))

  @property
  def sum_shapes(self) -> dict[str, tuple]:
    jigsaw = {"jigsaw_sum": ()} if self.delta else {}
    return {"ce_sum": (), "mse_sum": (), **jigsaw,
            **ClassificationTask(num_classes=self.num_classes).sum_shapes}

  def loss_and_sums(self, outputs, inputs, labels, weights):
    logits = outputs["logits"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    target = inputs.astype(jnp.float32)
    mse = jnp.mean(jnp.square(outputs["reconstruction"] - target),
                   axis=(1, 2, 3))
    losses = self.alpha * ce + self.beta * mse
    jigsaw = {}
    if self.delta:
      jigsaw_mse = jnp.mean(jnp.square(outputs["jigsaw_reconstruction"]
                                       - target), axis=(1, 2, 3))
      losses = losses + self.delta * jigsaw_mse
      jigsaw = {"jigsaw_sum": jnp.sum(jigsaw_mse * weights)}
    correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
    count = jnp.sum(weights)
    sums = {"loss_sum": jnp.sum(losses * weights),
            "ce_sum": jnp.sum(ce * weights), "mse_sum": jnp.sum(mse * weights),
            "correct": jnp.sum(correct * weights), "count": count, **jigsaw,
            **_class_sums(self.num_classes, correct, labels, weights)}
    return sums["loss_sum"] / jnp.maximum(count, 1.0), sums

  def summarize(self, sums: dict[str, Any]) -> dict[str, float]:
    count = max(float(sums["count"]), 1.0)
    jigsaw = ({"jigsaw_loss": float(sums["jigsaw_sum"]) / count}
              if "jigsaw_sum" in sums else {})
    return {"loss": float(sums["loss_sum"]) / count,
            "classification_loss": float(sums["ce_sum"]) / count,
            "reconstruction_loss": float(sums["mse_sum"]) / count, **jigsaw,
            "accuracy": float(sums["correct"]) / count,
            **_class_accuracy(sums), **_regularization(sums, count)}


def _regularization(sums: dict[str, Any], count: float) -> dict[str, float]:
  """With a regulariser (training only): `loss` stays the data term, as the
  validation loss; `regularization` is the mean penalty over the epoch's
  steps and `total_loss` what was minimised."""
  if "regularization_sum" not in sums:
    return {}
  penalty = float(sums["regularization_sum"]) / count
  return {"regularization": penalty,
          "total_loss": float(sums["loss_sum"]) / count + penalty}


def make_task(config, num_classes: int = 0):
  """The config's task; num_classes > 0 with config.per_class_metrics adds
  the per-class accuracy."""
  per_class = num_classes if config.get("per_class_metrics", False) else 0
  if config.task == "autoencoder":
    return ReconstructionTask()
  if config.task == "joint":
    return JointTask(float(config.joint.alpha), float(config.joint.beta),
                     float(config.joint.delta), num_classes=per_class)
  return ClassificationTask(num_classes=per_class)


def zero_sums(task) -> dict[str, jax.Array]:
  return {name: jnp.zeros(shape, jnp.float32)
          for name, shape in task.sum_shapes.items()}

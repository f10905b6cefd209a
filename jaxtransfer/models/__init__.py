"""The networks, by name: `config.model` picks one from MODELS.

Every registered model is a flax.linen Module with
  __call__(x, train=False)                -> float32 logits [B, classes]
  features(x, train=False)                -> the body's output (what a frozen
                                             body's feature cache stores)
  classify_features(features, train=False) -> logits from body features
and top-level parameter collections `body` and `head` (freezing rules and
weight loading match 'body/...' and 'head/...'). Dropout draws from the
'dropout' rng when train=True. BatchNorm running statistics live in the
`batch_stats` collection; a norm whose module path ('body/bn1') is in the
model's `frozen_norms` runs in inference mode even when training. The
compute dtype is `dtype`; parameters stay float32.

  alexnet              the seed study's AlexNet body + 2304 -> 500 -> N head
  alexnet_torchvision  torchvision's whole AlexNet, dropout included
  alexnet_bn           seed 004's Keras AlexNet with BatchNorm, 32 px
  lenet                seed 004's Keras LeNet, 28x28x1
  lenet_stem, lenet_rgb  its two STL-10 transfers: a 96 -> 28 px stem in
                       front, or RGB at any size (lenet.py)
  notation             seed 002's small nets, from its notation (notation.py)
  vgg16, vgg13_bn,     torchvision's VGGs (vgg.py)
  vgg19, vgg19_bn
  resnet50             torchvision's ResNet-50 (resnet.py)
                       (vgg16 and resnet50 also with seed 002's transposed-
                       conv decoder for task='joint': zoo_joint.py)
  densenet121          torchvision's DenseNet-121 (densenet.py)

The torchvision models (alexnet_torchvision and the zoo below it) take
config.head '' (torchvision's own classifier, N outputs) or 'linear' (one
Dense layer on the pooled features); their parameter paths follow
torchvision's module names, so `jaxtransfer convert --arch=NAME` maps a
torchvision state_dict onto them (conversion.py). Their `features` are the
pooled body output: [B, 6, 6, 256] (AlexNet), [B, 7, 7, 512] (VGG),
[B, 2048] (ResNet-50), [B, 1024] (DenseNet-121).

A new model is a module defining a ModelSpec, registered below.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import flax.linen as nn
import jax

from jaxtransfer.core.errors import UserError
from jaxtransfer.models import (alexnet, alexnet_bn, densenet, lenet, notation,
                                resnet, vgg, zoo_joint)
from jaxtransfer.models.alexnet import (ALEXNET_FEATURES, BODY_CHANNELS,
                                        MIN_IMAGE_SIZE, AlexNetBody,
                                        AlexNetTorchvision, Autoencoder,
                                        Classifier, Decoder,
                                        ImageNetClassifier, TorchvisionAlexNet,
                                        TorchvisionHead, body_spatial_sizes,
                                        check_image_size, feature_dim)
from jaxtransfer.models.alexnet_bn import AlexNetBN
from jaxtransfer.models.common import (LinearHead, ModelSpec, Rules, conv_out,
                                       adaptive_avg_pool, compute_dtype,
                                       dropout_rate, head_choice,
                                       max_pool_3x3_s2)
from jaxtransfer.models.densenet import DenseNet121
from jaxtransfer.models.initializers import (KERNEL_INITS, init_spec,
                                             layer_inits)
from jaxtransfer.models.lenet import LeNet
from jaxtransfer.models.resnet import ResNet50
from jaxtransfer.models.vgg import VGG

MODELS: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
  """Adds `spec` to MODELS under spec.name (a second, different spec of the
  same name is an error)."""
  if MODELS.get(spec.name, spec) is not spec:
    raise ValueError(f"a model named {spec.name!r} is already registered")
  MODELS[spec.name] = spec
  return spec


for _spec in (alexnet.ALEXNET_SPEC, alexnet.TORCHVISION_SPEC, alexnet_bn.SPEC,
              lenet.SPEC, lenet.STEM_SPEC, lenet.RGB_SPEC, notation.SPEC, *vgg.SPECS, resnet.SPEC,
              densenet.SPEC):
  register(zoo_joint.with_decoder(_spec))
del _spec


def get_spec(name: str) -> ModelSpec:
  """The registered model `name`; an unknown name is a UserError naming the
  known ones and the nearest match."""
  if name in MODELS:
    return MODELS[name]
  near = difflib.get_close_matches(str(name), list(MODELS), n=1)
  hint = f" (did you mean {near[0]!r}?)" if near else ""
  raise UserError(f"config.model={name!r} is not one of "
                  f"{', '.join(MODELS)}{hint}")


def check_head(config, spec: ModelSpec) -> None:
  """config.head must be one the model takes (spec.heads)."""
  head = head_choice(config)
  if head not in spec.heads:
    accepted = ", ".join(repr(h) for h in spec.heads)
    raise UserError(f"config.head={head!r} is not one model {spec.name!r} "
                    f"takes ({accepted}; '' is the model's own head)")


def make_model(config, num_classes: int,
               frozen_norms: Iterable[str] = ()) -> nn.Module:
  """The model the config's task trains: config.model's classifier, or for
  task='autoencoder' the AlexNet autoencoder (model 'alexnet' only).

  Configs from before the registry (no `model` field) mean 'alexnet'.
  """
  name = getattr(config, "model", "alexnet")
  spec = get_spec(name)
  dtype = compute_dtype(config)
  if getattr(config, "task", "classifier") == "autoencoder":
    if name != "alexnet":
      raise UserError(
          f"config.task='autoencoder' needs config.model='alexnet' (the "
          f"decoder mirrors its body); config.model={name!r} has none")
    check_image_size(config.image_size)
    return Autoencoder(config.image_size, init_spec(config), dtype)
  if getattr(config, "task", "classifier") == "joint":
    if spec.build_joint is None:
      joint = [n for n, s in MODELS.items() if s.build_joint is not None]
      raise UserError(f"config.task='joint' needs a model with a decoder "
                      f"({', '.join(joint)}); config.model={name!r} has none")
    return spec.build_joint(config, num_classes, dtype=dtype,
                            frozen_norms=tuple(frozen_norms))
  if config.image_size < spec.min_image_size:
    raise UserError(
        f"config.image_size={config.image_size} is too small for "
        f"config.model={name!r}: it needs at least {spec.min_image_size} px")
  check_head(config, spec)
  return spec.build(config, num_classes, dtype=dtype,
                    frozen_norms=tuple(frozen_norms))


def _key_name(key: Any) -> str:
  return str(getattr(key, "key", getattr(key, "idx", key)))


def norm_module_paths(batch_stats) -> list[str]:
  """Module paths of the BatchNorms in a `batch_stats` tree, in tree order:
  ['body/bn1', ..., 'head/bn9'] (each holds `mean` and `var`)."""
  paths = []
  for path, _ in jax.tree_util.tree_flatten_with_path(batch_stats)[0]:
    name = "/".join(_key_name(k) for k in path[:-1])
    if name not in paths:
      paths.append(name)
  return paths


def frozen_norm_paths(batch_stats, trainable) -> tuple[str, ...]:
  """The BatchNorms none of whose parameters train, given the trainable mask
  over `params` (freezing.trainable_mask): what to pass as frozen_norms so a
  frozen norm keeps its statistics too, as Keras does."""
  flags: dict[str, list[bool]] = {}
  for path, flag in jax.tree_util.tree_flatten_with_path(trainable)[0]:
    module = "/".join(_key_name(k) for k in path[:-1])
    flags.setdefault(module, []).append(bool(flag))
  return tuple(p for p in norm_module_paths(batch_stats)
               if not any(flags.get(p, [True])))


__all__ = [
    "ALEXNET_FEATURES", "AlexNetBN", "AlexNetBody", "AlexNetTorchvision",
    "Autoencoder", "BODY_CHANNELS", "Classifier", "Decoder",
    "DenseNet121", "ImageNetClassifier", "KERNEL_INITS", "LeNet",
    "LinearHead", "MIN_IMAGE_SIZE", "MODELS", "ModelSpec", "ResNet50",
    "Rules", "TorchvisionAlexNet", "TorchvisionHead", "VGG",
    "adaptive_avg_pool", "body_spatial_sizes", "check_head",
    "check_image_size", "compute_dtype", "dropout_rate", "feature_dim",
    "frozen_norm_paths",
    "get_spec", "make_model", "max_pool_3x3_s2", "norm_module_paths",
    "register", "conv_out", "layer_inits",
]

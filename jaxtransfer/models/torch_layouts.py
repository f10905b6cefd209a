"""What torchvision's state_dict of each architecture holds, and where each
array goes in the Flax model: the converter's tables (conversion.py).

Nothing here is written by hand per array: `layout(arch)` derives every
torch key and shape from the Flax model's own parameter shapes
(jax.eval_shape of its init) through the model module's `torch_module`
name map, so the models and the converter cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
from typing import Any, Callable

import jax.numpy as jnp
import ml_collections

from jaxtransfer import models
from jaxtransfer.core.errors import UserError
from jaxtransfer.models import densenet, resnet, vgg

TORCHVISION_BASE = "https://download.pytorch.org/models/"
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LAYOUT_IMAGE_SIZE = 224  # parameter shapes do not depend on it

# AlexNet: torch module -> Flax name, for the body and the ImageNet classifier.
BODY_LAYERS = {"features.0": "conv1", "features.3": "conv2",
               "features.6": "conv3", "features.8": "conv4",
               "features.10": "conv5"}
CLASSIFIER_LAYERS = {"classifier.1": "fc6", "classifier.4": "fc7",
                     "classifier.6": "fc8"}


def _alexnet_module(part: str, path: tuple[str, ...]) -> str:
  names = BODY_LAYERS if part == "body" else CLASSIFIER_LAYERS
  return {flax: torch for torch, flax in names.items()}[path[0]]


@dataclasses.dataclass(frozen=True)
class Arch:
  """A torchvision architecture the converter knows."""
  name: str  # --arch
  model: str  # the registry model whose config.head='' head is torchvision's
  file: str  # torchvision's ImageNet file, under TORCHVISION_BASE
  weights: str  # its torchvision.models enum, for messages
  torch_module: Callable[[str, tuple[str, ...]], str]  # (part, flax path)
  classes_layer: str  # the head module whose outputs are the classes
  flattened_input: str | None = None  # head module fed the flattened map
  remap_keys: Callable[[dict], dict] | None = None  # legacy key names
  models: tuple[str, ...] = ()  # config.model values it initialises

  @property
  def url(self) -> str:
    return TORCHVISION_BASE + self.file

  @property
  def initialises(self) -> tuple[str, ...]:
    return self.models or (self.model,)


def _archs() -> dict[str, Arch]:
  archs = [Arch("alexnet", "alexnet_torchvision", ALEXNET_FILE,
                "AlexNet_Weights.IMAGENET1K_V1", _alexnet_module, "fc8", "fc6",
                models=("alexnet", "alexnet_torchvision"))]
  for name, file, enum in (
      ("vgg16", "vgg16-397923af.pth", "VGG16_Weights"),
      ("vgg13_bn", "vgg13_bn-abd245e5.pth", "VGG13_BN_Weights"),
      ("vgg19", "vgg19-dcbb9e9d.pth", "VGG19_Weights"),
      ("vgg19_bn", "vgg19_bn-c79401a0.pth", "VGG19_BN_Weights")):
    archs.append(Arch(name, name, file, f"{enum}.IMAGENET1K_V1",
                      functools.partial(vgg.torch_module, name), "fc8", "fc6"))
  archs.append(Arch("resnet50", "resnet50", "resnet50-0676ba61.pth",
                    "ResNet50_Weights.IMAGENET1K_V1", resnet.torch_module,
                    "fc"))
  archs.append(Arch("densenet121", "densenet121", "densenet121-a639ec97.pth",
                    "DenseNet121_Weights.IMAGENET1K_V1", densenet.torch_module,
                    "classifier", remap_keys=densenet.remap_legacy_keys))
  return {arch.name: arch for arch in archs}


ARCHS: dict[str, Arch] = _archs()


def get_arch(name: str) -> Arch:
  """ARCHS[name]; an unknown name is a UserError naming the choices."""
  if name in ARCHS:
    return ARCHS[name]
  near = difflib.get_close_matches(str(name), list(ARCHS), n=1)
  hint = f" (did you mean {near[0]!r}?)" if near else ""
  raise UserError(f"--arch={name!r} is not one of {', '.join(ARCHS)}{hint}")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One torch array of an architecture and where it goes."""
  torch_key: str  # 'layer1.0.bn1.running_mean'
  shape: tuple[int | None, ...]  # torch's; None: any (the class count)
  tree: str  # 'body', 'batch_stats' or 'classifier' (the output's top level)
  path: tuple[str, ...]  # below `tree`: ('body', 'layer1', '0', 'bn1', 'mean')
  kind: str  # 'conv', 'linear', 'flat_linear' (reordered columns), 'copy'
  pooled: tuple[int, ...] = ()  # flat_linear: the (H, W, C) map it reads


_TORCH_LEAF = {"kernel": "weight", "scale": "weight", "bias": "bias",
               "mean": "running_mean", "var": "running_var"}
_LEAF_ORDER = ("weight", "bias", "running_mean", "running_var")


def _natural(text: str) -> tuple:
  return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def key_name(key: Any) -> str:
  return str(getattr(key, "key", getattr(key, "idx", key)))


@functools.lru_cache(maxsize=None)
def layout(arch: str) -> tuple[Entry, ...]:
  """Every torch array of `arch` (torch's order), derived from the Flax
  model's parameter shapes (jax.eval_shape of its init at 224 px, 1000
  classes, config.head='') through the model's `torch_module` names."""
  import jax

  spec = get_arch(arch)
  config = ml_collections.ConfigDict(dict(
      head="", dropout=-1.0, bn_momentum=-1.0, kernel_init="torch",
      head_hidden=500))
  model = models.get_spec(spec.model).build(config, 1000, dtype=jnp.float32)
  x = jax.ShapeDtypeStruct((1, LAYOUT_IMAGE_SIZE, LAYOUT_IMAGE_SIZE, 3),
                           jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), x)
  pooled = jax.eval_shape(
      lambda v, x: model.apply(v, x, method="features"), variables, x).shape[1:]
  parts = [("body", "body", variables["params"]["body"]),
           ("batch_stats", "body", variables.get("batch_stats", {}).get("body", {})),
           ("classifier", "head", variables["params"]["head"])]
  entries = []
  for tree, part, arrays in parts:
    for path, leaf in jax.tree_util.tree_flatten_with_path(arrays)[0]:
      names = tuple(key_name(k) for k in path)
      module, name = names[:-1], names[-1]
      shape, kind = tuple(leaf.shape), "copy"
      if name == "kernel" and len(shape) == 4:  # HWIO -> OIHW
        shape, kind = (shape[3], shape[2], shape[0], shape[1]), "conv"
      elif name == "kernel":  # (in, out) -> (out, in)
        shape, kind = (shape[1], shape[0]), "linear"
        if part == "head" and module == (spec.flattened_input,):
          kind = "flat_linear"
      if part == "head" and module == (spec.classes_layer,):
        shape = (None, *shape[1:])  # any class count
      entries.append(Entry(
          f"{spec.torch_module(part, module)}.{_TORCH_LEAF[name]}", shape,
          tree, (part, *names) if tree == "batch_stats" else names, kind,
          tuple(pooled) if kind == "flat_linear" else ()))
  order = lambda e: (_natural(e.torch_key.rsplit(".", 1)[0]),
                     _LEAF_ORDER.index(e.torch_key.rsplit(".", 1)[1]))
  return tuple(sorted(entries, key=order))


def norm_counters(entries) -> set[str]:
  """The num_batches_tracked keys the BatchNorms may carry (ignored)."""
  return {e.torch_key.rsplit(".", 1)[0] + ".num_batches_tracked"
          for e in entries if e.tree == "batch_stats"}



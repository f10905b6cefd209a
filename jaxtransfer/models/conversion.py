"""torchvision weights -> a Flax parameter tree (the ImageNet arm).

  jaxtransfer convert [--arch=alexnet] --torch_checkpoint=FILE --out=DIR [--with_classifier]

`--arch` is one of ARCHS: 'alexnet' (for the models alexnet and
alexnet_torchvision), 'vgg16', 'vgg13_bn', 'vgg19', 'vgg19_bn', 'resnet50',
'densenet121' (the registry's models of those names). Reads a torchvision
`state_dict` (`.pth` through `torch.load(weights_only=True)`, which unpickles
tensors only, or `.safetensors`), checks every key and shape before
converting anything, and writes an orbax checkpoint of

  body/...                the model's body (config.model=arch; AlexNet:
                          conv1..conv5 from features.{0,3,6,8,10})
  batch_stats/body/...    BatchNorm running_mean/running_var as mean/var
                          (the BatchNorm archs)
  classifier/...          with --with_classifier: the model's config.head=''
                          head, torchvision's classifier (fc8/fc/classifier
                          with the file's class count, 1000 for ImageNet)

plus `conversion.json` (arch, source, SHA-256, shapes). Conv weights go
OIHW -> HWIO, Linear (out, in) -> Dense (in, out), BatchNorm weight/bias ->
scale/bias; the Linear fed the flattened pooled map (AlexNet's and VGG's
fc6) has its columns reordered from PyTorch's (C, H, W) flatten to NHWC's
(H, W, C). `num_batches_tracked` is ignored. The expected torch keys and
shapes (torch_layouts.layout) are derived from the Flax model's own
parameter shapes through the model module's `torch_module` name map, so the
two cannot drift apart.
`models.TorchvisionAlexNet` runs a converted AlexNet tree. Only this module
touches torch, and only when reading a `.pth`; training never imports it.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
from typing import Any, Mapping

from absl import logging
import numpy as np

from jaxtransfer.core.errors import UserError
# Re-exported: the architectures, their layouts, AlexNet's module names.
from jaxtransfer.models.torch_layouts import (ALEXNET_FILE, ARCHS, BODY_LAYERS,
                                              CLASSIFIER_LAYERS,
                                              TORCHVISION_BASE, Arch, Entry,
                                              get_arch, key_name, layout,
                                              norm_counters)

TORCHVISION_URL = TORCHVISION_BASE + ALEXNET_FILE
TORCHVISION_FILE = os.path.basename(TORCHVISION_URL)
PARAMS_SUBDIR = "params"
INFO_FILE = "conversion.json"
CONVERT_COMMAND = (f"jaxtransfer convert --torch_checkpoint={TORCHVISION_FILE} "
                   "--out=DIR")

_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torchvision's HASH_REGEX
MAX_PROBLEMS = 10  # listed in an error; the rest are counted


def convert_command(arch: str = "alexnet") -> str:
  """The command that converts torchvision's `arch` file."""
  if arch == "alexnet":
    return CONVERT_COMMAND
  return (f"jaxtransfer convert --arch={arch} "
          f"--torch_checkpoint={ARCHS[arch].file} --out=DIR")


def command_for_model(model: str) -> str:
  """The convert command for the weights config.model='model' loads."""
  arch = next((a.name for a in ARCHS.values() if model in a.initialises),
              "alexnet")
  return convert_command(arch)


def _where_to_get_it(arch: str = "alexnet") -> str:
  spec = get_arch(arch)
  return (f"torchvision's ImageNet {arch} weights are {spec.url} "
          f"(torchvision.models.{spec.weights}); download it on a machine "
          "with internet and pass its path")


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def check_name_hash(path: str, digest: str) -> bool | None:
  """torchvision's check: a name like alexnet-owt-7be5be79.pth promises a
  SHA-256 starting 7be5be79. True/False, or None if the name has no hash."""
  match = _HASH_IN_NAME.search(os.path.basename(path))
  if not match or not match.group(1):
    return None
  return digest.startswith(match.group(1))


def read_state_dict(path: str, arch: str = "alexnet") -> dict[str, np.ndarray]:
  """The arrays of a torch state_dict (.pth/.pt/.bin) or a .safetensors file."""
  if not os.path.isfile(path):
    raise UserError(f"{path} does not exist: {_where_to_get_it(arch)}")
  if path.endswith(".safetensors"):
    try:
      from safetensors.numpy import load_file
    except ImportError:
      raise UserError("reading .safetensors needs the safetensors package: "
                      "pip install -e '.[convert]'") from None
    try:
      return dict(load_file(path))
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f"cannot read {path} as safetensors: {e}") from e
  try:
    import pickle
    import torch
  except ImportError:
    raise UserError("reading a .pth state_dict needs PyTorch: pip install -e "
                    "'.[convert]' (a .safetensors file needs only safetensors)"
                    ) from None
  try:
    # weights_only=True: the unpickler builds tensors and plain containers
    # and refuses anything else, so a file cannot run code on load.
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    wanted = re.search(r"GLOBAL (\S+)", str(e))
    reason = (f"it asks the unpickler for {wanted.group(1)}" if wanted
              else (str(e).splitlines() or [""])[0][:200])
    raise UserError(
        f"refused to load {path}: it is not a plain tensor state_dict and "
        f"would run code when unpickled ({reason}). Only what "
        "torch.load(weights_only=True) accepts is read") from None
  except Exception as e:  # truncated zip, not a torch file, ...
    raise UserError(f"cannot read {path} as a torch checkpoint: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
  if not isinstance(loaded, Mapping):
    raise UserError(f"{path} holds a {type(loaded).__name__}, not a state_dict")
  arrays = {}
  for key, value in loaded.items():
    if not isinstance(value, torch.Tensor):
      raise UserError(f"{path}: {key!r} is a {type(value).__name__}, not a "
                      "tensor: expected a model's state_dict")
    arrays[key] = value.detach().to(torch.float32).cpu().numpy()
  return arrays


def layout_problems(state_dict: Mapping[str, np.ndarray], arch: str,
                    with_classifier: bool) -> list[str]:
  """Every misshapen, unexpected and missing key of `state_dict` for `arch`
  (the classifier's keys are required only with_classifier)."""
  entries = layout(arch)
  known = {e.torch_key: e for e in entries}
  ignored = norm_counters(entries)
  misshapen, unexpected, missing = [], [], []
  for key, array in state_dict.items():
    if key in ignored:
      continue
    if key not in known:
      unexpected.append((key.endswith(".num_batches_tracked"),
                         f"{key}: unexpected {tuple(np.shape(array))}"))
      continue
    expected, found = known[key].shape, tuple(np.shape(array))
    if len(found) != len(expected) or any(
        e is not None and e != f for e, f in zip(expected, found)):
      misshapen.append(f"{key}: shape {found}, expected {_shape_text(expected)}")
  for entry in entries:
    if entry.torch_key not in state_dict and (
        with_classifier or entry.tree != "classifier"):
      missing.append(f"{entry.torch_key}: missing (expected "
                     f"{_shape_text(entry.shape)})")
  unexpected = [text for _, text in sorted(unexpected, key=lambda u: u[0])]
  return _interleaved(misshapen, unexpected, missing)


def _interleaved(*groups: list[str]) -> list[str]:
  """The problems in turns from each group, so that the first few shown
  include every kind."""
  merged = []
  for i in range(max(map(len, groups), default=0)):
    merged += [group[i] for group in groups if i < len(group)]
  return merged


def _looks_like(state_dict, arch: str) -> str | None:
  """The other architecture whose body `state_dict` fits, if any."""
  for other, spec in ARCHS.items():
    renamed = spec.remap_keys(state_dict) if spec.remap_keys else state_dict
    if other != arch and not layout_problems(renamed, other, False):
      return other
  return None


def check_layout(state_dict: Mapping[str, np.ndarray], with_classifier: bool,
                 arch: str = "alexnet") -> None:
  """Raises listing the missing, unexpected or misshapen keys (the first
  MAX_PROBLEMS, and how many more); converts nothing."""
  problems = layout_problems(state_dict, arch, with_classifier)
  if not problems:
    return
  other = _looks_like(state_dict, arch)
  hint = (f"; it is a torchvision {other} state_dict: convert it with "
          f"--arch={other}" if other else "")
  shown = "; ".join(problems[:MAX_PROBLEMS])
  more = (f"; and {len(problems) - MAX_PROBLEMS} more"
          if len(problems) > MAX_PROBLEMS else "")
  raise UserError(
      f"not a torchvision {arch} state_dict: it does not match --arch={arch} "
      f"({len(problems)} problems: {shown}{more}){hint}. Nothing was converted")


def _shape_text(shape) -> str:
  """(64, 3, 3, 3), (64,); N for any size (the class count)."""
  dims = ["N" if d is None else str(d) for d in shape]
  return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _converted(entry: Entry, array: np.ndarray) -> np.ndarray:
  if entry.kind == "conv":
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  if entry.kind == "flat_linear":
    # Columns are PyTorch's flatten of (C, H, W); Flax flattens NHWC.
    height, width, channels = entry.pooled
    array = array.reshape(array.shape[0], channels, height, width)
    array = array.transpose(0, 2, 3, 1).reshape(array.shape[0], -1)
  if entry.kind in ("linear", "flat_linear"):
    return np.ascontiguousarray(array.T)
  return np.asarray(array, dtype=np.float32)


def convert(state_dict: Mapping[str, np.ndarray], with_classifier: bool = False,
            arch: str = "alexnet") -> dict[str, Any]:
  """The Flax tree of a checked torchvision `arch` state_dict:
  {'body', 'batch_stats' (BatchNorm archs), 'classifier' (with_classifier)}."""
  spec = get_arch(arch)
  if spec.remap_keys is not None:
    state_dict = spec.remap_keys(state_dict)
  check_layout(state_dict, with_classifier, arch)
  tree: dict[str, Any] = {}
  for entry in layout(arch):
    if entry.tree == "classifier" and not with_classifier:
      continue
    node = tree.setdefault(entry.tree, {})
    for name in entry.path[:-1]:
      node = node.setdefault(name, {})
    node[entry.path[-1]] = _converted(entry, state_dict[entry.torch_key])
  return tree


def write(out_dir: str, params: dict[str, Any], info: dict[str, Any]) -> str:
  """Writes params as an orbax checkpoint under out_dir/params; never overwrites."""
  import orbax.checkpoint as ocp

  out_dir = os.path.abspath(os.path.expanduser(out_dir))
  if os.path.exists(out_dir) and os.listdir(out_dir):
    raise UserError(f"--out={out_dir} exists and is not empty: choose a new "
                    "directory (nothing is overwritten)")
  os.makedirs(out_dir, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(out_dir, PARAMS_SUBDIR), params)
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(os.path.join(out_dir, INFO_FILE), "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
    f.write("\n")
  return out_dir


def convert_file(torch_checkpoint: str, out_dir: str,
                 with_classifier: bool = False,
                 arch: str = "alexnet") -> dict[str, Any]:
  """`jaxtransfer convert`: read, check, convert, write. Returns the info."""
  spec = get_arch(arch)
  digest = sha256(torch_checkpoint) if os.path.isfile(torch_checkpoint) else ""
  state_dict = read_state_dict(torch_checkpoint, arch)
  name_ok = check_name_hash(torch_checkpoint, digest)
  if name_ok is False:
    raise UserError(
        f"{torch_checkpoint}: its SHA-256 starts {digest[:8]}, but its name "
        f"promises {_HASH_IN_NAME.search(os.path.basename(torch_checkpoint)).group(1)}"
        " (torchvision's check): the file is damaged or not the one its name "
        f"says. Download it again: {spec.url}")
  params = convert(state_dict, with_classifier, arch)
  import jax
  info = {
      "arch": arch,
      "source": os.path.abspath(torch_checkpoint),
      "sha256": digest,
      "sha256_matches_name": name_ok,
      "with_classifier": with_classifier,
      "converted": datetime.datetime.now().isoformat(timespec="seconds"),
      "shapes": {"/".join(key_name(k) for k in path): list(np.shape(array))
                 for path, array in
                 jax.tree_util.tree_flatten_with_path(params)[0]},
  }
  write(out_dir, params, info)
  logging.info("Converted %s %s (%s) to %s", arch, torch_checkpoint,
               "SHA-256 matches its name" if name_ok else
               "no hash in its name to check", out_dir)
  return info


def load_info(directory: str) -> dict[str, Any]:
  """conversion.json of a converted directory ({} if it has none)."""
  path = os.path.join(os.path.abspath(os.path.expanduser(directory)), INFO_FILE)
  if not os.path.isfile(path):
    return {}
  try:
    with open(path) as f:
      info = json.load(f)
  except (OSError, ValueError) as e:
    raise UserError(f"cannot read {path}: {e}") from e
  return info if isinstance(info, dict) else {}


def converted_arch(directory: str) -> str:
  """The --arch a directory was converted with ('alexnet' before --arch)."""
  return str(load_info(directory).get("arch", "alexnet"))


def load_converted(directory: str) -> dict[str, Any]:
  """The parameter tree written by `convert_file`, as numpy arrays."""
  import orbax.checkpoint as ocp

  path = os.path.join(os.path.abspath(os.path.expanduser(directory)),
                      PARAMS_SUBDIR)
  if not os.path.isdir(path):
    raise UserError(f"no converted weights in {directory} (expected "
                    f"{PARAMS_SUBDIR}/ written by: {CONVERT_COMMAND})")
  checkpointer = ocp.StandardCheckpointer()
  try:
    params = checkpointer.restore(path)
  except Exception as e:  # pylint: disable=broad-except
    raise UserError(f"cannot read converted weights in {directory}: "
                    f"{type(e).__name__}: {str(e).splitlines()[0][:200]}") from e
  finally:
    checkpointer.close()
  import jax
  return jax.device_get(params)

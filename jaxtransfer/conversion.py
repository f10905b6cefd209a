"""torchvision AlexNet weights -> a Flax parameter tree (the ImageNet arm).

  jaxtransfer convert --torch_checkpoint=alexnet-owt-7be5be79.pth --out=DIR [--with_classifier]

Reads a torchvision AlexNet `state_dict` (`.pth` through
`torch.load(weights_only=True)`, which unpickles tensors only, or
`.safetensors`), checks every key and shape before converting anything, and
writes an orbax checkpoint of

  body/conv1..conv5/{kernel,bias}       from features.{0,3,6,8,10}: OIHW -> HWIO
  classifier/fc6..fc8/{kernel,bias}     from classifier.{1,4,6} (--with_classifier):
                                        Linear (out, in) -> Dense (in, out); fc6's
                                        9216 inputs reordered from PyTorch's
                                        (C, H, W) flatten to the NHWC (H, W, C) one

plus `conversion.json` (source, SHA-256, shapes). `models.TorchvisionAlexNet`
runs the converted tree. Only this module touches torch, and only when
reading a `.pth`; training never imports it.
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

from jaxtransfer.errors import UserError

TORCHVISION_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
TORCHVISION_FILE = os.path.basename(TORCHVISION_URL)
PARAMS_SUBDIR = "params"
INFO_FILE = "conversion.json"
CONVERT_COMMAND = (f"jaxtransfer convert --torch_checkpoint={TORCHVISION_FILE} "
                   "--out=DIR")

# torch module -> Flax path, for the body and the ImageNet classifier.
BODY_LAYERS = {"features.0": "conv1", "features.3": "conv2",
               "features.6": "conv3", "features.8": "conv4",
               "features.10": "conv5"}
CLASSIFIER_LAYERS = {"classifier.1": "fc6", "classifier.4": "fc7",
                     "classifier.6": "fc8"}
# torchvision's shapes; fc8's output (the class count) may differ (None).
EXPECTED_SHAPES = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (4096, 9216), "classifier.1.bias": (4096,),
    "classifier.4.weight": (4096, 4096), "classifier.4.bias": (4096,),
    "classifier.6.weight": (None, 4096), "classifier.6.bias": (None,),
}
_POOLED = (256, 6, 6)  # (C, H, W) after torchvision's AdaptiveAvgPool2d(6)
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")  # torchvision's HASH_REGEX


def _where_to_get_it() -> str:
  return (f"torchvision's ImageNet AlexNet weights are {TORCHVISION_URL} "
          "(torchvision.models.AlexNet_Weights.IMAGENET1K_V1); download it on "
          "a machine with internet and pass its path")


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


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The arrays of a torch state_dict (.pth/.pt/.bin) or a .safetensors file."""
  if not os.path.isfile(path):
    raise UserError(f"{path} does not exist: {_where_to_get_it()}")
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


def check_layout(state_dict: Mapping[str, np.ndarray],
                 with_classifier: bool) -> None:
  """Raises listing every missing, unexpected or misshapen key; converts nothing."""
  expected = {k: v for k, v in EXPECTED_SHAPES.items()
              if with_classifier or k.startswith("features.")}
  problems = []
  for key, shape in expected.items():
    if key not in state_dict:
      problems.append(f"{key}: missing (expected {_shape_text(shape)})")
      continue
    found = tuple(state_dict[key].shape)
    if len(found) != len(shape) or any(
        e is not None and e != f for e, f in zip(shape, found)):
      problems.append(f"{key}: shape {found}, expected {_shape_text(shape)}")
  unexpected = sorted(set(state_dict) - set(EXPECTED_SHAPES))
  problems += [f"{key}: unexpected {tuple(state_dict[key].shape)}"
               for key in unexpected]
  if problems:
    raise UserError(
        "not a torchvision AlexNet state_dict (" + "; ".join(problems) +
        f"); expected keys: {', '.join(expected)}. Nothing was converted")


def _shape_text(shape) -> str:
  return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def convert(state_dict: Mapping[str, np.ndarray],
            with_classifier: bool = False) -> dict[str, Any]:
  """The Flax parameter tree of a checked torchvision AlexNet state_dict."""
  check_layout(state_dict, with_classifier)
  params: dict[str, Any] = {"body": {}}
  for torch_name, flax_name in BODY_LAYERS.items():
    params["body"][flax_name] = {
        "kernel": np.ascontiguousarray(
            state_dict[f"{torch_name}.weight"].transpose(2, 3, 1, 0)),
        "bias": np.asarray(state_dict[f"{torch_name}.bias"]),
    }
  if with_classifier:
    params["classifier"] = {}
    for torch_name, flax_name in CLASSIFIER_LAYERS.items():
      weight = state_dict[f"{torch_name}.weight"]  # (out, in)
      if flax_name == "fc6":
        # Columns are PyTorch's flatten of (C, H, W); Flax flattens NHWC.
        weight = weight.reshape(weight.shape[0], *_POOLED).transpose(0, 2, 3, 1)
        weight = weight.reshape(weight.shape[0], -1)
      params["classifier"][flax_name] = {
          "kernel": np.ascontiguousarray(weight.T),
          "bias": np.asarray(state_dict[f"{torch_name}.bias"]),
      }
  return params


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
                 with_classifier: bool = False) -> dict[str, Any]:
  """`jaxtransfer convert`: read, check, convert, write. Returns the info."""
  digest = sha256(torch_checkpoint) if os.path.isfile(torch_checkpoint) else ""
  state_dict = read_state_dict(torch_checkpoint)
  name_ok = check_name_hash(torch_checkpoint, digest)
  if name_ok is False:
    raise UserError(
        f"{torch_checkpoint}: its SHA-256 starts {digest[:8]}, but its name "
        f"promises {_HASH_IN_NAME.search(os.path.basename(torch_checkpoint)).group(1)}"
        " (torchvision's check): the file is damaged or not the one its name "
        f"says. Download it again: {TORCHVISION_URL}")
  params = convert(state_dict, with_classifier)
  info = {
      "source": os.path.abspath(torch_checkpoint),
      "sha256": digest,
      "sha256_matches_name": name_ok,
      "with_classifier": with_classifier,
      "converted": datetime.datetime.now().isoformat(timespec="seconds"),
      "shapes": {f"{group}/{layer}/{name}": list(array.shape)
                 for group, layers in params.items()
                 for layer, arrays in layers.items()
                 for name, array in arrays.items()},
  }
  write(out_dir, params, info)
  logging.info("Converted %s (%s) to %s", torch_checkpoint,
               "SHA-256 matches its name" if name_ok else
               "no hash in its name to check", out_dir)
  return info


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

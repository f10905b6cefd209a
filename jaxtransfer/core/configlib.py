"""Helpers for the python config files in `configs/`, and config validation.

The config files follow big_vision: `--config=configs/x.py:arg1,key=value`
passes `arg1,key=value` to `get_config`, which reads it with `parse_arg`. Every
config starts from `configs/default.py`, which returns a *locked* ConfigDict: a
config file or a `--config.field=value` override that names a field that does
not exist fails at once instead of being silently added.

`require` and `one_of` are the checks' one-line errors; the checks themselves
live with the fields they check (engine/validation.py for the run's fields,
data/ for the data's, each feature for its own). Which fields define a run (so that a workdir is never resumed with a
different experiment) is workdir.py's.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from typing import Any

import ml_collections

from jaxtransfer.core.errors import UserError

TASKS = ("classifier", "autoencoder", "joint")
INITS = ("random", "autoencoder", "imagenet", "checkpoint")
VALIDATION_SPLITS = ("test", "holdout", "kfold")
COMPUTE_DTYPES = ("float32", "bfloat16")
NORMALIZATIONS = ("imagenet", "dataset", "none")
STORED_RESIZE = ("crop", "stretch")
SEED_PARALLELISM = ("auto", "vmap", "unroll")
# models/common.py's initialisers (tests/test_initializers.py keeps these in
# step; named here so a config is checked without importing jax).
KERNEL_INITS = ("torch", "lecun_normal", "lecun_uniform", "he_normal",
                "he_uniform", "glorot_normal", "glorot_uniform",
                "random_normal", "random_uniform", "truncated_normal",
                "zeros", "ones")
BIAS_INITS = ("",) + KERNEL_INITS


def parse_arg(arg: str | None, **spec: Any) -> ml_collections.ConfigDict:
  """Parses `"smoke,num_seeds=3"` against `spec` (name -> default value).

  A bare name sets a boolean option to True; `key=value` is converted to the
  type of the default. Unknown names are an error naming the known ones.
  """
  result = ml_collections.ConfigDict(dict(spec))
  # The names the user gave (not a field: `given` reads it), so a preset
  # such as `smoke` never replaces a value the user asked for.
  object.__setattr__(result, "_given", set())
  if not arg:
    return result
  for item in arg.split(","):
    item = item.strip()
    if not item:
      continue
    key, eq, raw = item.partition("=")
    if key not in spec:
      raise UserError(
          f"unknown config argument {key!r} in {arg!r}; known arguments: "
          f"{', '.join(sorted(spec)) or '(none)'}")
    default = spec[key]
    result._given.add(key)  # pylint: disable=protected-access
    if not eq:
      if not isinstance(default, bool):
        raise UserError(f"config argument {key!r} needs a value: {key}=...")
      result[key] = True
    elif isinstance(default, bool):
      if raw.lower() not in ("true", "false", "1", "0"):
        raise UserError(f"config argument {key}={raw!r}: expected true/false")
      result[key] = raw.lower() in ("true", "1")
    else:
      try:
        result[key] = type(default)(raw)
      except ValueError:
        raise UserError(
            f"config argument {key}={raw!r}: expected {type(default).__name__}"
        ) from None
  return result


def given(arg: ml_collections.ConfigDict, name: str) -> bool:
  """Whether the user gave config argument `name` (parse_arg's result)."""
  return name in getattr(arg, "_given", ())


def preset(arg: ml_collections.ConfigDict, name: str, value: Any) -> Any:
  """A preset's value for config argument `name` (e.g. what `smoke` sets),
  unless the user gave the argument: then the user's value."""
  return arg[name] if given(arg, name) else value


def known_fields(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
  """All dotted field names of a config, sub-configs included."""
  names = []
  for key, value in config.items():
    name = prefix + key
    names.append(name)
    if isinstance(value, ml_collections.ConfigDict):
      names.extend(known_fields(value, name + "."))
  return names


def unknown_field_message(field: str, config: ml_collections.ConfigDict) -> str:
  """One line for a field the config does not have, with the nearest known ones."""
  names = known_fields(config)
  near = difflib.get_close_matches(field, names, n=3, cutoff=0.6)
  hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
  return (f"unknown config field {field!r}{hint} "
          f"(known fields: {', '.join(sorted(n for n in names if '.' not in n))})")


def config_spec_in(argv: list[str]) -> str | None:
  """`FILE[:ARG]` of `--config=FILE[:ARG]` (or `--config FILE[:ARG]`), if given."""
  for i, arg in enumerate(argv):
    if arg.startswith("--config="):
      return arg.split("=", 1)[1]
    if arg == "--config" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def config_path_in(argv: list[str]) -> str | None:
  """The config file named on a command line, if any."""
  spec = config_spec_in(argv)
  return spec.split(":", 1)[0] if spec is not None else None


def _load_config_file(path: str, arg: str | None):
  spec = importlib.util.spec_from_file_location("_jaxtransfer_user_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def explain_load_error(argv: list[str], exc: BaseException) -> str:
  """One line for an error raised while absl loaded the config file or
  applied a `--config.field=value` override: loads the file again on its own
  to tell a missing file, a bad field in the file and a bad override apart."""
  spec = config_spec_in(argv)
  if spec is None:
    return f"config: {exc}"
  path, _, arg = spec.partition(":")
  if not os.path.exists(path):
    return f"config file {path} does not exist"
  try:
    config = _load_config_file(path, arg or None)
  except UserError as e:
    return f"{path}: {e}"
  except AttributeError as e:  # a field set in the file that does not exist
    field = str(e).split("'")[1] if "'" in str(e) else str(e)
    return f"{path}: " + unknown_field_message(field, _base_config(path))
  except Exception as e:  # pylint: disable=broad-except
    return f"{path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  fields = known_fields(config)
  for arg_ in argv:
    if arg_.startswith("--config."):
      field = arg_[len("--config."):].split("=", 1)[0]
      if field not in fields:
        return unknown_field_message(field, config)
  return f"config: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _base_config(path: str):
  """configs/default.py next to `path`, for listing the known fields."""
  default = os.path.join(os.path.dirname(os.path.abspath(path)), "default.py")
  return _load_config_file(default, None)


def require(ok: bool, field: str, value: Any, problem: str) -> None:
  """UserError 'config.<field>=<value>: <problem>' unless `ok`."""
  if not ok:
    raise UserError(f"config.{field}={value!r}: {problem}")


def one_of(config, field: str, choices) -> None:
  """UserError unless config.<field> is one of `choices` (with the nearest)."""
  value = config[field]
  if value not in choices:
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise UserError(
        f"config.{field}={value!r} is not one of {', '.join(map(str, choices))}"
        f"{hint}")


def to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """A JSON-round-trippable dict of the config (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def get_dotted(tree: dict, field: str):
  """tree['a']['b'] for field 'a.b' of a nested dict; None where missing."""
  node = tree
  for part in field.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


def flatten(tree, prefix: str = "") -> dict[str, Any]:
  """A nested dict (or ConfigDict) -> {'dotted.field': value}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[prefix + key] = value
  return flat

"""docs/guide/config_reference.md is what docs/config_reference.py makes of
configs/default.py today, and lists every field of get_config() with its
default and a line that documents it."""

import importlib.util
import os

import ml_collections

from conftest import REPO_ROOT

REGENERATE = "python docs/config_reference.py"


def _generator():
  spec = importlib.util.spec_from_file_location(
      "config_reference", os.path.join(REPO_ROOT, "docs", "config_reference.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


GENERATOR = _generator()


def _committed():
  with open(GENERATOR.PAGE) as f:
    return f.read()


def test_committed_page_is_the_generated_one():
  assert _committed() == GENERATOR.render(), (
      "docs/guide/config_reference.md differs from configs/default.py: run "
      f"`{REGENERATE}` from the repository root and commit the page")


def _fields(config, prefix=""):
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and value.keys():
      yield from _fields(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def test_every_field_is_listed_with_its_default_and_a_line():
  from configs import default
  rows = {}
  for line in _committed().splitlines():
    if line.startswith("| `"):
      cells = [c.strip() for c in line.strip("|").split(" | ")]
      rows[cells[0].strip("`")] = cells
  fields = dict(_fields(default.get_config()))
  assert len(fields) > 100 and set(rows) == set(fields)
  for name, value in fields.items():
    field, shown, about = rows[name]
    expected = "{}" if isinstance(value, ml_collections.ConfigDict) else repr(value)
    assert shown == f"`{expected}`".replace("|", "\\|"), name
    assert about.strip(), f"config.{name} has no comment in configs/default.py"


def test_which_comment_documents_a_field():
  source = '''
def get_config(arg=None):
  config = ml_collections.ConfigDict()
  # Block above a.
  config.a = 1
  config.b = 2
  config.c = 3  # beside c
  # above d
  config.d = 4  # beside d
  config.e = 5  # beside e,
                # continued
  config.f = 6

  config.g = 7
  # Items:
  #   'x'
  #   'y': the second
  config.h = ml_collections.ConfigDict()
  config.h.i = 8
'''
  found = GENERATOR.field_comments(source)
  assert found == {
      "a": "Block above a.", "b": "Block above a.", "c": "beside c",
      "d": "above d (beside d)", "e": "beside e, continued",
      "f": "above d",  # the paragraph's last block, not e's continuation
      "g": "",  # a blank line ends the paragraph
      "h": "Items: 'x'; 'y': the second", "h.i": "Items: 'x'; 'y': the second"}

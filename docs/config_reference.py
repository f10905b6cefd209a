"""Writes docs/guide/config_reference.md: every field of
configs/default.py's get_config(), dotted when nested, with its default and
the comment that documents it in default.py.

  python docs/config_reference.py        (from the repository root)

A field's line is its comments: the block right above it and the one
beside it (with the comment lines under it indented past the statement, its
continuation); a field with neither takes the block of the nearest field
above it in the same paragraph (lines with no blank one between), as
`config.augment.hflip` takes the block above `config.augment`. Fields are
listed in the order default.py sets them.
tests/test_config_reference.py regenerates the page and compares.
"""

from __future__ import annotations

import ast
import io
import os
import sys
import tokenize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(ROOT, "configs", "default.py")
PAGE = os.path.join(ROOT, "docs", "guide", "config_reference.md")
COMMAND = "python docs/config_reference.py"
# A block shared by several fields is repeated under each when at most this
# long; a longer one is shown once and the others point to that field.
REPEAT_UP_TO = 120


def _dotted(node: ast.AST) -> str | None:
  """'a.b' for the target config.a.b, else None."""
  parts = []
  while isinstance(node, ast.Attribute):
    parts.append(node.attr)
    node = node.value
  if isinstance(node, ast.Name) and node.id == "config" and parts:
    return ".".join(reversed(parts))
  return None


def _comments(source: str) -> dict[int, tuple[int, str, bool]]:
  """line -> (column, text after '#', whether the line holds only the
  comment)."""
  found = {}
  code_lines = set()
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      found[token.start[0]] = (token.start[1], token.string[1:].rstrip())
    elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
                            tokenize.DEDENT, tokenize.ENDMARKER):
      code_lines.update(range(token.start[0], token.end[0] + 1))
  return {line: (col, text, line not in code_lines)
          for line, (col, text) in found.items()}


def _join(texts: list[str]) -> str:
  """Comment lines as one line; an indented list of quoted values
  ("#   'random'", "#   'imagenet': ...") is joined with '; '."""
  joined, items = "", 0
  for text in texts:
    item = text.startswith("  ") and text.strip().startswith("'")
    sep = "; " if item and items else " "
    items += item
    joined = f"{joined}{sep}{text.strip()}" if joined else text.strip()
  return joined


def field_comments(source: str) -> dict[str, str]:
  """Field -> its one line, for every `config.<field> = ...` statement in
  get_config (the fields of nested ConfigDicts too, and those themselves)."""
  lines = source.splitlines()
  comments = _comments(source)
  function = next(node for node in ast.parse(source).body
                  if isinstance(node, ast.FunctionDef)
                  and node.name == "get_config")
  result: dict[str, str] = {}
  inherited = None  # the last block comment of the current paragraph
  previous_end = None
  for statement in function.body:
    start, end = statement.lineno, statement.end_lineno
    if previous_end is not None and any(
        not lines[i - 1].strip() for i in range(previous_end + 1, start)):
      inherited = None  # a blank line: a new paragraph
    # the comment block right above (comment-only lines, no blank one;
    # not the previous field's continuation)
    block, line = [], start - 1
    while line > (previous_end or 0) and line in comments and comments[line][2]:
      block.insert(0, comments[line][1])
      line -= 1
    previous_end = end
    block = _join(block)
    if block:
      inherited = block
    if not isinstance(statement, ast.Assign):
      continue
    name = _dotted(statement.targets[0])
    if name is None:
      continue
    beside = [comments[i][1] for i in range(start, end + 1)
              if i in comments and not comments[i][2]]
    if beside:  # and its continuation lines, indented past the statement
      line = end + 1
      while (line in comments and comments[line][2]
             and comments[line][0] > statement.col_offset):
        beside.append(comments[line][1])
        line += 1
      previous_end = line - 1
    beside = _join(beside)
    result[name] = (f"{block} ({beside})" if block and beside
                    else beside or block or inherited or "")
  return result


def _leaves(config, prefix: str = "") -> dict[str, object]:
  """Dotted field -> default; an empty ConfigDict (open for keys) is a leaf."""
  import ml_collections
  found = {}
  for key in config.keys():
    value = config[key]
    name = prefix + key
    if isinstance(value, ml_collections.ConfigDict) and value.keys():
      found.update(_leaves(value, name + "."))
    else:
      found[name] = value
  return found


def _show(value) -> str:
  import ml_collections
  if isinstance(value, ml_collections.ConfigDict):
    return "{}"
  return repr(value)


def _cell(text: str) -> str:
  """A table cell: '|' escaped; outside `code`, '<' and '*' too (markdown
  would read <workdir> as HTML and a pair of '*' as emphasis)."""
  parts = text.replace("|", "\\|").split("`")
  for i in range(0, len(parts), 2):
    parts[i] = parts[i].replace("<", "&lt;").replace("*", "\\*")
  return "`".join(parts)


def render() -> str:
  """The page's markdown."""
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  from configs import default

  with open(SOURCE) as f:
    comments = field_comments(f.read())
  leaves = _leaves(default.get_config())
  missing = [name for name in leaves if name not in comments]
  if missing:
    raise ValueError(f"fields of get_config() not set by a `config.<field> = "
                     f"...` statement of get_config in {SOURCE}: {missing}")
  lines = [
      "# Config reference", "",
      "Every field of [`configs/default.py`](../../configs/default.py)'s "
      "`get_config()`, which every config file starts from, with its default "
      "and the comment that documents it there. Set a field in a config file, "
      "or on the command line as `--config.FIELD=VALUE` (nested fields dotted: "
      "`--config.augment.hflip=True`); [configs.md](configs.md) says how.", "",
      f"Generated by `{COMMAND}` from the repository root; "
      "`tests/test_config_reference.py` fails when this page and default.py "
      "differ.", "",
      "| field | default | what it is |", "|---|---|---|"]
  shown: list[tuple[str, str]] = []  # (field, its line), in order
  for name in (name for name in comments if name in leaves):  # source order
    text = comments[name]
    earlier = next((field for field, line in shown if text in line), None)
    shown.append((name, text))
    if len(text) > REPEAT_UP_TO and earlier:
      text = f"see `{earlier}` above"
    lines.append(f"| `{name}` | `{_cell(_show(leaves[name]))}` | "
                 f"{_cell(text)} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  with open(PAGE, "w") as f:
    f.write(render())
  print(f"wrote {os.path.relpath(PAGE, ROOT)}")


if __name__ == "__main__":
  main()

"""The commands README.md shows, for the tests that run them as written.

A test takes a README command by a fragment of it (`argv("configs/ae_init.py:smoke",
W=str(workdir))`): the command is read from README.md when the test runs, so a
changed README line is what the test runs. The placeholders a reader replaces
(W, P, the workdirs/... directories, the example file names) are replaced by
the test's own paths; nothing else is changed. A test may append flags that
shrink the run (the README's command, smaller). tests/test_readme_commands.py
checks that every command in README.md is taken by some test.
"""

from __future__ import annotations

import os
import re
import shlex
import sys

from conftest import REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")
# A line or `code span` is a command when its first word is one of these.
PROGRAMS = ("python", "python3", "pip", "jaxtransfer", "./launch.sh",
            "lint-imports")


def commands(path: str = README) -> list[str]:
  """Every command README.md shows, in order, once each: the lines of its
  indented code blocks and its `code spans` that start with a program."""
  with open(path) as f:
    text = f.read()
  found = []
  for line in text.splitlines():
    if line.startswith("    ") and _is_command(line):
      found.append(line.strip())
  for span in re.findall(r"`([^`\n]+)`", text):
    if _is_command(span):
      found.append(span.strip())
  # A table cell may hold two commands joined by "; " (study submit; status).
  split = [part.strip() for command in found for part in command.split("`; `")]
  return list(dict.fromkeys(split))


def _is_command(text: str) -> bool:
  words = text.split()
  return bool(words) and words[0] in PROGRAMS


def command(fragment: str) -> str:
  """The one README command that contains `fragment`."""
  matches = [c for c in commands() if fragment in c]
  if len(matches) != 1:
    raise AssertionError(f"{len(matches)} README commands contain "
                         f"{fragment!r}: {matches}")
  return matches[0]


def argv(fragment: str, **paths: str) -> list[str]:
  """The README command containing `fragment`, split as a shell would, the
  program made this interpreter's (`python` -> sys.executable; `jaxtransfer`
  -> `sys.executable -m jaxtransfer.main`, the console script's target),
  and each placeholder given replaced, as a whole word or a flag's whole
  value: W=..., P=..., or a README path as **{"workdirs/smoke": ...}. A
  placeholder that is not in the command is an error (the README changed
  under the test)."""
  words = shlex.split(command(fragment))
  if words[0] in ("python", "python3"):
    words[0] = sys.executable
  elif words[0] == "jaxtransfer":
    words[:1] = [sys.executable, "-m", "jaxtransfer.main"]
  elif words[0] == "./launch.sh":
    words[0] = os.path.join(REPO_ROOT, "launch.sh")
  for placeholder, value in paths.items():
    replaced = [_replace(word, placeholder, value) for word in words]
    if replaced == words:
      raise AssertionError(f"{placeholder!r} is not in the README command "
                           f"{command(fragment)!r}")
    words = replaced
  return words


def _replace(word: str, placeholder: str, value: str) -> str:
  if word == placeholder:
    return value
  if "=" in word and word.split("=", 1)[1] == placeholder:
    return word.split("=", 1)[0] + "=" + value
  return word

"""How a run or a study was made: <workdir>/provenance.json.

A JSON list with an entry per `--mode=train` command that trained in the
workdir (the first start, each resume, each --fresh start). The command
line is known only to main.py, which makes the entry (`invocation`) and
hands it down (study.runner.run, engine.experiment.train, and from there
training.train_and_evaluate or a feature's kind of run); it is recorded
with the run's config.json, once every check has passed, so a refused
command writes nothing. An entry:

  command       `jaxtransfer ARGS`, as typed (shell-quoted), and argv itself
  cwd           where it ran (a relative config path is relative to it)
  config        the config spec `FILE[:ARGS]`, split into config_file and
                config_args, and the `--config.field=value` overrides
  commit        `git rev-parse HEAD` of the checkout jaxtransfer was imported
                from (None when it is not one), `dirty` if its tracked files
                had changes; `version`, the installed package's version
  date          UTC, ISO 8601; host
  fresh         --fresh: the run started over here (the file is kept
                across --fresh, which archives the old run; its entries
                before this one made the archived runs)

`report_lines` is the report's "How this was made" section.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import re
import shlex
import socket
import subprocess
from typing import Any

from jaxtransfer.core import configlib, distributed, workdir as workdir_lib

FILE = workdir_lib.PROVENANCE_FILE
# The checkout this package was imported from (the repository root when
# jaxtransfer/ is a folder of a git checkout, as with `pip install -e .`).
_CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _git(*args: str) -> str | None:
  try:
    result = subprocess.run(["git", "-C", _CHECKOUT, *args], capture_output=True,
                            text=True, timeout=20, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return result.stdout.strip() if result.returncode == 0 else None


def source_commit() -> tuple[str | None, bool]:
  """(HEAD of the checkout jaxtransfer runs from, whether its tracked files
  differ from it); (None, False) when the package is not in a checkout of
  its own (an installed wheel, even one inside another repository)."""
  top = _git("rev-parse", "--show-toplevel")
  if top is None or os.path.realpath(top) != os.path.realpath(_CHECKOUT):
    return None, False
  commit = _git("rev-parse", "HEAD")
  changes = _git("status", "--porcelain", "--untracked-files=no")
  return commit, bool(changes)


def package_version() -> str | None:
  try:
    return importlib.metadata.version("jaxtransfer")
  except importlib.metadata.PackageNotFoundError:
    return None


def _quote(arg: str) -> str:
  """shlex.quote, but "--config.study.inits=('random',)" in double quotes
  rather than shlex's '...'"'"'...'."""
  quoted = shlex.quote(arg)
  if quoted != arg and "'" in arg and not re.search(r'["$`\\!]', arg):
    return f'"{arg}"'
  return quoted


def invocation(argv: list[str], fresh: bool = False) -> dict[str, Any]:
  """The entry for a command line (sys.argv: argv[0] is the program)."""
  spec = configlib.config_spec_in(argv)
  config_file, _, config_args = (spec or "").partition(":")
  commit, dirty = source_commit()
  return {
      "command": " ".join(_quote(a) for a in ["jaxtransfer", *argv[1:]]),
      "argv": list(argv),
      "cwd": os.getcwd(),
      "config": spec,
      "config_file": config_file or None,
      "config_args": config_args or None,
      "config_overrides": [a for a in argv[1:] if a.startswith("--config.")],
      "commit": commit,
      "dirty": dirty,
      "version": package_version(),
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "host": socket.gethostname(),
      "fresh": fresh,
  }


def read(workdir: str) -> list[dict[str, Any]]:
  """The workdir's entries, oldest first ([] if it has no provenance.json)."""
  path = os.path.join(workdir, FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return json.load(f)


def record(workdir: str, entry: dict[str, Any] | None) -> None:
  """Appends `entry` to <workdir>/provenance.json (process 0 only; nothing
  for None, a run started from Python rather than the command line)."""
  if entry is None or not distributed.is_primary():
    return
  workdir_lib.write_json_atomic(os.path.join(workdir, FILE),
                                read(workdir) + [entry])


def current(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The entries of the run the workdir holds now: from the last --fresh."""
  starts = [i for i, e in enumerate(entries) if e.get("fresh")]
  return entries[starts[-1]:] if starts else entries


def _source(entry: dict[str, Any]) -> str:
  if entry.get("commit"):
    return f"commit `{entry['commit']}`" + (
        " (with uncommitted changes)" if entry.get("dirty") else "")
  return f"jaxtransfer {entry.get('version') or '(version unknown)'} (not a git checkout)"


def report_lines(workdir: str) -> list[str]:
  """The report's "How this was made" section, or one line saying the
  workdir predates provenance.json."""
  entries = current(read(workdir))
  if not entries:
    return ["", f"How this was made: not recorded (no {FILE}: the workdir "
            "was made before commands were recorded)."]
  first = entries[0]
  config = (f"`{first['config_file']}`" + (
      f", arguments `{first['config_args']}`" if first.get("config_args")
      else ", no arguments") if first.get("config_file") else
            "the config stored in the workdir")
  overrides = first.get("config_overrides") or []
  lines = ["", "## How this was made", "",
           f"- Command: `{first['command']}` (in `{first['cwd']}`)",
           f"- Config: {config}" + (
               "; overrides " + ", ".join(f"`{o}`" for o in overrides)
               if overrides else ""),
           f"- Source: {_source(first)}",
           f"- Date: {first['date']} (UTC) on {first['host']}"]
  for entry in entries[1:]:
    same = entry["command"] == first["command"]
    lines.append(f"- Resumed {entry['date']} on {entry['host']}, "
                 + ("the same command" if same else f"`{entry['command']}`")
                 + ("" if _source(entry) == _source(first)
                    else f", {_source(entry)}"))
  return lines

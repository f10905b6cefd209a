"""`jaxtransfer --help` lists the commands and `jaxtransfer COMMAND --help`
that command's flags, exit status 0; every flag main.py defines is listed
under some command, and every subcommand is listed."""

import os
import re
import subprocess
import sys

import pytest

import readme_commands
from conftest import run_command
from jaxtransfer import cli, main


def _run(argv):
  result = run_command(argv, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


def _help(*args):
  return _run([sys.executable, "-m", "jaxtransfer.main", *args])


def test_help_lists_every_command():
  assert set(main.SUBCOMMANDS) <= set(cli.COMMAND_HELP)
  readme = readme_commands.argv("jaxtransfer --help")  # as README shows it
  for text in (_run(readme), _help("help"), _help("-h")):
    listed = re.findall(r"^  (\w+)  ", text, re.M)
    assert listed == list(cli.COMMAND_HELP), text
    assert "--helpfull" in text


def test_the_console_script_is_the_same_program():
  """The installed `jaxtransfer` script, in a new process, prints what
  `python -m jaxtransfer.main` does (the other tests run the latter)."""
  script = os.path.join(os.path.dirname(sys.executable), "jaxtransfer")
  result = subprocess.run([script, "--help"], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout == _help("--help")


@pytest.mark.parametrize("command", sorted(cli.COMMAND_HELP))
def test_command_help_lists_its_flags(command):
  text = _run(readme_commands.argv("jaxtransfer COMMAND --help",
                                   COMMAND=command))
  assert text.startswith("usage: jaxtransfer ")
  _, about, names = cli.COMMAND_HELP[command]
  assert f"{command}: {about}." in text
  shown = re.findall(r"^  --(\w+) ", text, re.M)
  assert shown == [*names, "verbosity"], text
  for name in names:  # its help string, on one line, with the default
    line = next(l for l in text.splitlines() if l.startswith(f"  --{name} "))
    assert " ".join(main.FLAGS[name].help.split()) in line
    assert "(default: " in line


def test_every_flag_of_main_is_under_a_command():
  with open(main.__file__) as f:
    defined = set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", f.read()))
  listed = {name for _, _, names in cli.COMMAND_HELP.values() for name in names}
  assert defined and defined <= listed, defined - listed


def test_eval_mode_and_help_word_name_the_command():
  assert _help("--mode=eval", "--help").startswith(
      f"usage: jaxtransfer {cli.COMMAND_HELP['eval'][0]}")
  assert _help("help", "convert").startswith("usage: jaxtransfer convert")

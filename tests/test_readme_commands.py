"""Every command README.md shows runs as written (tests/readme_commands.py):
each is taken by a test that runs it, or checks what it stands on where it
cannot run here (a GPU install, TensorFlow's download). The commands no
other test runs are run here: the main job (started, then stopped with
SIGTERM: it is a GPU job), `lint-imports`, the install's extras and the
test command itself."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import tomllib

import pytest

import readme_commands
from conftest import REPO_ROOT, needs_cifar10

# A test takes a README command by calling readme_commands.argv or .command
# with a literal fragment of it.
TAKES = re.compile(r"readme_commands\.(?:argv|command)\(\s*(['\"])(.+?)\1")


def _taken() -> dict[str, list[str]]:
  taken = {}
  for path in sorted(glob.glob(os.path.join(REPO_ROOT, "tests", "test_*.py"))):
    with open(path) as f:
      for match in TAKES.finditer(f.read()):
        command = readme_commands.command(match.group(2))
        taken.setdefault(command, []).append(os.path.basename(path))
  return taken


def test_every_readme_command_is_taken_by_a_test():
  commands = readme_commands.commands()
  assert len(commands) >= 10  # the parser found the README's commands
  untaken = [c for c in commands if c not in _taken()]
  assert not untaken, f"README commands no test runs: {untaken}"


def test_a_command_the_readme_does_not_show_is_refused(tmp_path):
  readme = tmp_path / "README.md"
  readme.write_text("Run:\n\n    python -m jaxtransfer.main --x\n\nor "
                    "`jaxtransfer report W`; not `ls -l`.\n")
  assert readme_commands.commands(str(readme)) == [
      "python -m jaxtransfer.main --x", "jaxtransfer report W"]
  missing, status = "configs/no_such_config.py", "jaxtransfer study status"
  with pytest.raises(AssertionError, match="0 README commands contain"):
    readme_commands.command(missing)
  with pytest.raises(AssertionError, match="'Q' is not in the README command"):
    readme_commands.argv(status, Q="x")


def _extras(command: str) -> list[str]:
  return re.findall(r"\.\[([\w,]+)\]", command)[0].split(",")


def test_the_install_commands_name_extras_pyproject_declares():
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    declared = tomllib.load(f)["project"]["optional-dependencies"]
  install = readme_commands.command("pip install -e '.[test,prepare]'")
  assert install.startswith("python3 -m venv .venv && . .venv/bin/activate && ")
  for command in (install, readme_commands.command("pip install -e '.[convert]'"),
                  readme_commands.command("pip install -e '.[test,cuda12]'")):
    assert set(_extras(command)) <= set(declared), command
  # "(or `cuda13`)": the other CUDA build
  assert "cuda13" in declared and declared["cuda13"] != declared["cuda12"]
  assert "torch" in " ".join(declared["convert"])


def test_the_test_command_is_the_one_ci_runs():
  with open(os.path.join(REPO_ROOT, ".ci", "run")) as f:
    ci = [l.strip() for l in f if l.strip().startswith("python -m pytest")]
  assert ci == [readme_commands.command("python -m pytest")]


def test_lint_imports_keeps_every_contract():
  program = os.path.join(os.path.dirname(sys.executable), "lint-imports")
  words = readme_commands.command("lint-imports").split()
  result = subprocess.run([program, *words[1:]], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stdout[-3000:]
  kept = re.search(r"Contracts: (\d+) kept, 0 broken", result.stdout)
  assert kept and int(kept.group(1)) >= 2, result.stdout[-2000:]


@needs_cifar10
def test_the_main_job_starts_as_written_and_stops_on_sigterm(tmp_path):
  """README's first command ends in the main job, a GPU job (hours on these
  CPUs): started as written, it loads the whole of CIFAR-10, builds and
  compiles the autoencoder at 128 px, and is stopped there with SIGTERM,
  saying truly what it saved. (Its steps are the smoke's at another size:
  test_end_to_end.py runs the smoke to the end; test_interrupts.py resumes
  a stopped run.)"""
  chained = readme_commands.command("--workdir=workdirs/ae_init")
  job = readme_commands.argv("configs/ae_init.py --workdir=W", W=str(tmp_path))
  assert chained.endswith(" && " + " ".join(
      ["python", *job[1:-1], "--workdir=workdirs/ae_init"]))  # the same job
  process = subprocess.Popen(job, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  seen = []
  for line in process.stderr:  # its data loaded, its steps compiled
    seen.append(line)
    if "compiled the train and eval steps" in line:
      break
  process.send_signal(signal.SIGTERM)
  try:  # a job that does not stop fails the test instead of hanging it
    _, rest = process.communicate(timeout=400)
  except subprocess.TimeoutExpired:
    process.kill()
    raise
  stderr = "".join(seen) + rest
  assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
  assert "Loaded cifar10" in stderr and "50000 train" in stderr, stderr[-3000:]
  last = stderr.strip().splitlines()[-1]
  autoencoder = tmp_path / "autoencoder"
  config = json.loads((autoencoder / "config.json").read_text())
  assert config["image_size"] == 128 and config["train_subset"] == 0
  # Whether the signal landed before its first step or after: what the last
  # line says is so.
  saved = sorted(int(s) for s in os.listdir(autoencoder / "checkpoints")
                 if s.isdigit())
  stopped = re.match(r"interrupted: stopped at epoch (\d+), step (\d+); (.*)",
                     last)
  assert stopped, last
  if saved:
    assert stopped.group(3).startswith("a checkpoint of that step is in "
                                       f"{autoencoder / 'checkpoints'}"), last
    assert saved == [int(stopped.group(2))]
  else:
    assert stopped.group(2) == "0", last
    assert stopped.group(3).startswith("nothing was trained in "
                                       f"{autoencoder} yet"), last

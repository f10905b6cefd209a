"""Runs `python -m jaxtransfer.main ARGS` in forked children of one process
that imported the CLI once (tests/conftest.py's `run_cli`).

A fresh interpreter spends 2-3 s importing jax, flax and orbax on the CI
machines before the command does anything; the suite runs the CLI about
fifty times. Each request here forks this process, which has imported
`jaxtransfer.main` and nothing else (no JAX backend exists yet, so the fork
is safe), and the child runs the command as the interpreter would run
`python -m jaxtransfer.main`: the same argv, working directory and
environment, stdout and stderr to files, its SystemExit or uncaught
exception turned into the exit status and message by Python's own shutdown,
atexit handlers run. What a fresh process would add, the imports, is the
one thing not repeated; tests that need a brand-new interpreter (the
console script, kill and resume) start one themselves.

Protocol, one JSON line each way per command:
  in:  {"argv": [...], "stdout": path, "stderr": path, "timeout": seconds}
  out: {"returncode": int, "timed_out": bool}
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

# As under `python -m`: the working directory (the repository root) first on
# the path, not this file's directory.
sys.path[0] = os.getcwd()

from jaxtransfer import main as cli_main  # noqa: E402


def _wait(pid: int, timeout: float) -> tuple[int, bool]:
  deadline = time.monotonic() + timeout
  while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
      return os.waitstatus_to_exitcode(status), False
    if time.monotonic() > deadline:
      os.kill(pid, signal.SIGKILL)
      _, status = os.waitpid(pid, 0)
      return os.waitstatus_to_exitcode(status), True
    time.sleep(0.01)


def _become_the_command(request: dict) -> None:
  """In the child: stdin, stdout and stderr as subprocess.run gives them."""
  stdin = os.open(os.devnull, os.O_RDONLY)
  stdout = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
  stderr = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
  for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
    os.dup2(fd, target)
    os.close(fd)
  sys.argv = [cli_main.__file__, *request["argv"]]


def serve() -> bool:
  """Answers requests until stdin closes; True in a child, which then runs
  the command at the top level so that the interpreter's exit handles it."""
  replies = sys.stdout
  for line in sys.stdin:
    request = json.loads(line)
    replies.flush()
    pid = os.fork()
    if pid == 0:
      _become_the_command(request)
      return True
    returncode, timed_out = _wait(pid, request["timeout"])
    replies.write(json.dumps({"returncode": returncode,
                              "timed_out": timed_out}) + "\n")
    replies.flush()
  return False


if __name__ == "__main__":
  if serve():
    cli_main.run()

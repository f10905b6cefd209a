"""The command line's own behaviour, apart from what its commands do
(main.py): one-line failures, quiet library logs, the stop signals, and
`jaxtransfer --help` / `jaxtransfer COMMAND --help`."""

from __future__ import annotations

import logging as std_logging
import os
import signal
import sys
import threading
import traceback

from absl import flags
from absl import logging

from jaxtransfer.engine import training

FLAGS = flags.FLAGS


def fail(message: str, exc: BaseException | None = None, status: int = 2) -> None:
  if verbose():
    if exc is not None:
      traceback.print_exception(exc)
  # One line, whatever the input held: control characters and line
  # separators (a value typed on the command line) shown escaped.
  message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def verbose() -> bool:
  try:
    return FLAGS.verbosity >= 1
  except flags.UnparsedFlagAccessError:
    return "-v" in sys.argv or any(a.startswith("--verbosity=") and
                                   a != "--verbosity=0" for a in sys.argv)


class QuietLibraries:
  """Lets INFO lines through only from jaxtransfer (orbax logs every file it
  writes at INFO), and drops a few warnings that are expected here."""

  _EXPECTED_WARNINGS = (
      "OpenCV is not installed",  # TFDS decodes PNGs with PIL instead
      # asyncio, when it collects the orbax tasks and futures of a restore
      # that already failed (and was reported): "Task/Future/_GatheringFuture
      # exception was never retrieved", noise after the error line.
      "exception was never retrieved",
      # orbax, when checkpoints.py restores a checkpoint's config or history
      # alone (--mode=eval reads them before the state): the other items are
      # there on purpose.
      "was found in the checkpoint, but could not be restored",
      # TFDS, for a prepared cifar10_corrupted variant without the file (the
      # data reads the same).
      "has no dataset_info.json",
  )

  def filter(self, record) -> bool:
    if verbose():
      return True
    ours = f"{os.sep}jaxtransfer{os.sep}" in record.pathname
    if record.levelno >= std_logging.WARNING:
      message = record.getMessage()
      if not ours and record.exc_info:
        # A library's error with a traceback (orbax on a failed write): the
        # traceback is for --verbosity=1; our own error line follows.
        record.exc_info, record.exc_text = None, None
        record.msg, record.args = message.splitlines()[0][:300] if message else "", ()
      return not any(w in message for w in self._EXPECTED_WARNINGS)
    return ours


EXIT_BAD_INPUT = 2  # a UserError: nothing was trained with the bad input
EXIT_DIVERGED = 3   # the loss became non-finite; the last good checkpoint stays
received_signal: list[int] = []


def on_stop_signal(signum, frame) -> None:
  """First SIGTERM/SIGINT: checkpoint at the next step boundary and stop.
  A second Ctrl-C stops at once (the last checkpoint is still intact)."""
  del frame
  if received_signal and signum == signal.SIGINT:
    raise KeyboardInterrupt
  received_signal.append(signum)
  # The stop first, and the message straight to fd 2: the handler runs
  # between two bytecodes of the main thread, which may be inside a write
  # to sys.stderr (a log line, the progress bar); print() there raises
  # "reentrant call", which the logging or tqdm write swallows, and a
  # request after it would be lost: the run would go on training.
  training.request_stop()
  os.write(2, (f"\n{signal.Signals(signum).name}: saving a checkpoint at the "
               "next step and stopping (Ctrl-C again to stop at once)\n"
               ).encode())


def quiet_thread_failure(args) -> None:
  """Library worker threads that fail (orbax's writers after a full disk:
  "Event loop is closed") print tracebacks; the main thread reports the
  failure in one line, so theirs go to the debug log unless --verbosity=1."""
  if verbose():
    threading.__excepthook__(args)
  else:
    logging.debug("background thread %s failed: %r", args.thread, args.exc_value)


def quiet_unraisable(unraisable) -> None:
  """The same for exceptions raised in callbacks of native threads
  (tensorstore's, during a failed orbax write)."""
  if verbose():
    sys.__unraisablehook__(unraisable)
  else:
    logging.debug("unraisable exception: %r", unraisable.exc_value)


# `jaxtransfer --help` and `jaxtransfer COMMAND --help` (--helpfull: absl's
# list of every flag): command -> (usage, what it does, its flags). Runs are
# --mode=train|eval, listed as the commands train and eval.
COMMAND_HELP = {
    "train": ("--config=FILE[:ARGS] --workdir=DIR [--config.FIELD=VALUE ...]",
              "train a run or a study (the default --mode; resumes a run "
              "the workdir holds)",
              ("config", "workdir", "mode", "fresh", "coordinator_address",
               "num_processes", "process_id")),
    "eval": ("--mode=eval --workdir=DIR [--checkpoint=best]",
             "evaluate a run's checkpoint (the config stored in the workdir "
             "unless --config is given)",
             ("mode", "workdir", "config", "checkpoint", "coordinator_address",
              "num_processes", "process_id")),
    "report": ("report WORKDIR",
               "rebuild a study's report.md and plots from its files", ()),
    "analyze": ("analyze WORKDIR [flags]",
                "probes, CKA, filters and corruption accuracy of a study's "
                "finished runs, added to its report",
                ("probe_examples", "shots", "draws", "cka_examples",
                 "corruptions", "corruption_examples")),
    "study": ("study submit --config=FILE --workdir=DIR [--workers=N] "
              "[--executor=local|slurm] [--slurm_...] | study status DIR",
              "a study's arms on N workers (local processes or a SLURM job "
              "array, through submitit), or where each arm stands",
              ("config", "workdir", "workers", "executor", "slurm_partition",
               "slurm_gpus_per_task", "slurm_timeout_min",
               "slurm_cpus_per_task", "slurm_mem_gb",
               "slurm_array_parallelism", "fresh")),
    "convert": ("convert --torch_checkpoint=FILE --out=DIR [--arch=NAME]",
                "torchvision weights to Flax parameters (orbax), the "
                "config.init_weights of config.init='imagenet'",
                ("arch", "torch_checkpoint", "out", "with_classifier")),
}
HELP_FLAGS = ("--help", "-help", "-h", "-?")


def help_asked(argv: list[str]) -> bool:
  return argv[1:2] == ["help"] or any(a in HELP_FLAGS for a in argv[1:])


def usage(argv: list[str]) -> str:
  """The commands with a line each, or one command's flags (argv names it)."""
  command = next((a for a in argv[1:] if a in COMMAND_HELP), None)
  if command is None and "--mode=eval" in argv:
    command = "eval"
  if command is None:
    width = max(map(len, COMMAND_HELP))
    return "\n".join(
        ["usage: jaxtransfer [COMMAND] [flags]", "", "commands:"]
        + [f"  {name:<{width}}  {about}"
           for name, (_, about, _) in COMMAND_HELP.items()]
        + ["", "train is the default (--mode=train), eval is --mode=eval; "
           "the others are words:", ""]
        + [f"  jaxtransfer {use}" for use, _, _ in COMMAND_HELP.values()]
        + ["", "jaxtransfer COMMAND --help: its flags; --helpfull: every "
           "flag, absl's included."])
  use, about, names = COMMAND_HELP[command]
  names = names + ("verbosity",)
  lines = [f"usage: jaxtransfer {use}", "", f"{command}: {about}.", "",
           "flags:"]
  width = max(len(n) for n in names) + 3
  for name in names:
    flag = FLAGS[name]
    default = flag.default
    if isinstance(default, (list, tuple)):
      default = ",".join(map(str, default))
    shown = "''" if default == "" else str(default).lower() if isinstance(
        default, bool) else default
    lines.append(f"  --{name:<{width}}{' '.join(flag.help.split())} "
                 f"(default: {shown})")
  return "\n".join(lines)

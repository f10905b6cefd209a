"""Command line: parses flags and dispatches; the work lives in the modules.

  python -m jaxtransfer.main --config=configs/ae_init.py --workdir=DIR
  python -m jaxtransfer.main --config=configs/ae_init.py:smoke --workdir=DIR
  python -m jaxtransfer.main --mode=eval --workdir=DIR [--checkpoint=best]
  python -m jaxtransfer.main --config=configs/study.py:smoke --workdir=DIR
  jaxtransfer convert --torch_checkpoint=alexnet-owt-7be5be79.pth --out=DIR
  jaxtransfer convert --arch=resnet50 --torch_checkpoint=resnet50-0676ba61.pth --out=DIR
  jaxtransfer report DIR
  jaxtransfer study submit --config=configs/study.py --workdir=DIR --workers=4 --executor=slurm --slurm_partition=P
  jaxtransfer study status DIR
  jaxtransfer analyze DIR [--corruptions=all] [--probe_examples=N]
  jaxtransfer --help                  the commands; COMMAND --help: its flags

`jaxtransfer` (the console script) is the same program. Mistakes in the input
end in one line on stderr starting with `error:` and exit status 2 (3 for a
diverged run); pass `--verbosity=1` to see the traceback as well. SIGTERM or
Ctrl-C checkpoints at the next step and exits with 128 + the signal number.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxtransfer import cli
from jaxtransfer.core.errors import UserError

FLAGS = flags.FLAGS

_CONFIG = config_flags.DEFINE_config_file(
    "config", None,
    "A python config file, optionally with an argument: configs/ae_init.py:smoke."
    " Fields are overridable as --config.field=value.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Directory for checkpoints, metrics and reports.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train (resumes if the workdir holds a run) or eval.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "--mode=eval: 'latest', 'best' (by val_loss) or a step.")
_TORCH_CHECKPOINT = flags.DEFINE_string(
    "torch_checkpoint", None, "convert: a torchvision state_dict of --arch "
    "(.pth, read with torch.load(weights_only=True), or .safetensors).")
_ARCH = flags.DEFINE_string(
    "arch", "alexnet", "convert: the torchvision architecture of "
    "--torch_checkpoint: alexnet, vgg16, vgg13_bn, vgg19, vgg19_bn, "
    "resnet50 or densenet121 (the config.model it initialises).")
_OUT = flags.DEFINE_string("out", None, "convert: a new directory for the "
                           "converted Flax parameters (orbax).")
_WITH_CLASSIFIER = flags.DEFINE_bool(
    "with_classifier", False, "convert: also convert the 1000-way ImageNet "
    "classifier (AlexNet/VGG fc6-fc8, ResNet fc, DenseNet classifier), not "
    "only the body.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "Several processes: host:port of process 0 "
    "(launch.sh sets it; under SLURM it is found automatically).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None,
                                      "Several processes: how many in all.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None,
                                   "Several processes: this one's index.")
_PROBE_EXAMPLES = flags.DEFINE_integer(
    "probe_examples", 0, "analyze: training images for the linear probes "
    "(0: the run's whole training split).")
_SHOTS = flags.DEFINE_list("shots", ["1", "5", "10", "25"],
                           "analyze: k of the k-shot probes.")
_DRAWS = flags.DEFINE_integer("draws", 5, "analyze: draws per k-shot probe.")
_CKA_EXAMPLES = flags.DEFINE_integer(
    "cka_examples", 2000, "analyze: validation images CKA compares on.")
_CORRUPTIONS = flags.DEFINE_string(
    "corruptions", "all", "analyze: corruptions to evaluate ('all', "
    "'gaussian_noise:3', 'contrast', ... comma-free: '+' between; '' none).")
_CORRUPTION_EXAMPLES = flags.DEFINE_integer(
    "corruption_examples", 0, "analyze: validation images per corruption "
    "(0: all).")
# study submit: absl flags like the lab's others; the slurm_ ones are the
# sbatch options a GPU worker needs (submitit's names), the rest is
# the cluster's defaults.
_WORKERS = flags.DEFINE_integer("workers", 1, "study submit: how many workers "
                                "(a job array of this many tasks).")
_EXECUTOR = flags.DEFINE_string("executor", "local", "study submit: 'slurm' "
                                "(sbatch) or 'local' (processes here; waits).")
_SLURM_PARTITION = flags.DEFINE_string("slurm_partition", None,
                                       "study submit: the SLURM partition.")
_SLURM_GPUS = flags.DEFINE_integer("slurm_gpus_per_task", 1, "study submit: "
                                   "GPUs per worker (0: none asked for).")
_SLURM_TIMEOUT = flags.DEFINE_integer(
    "slurm_timeout_min", 240, "study submit: each worker's time limit in "
    "minutes; a worker that reaches it is requeued and resumes (local too).")
_SLURM_CPUS = flags.DEFINE_integer("slurm_cpus_per_task", None,
                                   "study submit: CPUs per worker.")
_SLURM_MEM = flags.DEFINE_float("slurm_mem_gb", None,
                                "study submit: memory per worker in GB.")
_SLURM_PARALLEL = flags.DEFINE_integer(
    "slurm_array_parallelism", None, "study submit: workers running at once "
    "(default: all).")
_FRESH = flags.DEFINE_bool(
    "fresh", False, "Start over in a workdir that holds a run: the old run is "
    "moved to <workdir>/archive/<time>/, nothing is deleted.")


def _flag_value(argv: list[str], name: str) -> str | None:
  """--name=VALUE or --name VALUE on a command line, before absl parses it."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  from jaxtransfer.core import configlib, stored_config

  if cli.help_asked(argv):
    print(cli.usage(argv))
    sys.exit(0)
  if (configlib.config_path_in(argv) is None
      and any(a.startswith("--config.") for a in argv)
      and _flag_value(argv, "mode") == "eval" and _flag_value(argv, "workdir")):
    # --mode=eval --config.eval.x=... without --config: the overrides apply
    # to the config stored in the workdir.
    workdir = os.path.abspath(os.path.expanduser(_flag_value(argv, "workdir")))
    argv = [argv[0], f"--config={stored_config.__file__}:{workdir}", *argv[1:]]
  path = configlib.config_path_in(argv)
  if path and os.path.abspath(path) != os.path.abspath(stored_config.__file__):
    # Config files import their base as `from configs import default`: put
    # the folder that holds configs/ on the path, as `python -m` from the
    # repository root would.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(path))))
  try:
    remaining = FLAGS(argv)
    if path:
      _CONFIG.value.keys()  # a config file that failed to load raises here
    return remaining
  except flags.Error as e:
    cli.fail(str(e).replace("\n", " "), e)
  except (UserError, AttributeError, KeyError, TypeError, ValueError,
          OSError, ImportError, SyntaxError) as e:
    cli.fail(configlib.explain_load_error(argv, e), e)


def main(argv: list[str]) -> None:
  from jaxtransfer.engine import training
  logging.get_absl_handler().python_handler.addFilter(cli.QuietLibraries())
  threading.excepthook = cli.quiet_thread_failure
  sys.unraisablehook = cli.quiet_unraisable
  signal.signal(signal.SIGTERM, cli.on_stop_signal)
  signal.signal(signal.SIGINT, cli.on_stop_signal)
  try:
    _dispatch(argv[1:])
  except training.Interrupted as e:
    print(f"interrupted: {e}", file=sys.stderr, flush=True)
    sys.exit(128 + (cli.received_signal[0] if cli.received_signal else signal.SIGTERM))
  except training.Diverged as e:
    cli.fail(f"{e}. No checkpoint of the bad state was written; the last good one "
          "stays the latest. Resuming with this config would diverge again: "
          "change it in a new --workdir (or with --fresh, which archives this "
          "run), or start from the good weights with "
          "--config.init=checkpoint --config.init_weights=<this workdir>",
          e, status=cli.EXIT_DIVERGED)
  except UserError as e:
    cli.fail(str(e), e)


def _convert(positional: list[str]) -> None:
  from jaxtransfer.models import conversion

  if positional:
    raise UserError(f"convert takes flags only, got {positional}")
  arch = conversion.get_arch(_ARCH.value).name  # a bad --arch fails first
  if not _TORCH_CHECKPOINT.value or not _OUT.value:
    raise UserError("usage: jaxtransfer convert [--arch=NAME] "
                    "--torch_checkpoint=FILE --out=DIR [--with_classifier]")
  info = conversion.convert_file(_TORCH_CHECKPOINT.value, _OUT.value,
                                 _WITH_CLASSIFIER.value, arch=arch)
  print(f"Converted {arch} {info['source']} -> {os.path.abspath(_OUT.value)} "
        f"({len(info['shapes'])} arrays; SHA-256 {info['sha256'][:12]}...)")


def _report(positional: list[str]) -> None:
  from jaxtransfer.study import report

  if len(positional) != 1:
    raise UserError("usage: jaxtransfer report WORKDIR")
  print(report.write_report(os.path.expanduser(positional[0])))


def _analyze(positional: list[str]) -> None:
  from jaxtransfer.study.analysis import analyze

  if len(positional) != 1:
    raise UserError("usage: jaxtransfer analyze WORKDIR [--corruptions=...] "
                    "[--probe_examples=N] [--cka_examples=N]")
  try:
    shots = tuple(int(k) for k in _SHOTS.value)
  except ValueError:
    raise UserError(f"--shots={','.join(_SHOTS.value)}: whole numbers") from None
  options = analyze.Options(
      probe_examples=_PROBE_EXAMPLES.value, shots=shots, draws=_DRAWS.value,
      cka_examples=_CKA_EXAMPLES.value,
      corruptions=_CORRUPTIONS.value.replace("+", ","),
      corruption_examples=_CORRUPTION_EXAMPLES.value)
  print(analyze.analyze(os.path.expanduser(positional[0]), options))


def _study(positional: list[str]) -> None:
  from jaxtransfer.study import runner, submit, workers

  usage = ("usage: jaxtransfer study submit --config=FILE --workdir=DIR "
           "[--workers=N] [--executor=local|slurm] [--slurm_...] | "
           "jaxtransfer study status DIR")
  if not positional or positional[0] not in ("submit", "status"):
    raise UserError(usage)
  if positional[0] == "status":
    given = positional[1:] or ([_WORKDIR.value] if _WORKDIR.value else [])
    if len(given) != 1:
      raise UserError("usage: jaxtransfer study status DIR")
    print("\n".join(workers.status(os.path.abspath(
        os.path.expanduser(given[0])))))
    return
  if len(positional) != 1:
    raise UserError(f"unexpected arguments {positional[1:]}; {usage}")
  if _CONFIG.value is None or not _WORKDIR.value:
    raise UserError("study submit needs --config (a study) and --workdir")
  if not runner.is_study(_CONFIG.value):
    raise UserError("study submit: --config has no config.study (train a "
                    "single run with --config and --workdir alone)")
  resources = submit.Resources(
      timeout_min=_SLURM_TIMEOUT.value, partition=_SLURM_PARTITION.value,
      gpus_per_task=_SLURM_GPUS.value, cpus_per_task=_SLURM_CPUS.value,
      mem_gb=_SLURM_MEM.value, array_parallelism=_SLURM_PARALLEL.value)
  submit.check_request(_EXECUTOR.value, _WORKERS.value, resources)
  lines, _ = submit.submit(
      _CONFIG.value, os.path.abspath(os.path.expanduser(_WORKDIR.value)),
      executor=_EXECUTOR.value, count=_WORKERS.value, resources=resources,
      fresh=_FRESH.value)
  print("\n".join(lines))


SUBCOMMANDS = {"convert": _convert, "report": _report, "analyze": _analyze,
               "study": _study}

def _dispatch(positional: list[str]) -> None:
  from jaxtransfer.core import distributed
  from jaxtransfer.engine import experiment

  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value,
                         _PROCESS_ID.value)

  if positional and positional[0] in SUBCOMMANDS:
    SUBCOMMANDS[positional[0]](positional[1:])
    return
  if positional:
    raise UserError(f"unexpected arguments {positional}: the subcommands are "
                    f"{', '.join(SUBCOMMANDS)}; otherwise use --mode, --config, "
                    "--workdir")
  if not _WORKDIR.value:
    raise UserError("--workdir is required")
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  config = _CONFIG.value
  if _MODE.value == "train":
    if config is None:
      raise UserError("--config is required for --mode=train "
                      "(e.g. --config=configs/ae_init.py)")
    from jaxtransfer.core import provenance
    from jaxtransfer.study import runner
    made_by = provenance.invocation(sys.argv, fresh=_FRESH.value)
    if runner.is_study(config):
      runner.run(config, workdir, fresh=_FRESH.value, invocation=made_by)
    else:
      experiment.train(config, workdir, fresh=_FRESH.value, invocation=made_by)
  else:
    if config is None:
      config = experiment.config_from_workdir(workdir)
      logging.info("Using the config stored in %s", workdir)
    experiment.evaluate(config, workdir, _CHECKPOINT.value)


def run() -> None:
  """Console-script entry point."""
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()

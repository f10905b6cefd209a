"""Bad input: each case ends in a one-line `error:`, a non-zero exit status,
and no file of the workdir changed (docs/guide/runs.md, "Runs that stop, and
errors you may see")."""

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT, cifar10_dir, needs_cifar10, run_cli

TINY = ("--config=configs/random_init.py:smoke", "--config.train_subset=320",
        "--config.val_subset=200", "--config.batch_size=32",
        "--config.num_epochs=1", "--config.progress_bar=False")


def _snapshot(root):
  """Every file under root with its content hash (.lock is bookkeeping)."""
  found = {}
  for folder, _, files in os.walk(root):
    for name in files:
      path = os.path.join(folder, name)
      if name != ".lock":
        with open(path, "rb") as f:
          found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
  return found


def _assert_one_line_error(result, *needles, status=2):
  assert result.returncode == status, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), last
  for needle in needles:
    assert needle in last, (needle, last)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished one-epoch run, copied afresh for each case."""
  workdir = tmp_path_factory.mktemp("trained") / "w"
  result = run_cli(*TINY, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  copy = tmp_path / "w"
  shutil.copytree(trained, copy)
  return copy


CLI_CASES = [
    ("unknown field", ("--config.lerning_rate=0.1",),
     ("unknown config field 'lerning_rate'", "did you mean 'learning_rate'")),
    ("wrong type", ("--config.batch_size=lots",), ("config.batch_size=lots",)),
    ("zero epochs", ("--config.num_epochs=0",),
     ("config.num_epochs=0: must be at least 1",)),
    ("zero batch", ("--config.batch_size=0",), ("config.batch_size=0",)),
    ("negative batch", ("--config.batch_size=-32",), ("config.batch_size=-32",)),
    ("tiny image", ("--config.image_size=32",), ("at least 63 px",)),
    ("unknown init", ("--config.init=imagenet1k",),
     ("config.init='imagenet1k' is not one of",)),
    ("unknown freeze", ("--config.freeze=heda",), ("did you mean 'head'",)),
    # (one more epoch: a finished run needs no data and would just say so)
    ("missing dataset", ("--config.data_dir=/nonexistent/tfds",
                         "--config.num_epochs=2"),
     ("data_dir=/nonexistent/tfds", "TFDS_DATA_DIR")),
    ("other experiment", ("--config.learning_rate=0.01",),
     ("holds a run with a different config", "--fresh")),
]


@needs_cifar10
@pytest.mark.parametrize("name, args, needles", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_on_an_existing_run(workdir, name, args, needles):
  before = _snapshot(workdir)
  result = run_cli(*TINY, *args, f"--workdir={workdir}")
  _assert_one_line_error(result, *needles)
  assert _snapshot(workdir) == before


LAB_CASES = [
    ("unknown model", ("--config.model=alexnt",),
     ("config.model='alexnt' is not one of", "did you mean 'alexnet'")),
    ("unknown optimizer", ("--config.optimizer=adma",),
     ("config.optimizer='adma'", "did you mean 'adam'")),
    ("schedule past the run", ("--config.lr_schedule=piecewise",
                               "--config.lr_boundaries=(1,5)",
                               "--config.lr_values=(0.1,0.01,0.001)"),
     ("config.lr_boundaries", "num_epochs")),
    ("lenet with imagenet", ("--config.model=lenet", "--config.image_size=28",
                             "--config.init=imagenet",
                             "--config.init_weights=/nowhere"),
     ("config.init='imagenet'", "lenet")),
    ("unknown dataset", ("--config.dataset=cifar1",),
     ("config.dataset='cifar1'", "did you mean 'cifar10'")),
    ("bad split", ("--config.train_split=trian[:10%]",),
     ("config.train_split='trian[:10%]'",)),
    ("missing class", ("--config.classes=('cat','dgo')",),
     ("config.classes", "'dgo'", "did you mean 'dog'")),
    ("bad attack", ("--config.eval.attacks=('pgd:8/255',)",),
     ("attack 'pgd:8/255' does not parse",)),
    ("bad fraction", ("--config.class_fraction={'bird': 1.5}",),
     ("config.class_fraction.bird=1.5", "(0, 1]")),
]


@needs_cifar10
@pytest.mark.parametrize("name, args, needles", LAB_CASES,
                         ids=[c[0] for c in LAB_CASES])
def test_cli_bad_lab_input_writes_nothing(tmp_path, name, args, needles):
  result = run_cli(*TINY, *args, f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, *needles)
  assert not (tmp_path / "w").exists()


def test_verbosity_shows_the_traceback(tmp_path):
  result = run_cli(*TINY, "--config.num_epochs=0", "--verbosity=1",
                   f"--workdir={tmp_path / 'w'}")
  assert result.returncode == 2 and "Traceback" in result.stderr


def test_batch_not_divisible_by_devices_touches_nothing(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
  result = subprocess.run(
      [sys.executable, "-m", "jaxtransfer.main", *TINY, "--config.batch_size=12",
       f"--workdir={tmp_path / 'w'}"], cwd=REPO_ROOT, env=env,
      capture_output=True, text=True, timeout=300)
  _assert_one_line_error(result, "config.batch_size=12", "8 devices")
  assert not (tmp_path / "w").exists()


@needs_cifar10
def test_damaged_dataset(tmp_path):
  damaged = tmp_path / "tfds" / "cifar10" / "3.0.2"
  damaged.mkdir(parents=True)
  # The data dir the tests were given (TFDS_DATA_DIR), not ../shared.
  source = os.path.join(cifar10_dir(), "cifar10", "3.0.2")
  for name in os.listdir(source):
    if "test.array_record" in name:  # truncated to half: a broken copy
      with open(os.path.join(source, name), "rb") as f:
        (damaged / name).write_bytes(f.read(os.path.getsize(f.name) // 2))
    else:
      os.symlink(os.path.join(source, name), damaged / name)
  result = run_cli(*TINY, f"--config.data_dir={tmp_path / 'tfds'}",
                   f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, "could not be read", "damaged")
  assert not (tmp_path / "w").exists()


def _largest_file(root):
  files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
  return max(files, key=os.path.getsize)


@needs_cifar10
@pytest.mark.parametrize("mode", ["eval", "resume"])
def test_truncated_checkpoint(workdir, mode):
  step_dir = [d for d in (workdir / "checkpoints").iterdir() if d.name.isdigit()][-1]
  victim = _largest_file(step_dir / "state")
  with open(victim, "r+b") as f:
    f.truncate(os.path.getsize(victim) // 2)
  before = _snapshot(workdir)
  args = ("--mode=eval",) if mode == "eval" else (*TINY, "--config.num_epochs=2")
  result = run_cli(*args, f"--workdir={workdir}")
  _assert_one_line_error(result, f"checkpoint {workdir}/checkpoints/{step_dir.name} "
                         "cannot be restored", "damaged")
  assert _warnings(result.stderr) == [], result.stderr[-3000:]
  assert _snapshot(workdir) == before


@needs_cifar10
def test_foreign_checkpoint_directory(workdir, tmp_path):
  foreign = tmp_path / "foreign"
  (foreign / "checkpoints" / "100").mkdir(parents=True)
  (foreign / "checkpoints" / "100" / "model.pt").write_bytes(b"\x80\x02not orbax")
  shutil.copy(workdir / "config.json", foreign / "config.json")
  before = _snapshot(foreign)
  result = run_cli("--mode=eval", f"--workdir={foreign}")
  _assert_one_line_error(result, "cannot be restored")
  assert _snapshot(foreign) == before


@needs_cifar10
def test_checkpoint_of_another_model_shape(workdir):
  config = json.loads((workdir / "config.json").read_text())
  config["head_hidden"] = 250  # the config now claims a narrower head
  (workdir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
  before = _snapshot(workdir)
  result = run_cli(*TINY, "--config.head_hidden=250", "--config.num_epochs=2",
                   f"--workdir={workdir}")
  _assert_one_line_error(result, "cannot be restored", "another model")
  assert _snapshot(workdir) == before


@needs_cifar10
def test_converted_weights_of_the_wrong_shapes(tmp_path):
  from jaxtransfer.models import conversion
  body = {f"conv{i}": {"kernel": np.zeros((3, 3, 3, 8), np.float32),
                       "bias": np.zeros(8, np.float32)} for i in range(1, 6)}
  conversion.write(str(tmp_path / "weights"), {"body": body}, {})
  result = run_cli(*TINY, "--config.init=imagenet",
                   f"--config.init_weights={tmp_path / 'weights'}",
                   f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, "do not fit the model's body",
                         "body/conv1/kernel: shape (3, 3, 3, 8), expected (11, 11, 3, 64)")
  assert not (tmp_path / "w").exists()


def test_malicious_pickle_given_to_the_converter(tmp_path):
  torch = pytest.importorskip("torch")
  marker = tmp_path / "pwned"

  class WritesAFile:
    def __reduce__(self):
      return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

  torch.save({"features.0.weight": WritesAFile()}, tmp_path / "evil.pth")
  result = run_cli("convert", f"--torch_checkpoint={tmp_path / 'evil.pth'}",
                   f"--out={tmp_path / 'out'}")
  _assert_one_line_error(result, "refused to load", "would run code")
  assert not marker.exists() and not (tmp_path / "out").exists()


def test_workdir_that_cannot_be_a_directory(tmp_path):
  (tmp_path / "file").write_text("not a directory")
  result = run_cli(*TINY, f"--workdir={tmp_path / 'file' / 'w'}")
  _assert_one_line_error(result, "is a file, not a directory")
  assert (tmp_path / "file").read_text() == "not a directory"


def _unwritable_directory(tmp_path) -> str:
  """A directory this process may not write to: a chmod 555 one, or, for
  root (whom permissions do not stop, as in CI), a read-only mount."""
  if os.geteuid() != 0:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return str(locked)
  for candidate in ("/proc/sys", "/sys"):
    if os.path.isdir(candidate) and not os.access(candidate, os.W_OK):
      return candidate
  pytest.skip("root, and no read-only mount to try")


def test_workdir_not_writable(tmp_path):
  locked = _unwritable_directory(tmp_path)
  workdir = os.path.join(locked, "jaxtransfer-w")
  result = run_cli(*TINY, f"--workdir={workdir}")
  _assert_one_line_error(result, f"workdir {workdir} is not writable")
  assert not os.path.exists(workdir)


@needs_cifar10
def test_disk_full_while_saving_keeps_the_last_checkpoint(workdir):
  from jaxtransfer.core import checkpoints
  good = checkpoints.RunCheckpoints(str(workdir), read_only=True).latest_step()
  metrics = (workdir / "metrics.jsonl").read_text()
  # `ulimit -f`: files past 8 MB fail with EFBIG, as on a full disk: the
  # checkpoint's arrays (~30 MB) cannot be written; config.json and
  # metrics.jsonl could be.
  command = " ".join(shlex.quote(a) for a in (
      sys.executable, "-m", "jaxtransfer.main", *TINY, "--config.num_epochs=2",
      f"--workdir={workdir}"))
  result = subprocess.run(["bash", "-c", f"ulimit -f 8192 && exec {command}"],
                          cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300)
  _assert_one_line_error(result, f"could not write the checkpoint of step {2 * good}",
                         "File too large",
                         f"The last complete checkpoint ({good}) is intact")
  store = checkpoints.RunCheckpoints(str(workdir), read_only=True)
  assert store.latest_step() == good
  assert (workdir / "metrics.jsonl").read_text() == metrics
  # ... and with space again, the same command resumes and finishes.
  result = run_cli(*TINY, "--config.num_epochs=2", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert len((workdir / "metrics.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------------------
# Each class of hostile input the reliability page lists
# (docs/reliability.md): one line, status 2, nothing written on failure.

def _warnings(stderr: str) -> list[str]:
  """Log lines at WARNING or above (absl's 'W1206 ...' / 'E1206 ...'): what
  a user would have to read besides the result and our one error line."""
  return [line for line in stderr.splitlines()
          if len(line) > 1 and line[0] in "WEF" and line[1:5].isdigit()]


CHECKED_BEFORE_TRAINING = [
    ("eval corruption severity", ("--config.eval.corruptions=('gaussian_noise:7',)",),
     ("config.eval.corruptions='gaussian_noise:7'", "not one of 1-5")),
    ("subset below the classes", ("--config.train_subset=5",),
     ("config.train_subset=5", "fewer examples than the 10 classes")),
    ("more folds than a class has", (
        "--config.validation=kfold", "--config.folds=40", "--config.fold=0",
        "--config.train_subset=320"),
     ("config.folds=40", "has only 32 training examples")),
    ("inverted split slice", ("--config.train_split=train[60%:20%]",
                              "--config.train_subset=0"),
     ("config.train_split='train[60%:20%]'", "empty or inverted slice")),
]


@needs_cifar10
@pytest.mark.parametrize("name, args, needles", CHECKED_BEFORE_TRAINING,
                         ids=[c[0] for c in CHECKED_BEFORE_TRAINING])
def test_checked_before_anything_trains(tmp_path, name, args, needles):
  result = run_cli(*TINY, *args, f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, *needles)
  assert not (tmp_path / "w").exists()


@needs_cifar10
def test_a_misspelt_grid_field_is_named(tmp_path):
  result = run_cli("--config=configs/grid.py:smoke",
                   "--config.study.grid=(('optimzer', ('sgd', 'adam')),"
                   " ('kernel_init', ('he_normal',)))",
                   f"--workdir={tmp_path / 'w'}")
  _assert_one_line_error(result, "config.study.grid: swept field 'optimzer'",
                         "did you mean 'optimizer'")
  assert not (tmp_path / "w").exists()


@needs_cifar10
def test_eval_prints_its_result_and_no_library_warnings(workdir):
  result = run_cli("--mode=eval", f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads(result.stdout.strip().splitlines()[-1])
  assert record["step"] > 0 and 0.0 <= record["val_accuracy"] <= 1.0
  assert _warnings(result.stderr) == [], _warnings(result.stderr)


@needs_cifar10
def test_eval_overrides_apply_to_the_stored_config(workdir):
  """The guide's form: --mode=eval --config.eval.* without --config."""
  result = run_cli("--mode=eval", f"--workdir={workdir}",
                   "--config.eval.corruptions=('contrast:5',)")
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads(result.stdout.strip().splitlines()[-1])
  assert set(record["val_corruption_accuracy"]) == {"contrast:5"}
  assert (workdir / "corruptions.md").exists()
  assert _warnings(result.stderr) == [], _warnings(result.stderr)


@needs_cifar10
def test_eval_whose_outputs_cannot_be_written(workdir):
  """The evaluation succeeds: its record is printed, then one line says
  what could not be written (eval.json taken by a directory: works for
  root too, where a read-only workdir would not)."""
  (workdir / "eval.json").mkdir()
  before = _snapshot(workdir)
  result = run_cli("--mode=eval", f"--workdir={workdir}")
  _assert_one_line_error(result, f"{workdir}/eval.json could not be written",
                         "the evaluation is printed")
  assert json.loads(result.stdout.strip().splitlines()[-1])["step"] > 0
  assert _snapshot(workdir) == before  # (no temporary file left behind)


@pytest.mark.parametrize("command", ["report", "analyze"])
@pytest.mark.parametrize("place", ["missing", "file", "empty"])
def test_report_and_analyze_on_wrong_places(tmp_path, command, place):
  target = tmp_path / "target"
  if place == "file":
    target.write_text("not a run\n")
  elif place == "empty":
    target.mkdir()
  before = _snapshot(tmp_path)
  result = run_cli(command, str(target))
  _assert_one_line_error(result, str(target))
  assert _snapshot(tmp_path) == before
  assert sorted(os.listdir(tmp_path)) == ([] if place == "missing"
                                          else ["target"])
  if place == "empty":
    assert os.listdir(target) == []

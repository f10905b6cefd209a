"""Every report says how it was made: the command line, the config and its
arguments, the commit (or the package version) and the date, from
<workdir>/provenance.json, an entry per `--mode=train` command (resumes
too); a study directory from before the file says so in one line."""

import datetime
import json
import os
import re

from conftest import needs_cifar10, run_cli
from jaxtransfer.core import provenance
from jaxtransfer.study import report

# The smallest study: one arm, one seed, one epoch of 64 images.
STUDY = ("--config=configs/study.py:smoke,num_seeds=1",
         "--config.study.inits=('random',)", "--config.study.freezes=('head',)",
         "--config.train_subset=64", "--config.val_subset=64",
         "--config.batch_size=32", "--config.eval_batch_size=64",
         "--config.num_epochs=1", "--config.progress_bar=False")


def _utc_today():
  return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def test_invocation_names_command_config_commit_and_date():
  argv = ["/x/jaxtransfer/main.py", "--config=configs/study.py:smoke,num_seeds=1",
          "--config.num_epochs=1", "--workdir=/tmp/a b"]
  entry = provenance.invocation(argv)
  assert entry["command"] == ("jaxtransfer --config=configs/study.py:smoke,"
                              "num_seeds=1 --config.num_epochs=1 "
                              "'--workdir=/tmp/a b'")
  assert entry["config_file"] == "configs/study.py"
  assert entry["config_args"] == "smoke,num_seeds=1"
  assert entry["config_overrides"] == ["--config.num_epochs=1"]
  # the tests run from a checkout: its HEAD; an installed package: its version
  assert (entry["commit"] and re.fullmatch(r"[0-9a-f]{40}", entry["commit"])
          or entry["version"])
  assert entry["date"].startswith(_utc_today()[:4])
  assert json.loads(json.dumps(entry)) == entry


def test_report_lines_show_the_current_run_and_its_resumes(tmp_path):
  workdir = str(tmp_path)
  assert "not recorded" in " ".join(provenance.report_lines(workdir))
  old = dict(provenance.invocation(["jaxtransfer", "--config=a.py"]),
             date="2020-01-01T00:00:00+00:00")
  provenance.record(workdir, old)
  first = provenance.invocation(["jaxtransfer", "--config=b.py:x",
                                 "--fresh"], fresh=True)
  provenance.record(workdir, first)
  provenance.record(workdir, provenance.invocation(
      ["jaxtransfer", "--config=b.py:x", "--config.num_epochs=9"]))
  assert len(provenance.read(workdir)) == 3
  text = "\n".join(provenance.report_lines(workdir))
  assert "a.py" not in text and "2020" not in text  # the archived run's
  assert "`jaxtransfer --config=b.py:x --fresh`" in text
  assert "`b.py`, arguments `x`" in text
  assert "- Resumed " in text and "--config.num_epochs=9" in text


@needs_cifar10
def test_a_study_report_says_how_it_was_made(tmp_path):
  workdir = tmp_path / "study"
  today = _utc_today()
  result = run_cli(*STUDY, f"--workdir={workdir}")
  assert result.returncode == 0, result.stderr[-3000:]
  resumed = run_cli(*STUDY, f"--workdir={workdir}")  # finished: a resume
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  entries = json.loads((workdir / "provenance.json").read_text())
  assert len(entries) == 2

  text = (workdir / "report.md").read_text()
  section = text[text.index("## How this was made"):]
  command = " ".join(["jaxtransfer", *STUDY[:1], f'"{STUDY[1]}"',
                      f'"{STUDY[2]}"', *STUDY[3:], f"--workdir={workdir}"])
  assert f"Command: `{command}`" in section
  assert "`configs/study.py`, arguments `smoke,num_seeds=1`" in section
  assert "`--config.num_epochs=1`" in section
  assert re.search(r"commit `[0-9a-f]{40}`|jaxtransfer \d", section)
  assert entries[0]["date"][:10] in (today, _utc_today())
  assert f"Date: {entries[0]['date']} (UTC)" in section
  assert "- Resumed " in section and "the same command" in section

  # a study directory from before provenance.json: one line says so
  os.remove(workdir / "provenance.json")
  text = open(report.write_report(str(workdir))).read()
  assert "How this was made" not in text.replace("How this was made: not", "")
  assert text.count("How this was made: not recorded") == 1


@needs_cifar10
def test_a_run_records_its_command_with_its_config(tmp_path):
  workdir = tmp_path / "run"
  args = ("--config=configs/default.py:smoke", "--config.train_subset=64",
          "--config.val_subset=64", "--config.batch_size=32",
          "--config.num_epochs=1", "--config.progress_bar=False",
          f"--workdir={workdir}")
  result = run_cli(*args)
  assert result.returncode == 0, result.stderr[-3000:]
  (entry,) = json.loads((workdir / "provenance.json").read_text())
  assert entry["command"] == " ".join(["jaxtransfer", *args])
  assert entry["config"] == "configs/default.py:smoke" and not entry["fresh"]
  assert (workdir / "config.json").exists()

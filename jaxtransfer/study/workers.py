"""Any number of processes on one study: each takes an unfinished unit of
work (units.py: a shared source, a group of arms trained as one program, an
arm), trains it and goes on to the next, until every unit is done; the one
that finds them all done writes the report.

A unit is taken by holding its own directory's lock (core/workdir.lock, a
flock the kernel drops when the holder dies, SIGKILL included): no unit
runs twice at once, and a unit whose worker died is free again and resumes
from its checkpoint. The study's own lock is held only for moments: to
write the plan, to mark a unit done, to write the report. A unit that
needs a shared source waits until that is done; its worker takes other
work meanwhile, or waits.

  <workdir>/workers/units.json   the units: name, kind, arms, needs, epochs
  <workdir>/workers/<unit>.json  the unit's claim: state (running, done,
                                 failed), worker, host, pid, submission,
                                 start time, the step it resumed from, the
                                 error's last line (failed)
  <workdir>/workers/report.json  who wrote report.md after the last unit
  <workdir>/workers/submitit/    submitted workers' files and logs (submit.py)

A unit failed in this submission is not tried again by its workers (nor
the units that need it); a later run or submission tries it again. One
process running the study (`runner.run`, the plain command) is one worker:
it trains the units in the one-process study's order and writes the same
files, and a failure ends it as before.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import os
import socket
import time
import uuid
from typing import Any

from absl import logging

from jaxtransfer.core import checkpoints, distributed, provenance
from jaxtransfer.core import workdir as workdir_lib
from jaxtransfer.core.errors import UserError
from jaxtransfer.engine import training
from jaxtransfer.study import report, units

STUDY_FILE = "study.json"
STATE_DIR = "workers"
UNITS_FILE = "units.json"
REPORT_MARK = "report.json"
STUDY_LOCK_WAIT = 300.0  # seconds to wait for another worker's short hold
POLL_SECONDS = 2.0       # between looks when every unit left is taken
_WAIT, _STOP = -1, -2


def new_submission() -> str:
  return (datetime.datetime.now().strftime("%Y%m%d-%H%M%S-") +
          uuid.uuid4().hex[:6])


def _now() -> str:
  return datetime.datetime.now().isoformat(timespec="seconds")


def state_path(workdir: str, name: str) -> str:
  return os.path.join(workdir, STATE_DIR, f"{name}.json")


def read_json(path: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def _is_done(workdir: str, name: str, epochs: int | None = None) -> bool:
  state = read_json(state_path(workdir, name))
  return bool(state and state["state"] == "done" and
              (epochs is None or state.get("epochs") == epochs))


def _done(study: units.Prepared, unit: units.Unit) -> bool:
  """Done with the epochs it has now (more epochs: not done)."""
  return _is_done(study.workdir, unit.name, unit.epochs())


def work(config, workdir: str, *, fresh: bool = False, worker: int = 0,
         submission: str | None = None, keep_going: bool = False,
         always_report: bool = True, poll: float = POLL_SECONDS,
         invocation: dict[str, Any] | None = None) -> dict[str, Any]:
  """One worker on the study in `workdir`, until no unit is left to take.

  keep_going: a unit that fails is recorded and the worker goes on (raising
  at the end); otherwise the failure is recorded and raised at once.
  always_report: write the report whenever every unit is done (the plain
  command); otherwise only if none was written since the last unit finished.
  invocation: the command line that started it (core/provenance.py), for
  the report's "How this was made".
  Returns {"worker", "ran", "failed", "report", "plan", "seconds"}: seconds
  spent preparing (plan, data), starting (the plan written), training
  units, claiming and recording them, waiting for units others hold, and
  writing the report.
  """
  seconds = {"prepare": time.perf_counter()}
  study = units.prepare(config, workdir, fresh)
  me = {"worker": worker, "submission": submission or new_submission(),
        "host": socket.gethostname(), "pid": os.getpid()}
  seconds["start"] = time.perf_counter()
  start(study, fresh, invocation)
  primary = distributed.is_primary()
  progress = units.StudyProgress(config.progress_bar and primary,
                                 sum(u.epochs() for u in study.units))
  ran, failed = [], {}
  seconds.update(loop=time.perf_counter(), train=0.0, wait=0.0)
  try:
    _loop(study, me, progress, ran, failed, keep_going, poll, seconds)
  finally:
    progress.close()
  seconds["report"] = time.perf_counter()
  written = _report_if_done(study, me, always_report)
  end = time.perf_counter()
  seconds = {"prepare": seconds["start"] - seconds["prepare"],
             "start": seconds["loop"] - seconds["start"],
             "train": seconds["train"], "wait": seconds["wait"],
             "claim": (seconds["report"] - seconds["loop"] - seconds["train"]
                       - seconds["wait"]),
             "report": end - seconds["report"]}
  if failed:
    raise UserError(f"worker {worker}: {len(failed)} unit(s) failed: " +
                    "; ".join(f"{n}: {e}" for n, e in failed.items()))
  return {"worker": worker, "ran": ran, "failed": failed, "report": written,
          "plan": read_json(os.path.join(workdir, STUDY_FILE)),
          "seconds": {k: round(v, 4) for k, v in seconds.items()}}


def start(study: units.Prepared, fresh: bool = False,
          invocation: dict[str, Any] | None = None) -> None:
  """Under the study's lock, for a moment: checks the study directory again
  (another worker may have written it since), archives it if `fresh`, and
  writes config.json, the units and study.json (the plan, with what is
  already done marked done)."""
  workdir = study.workdir
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f"cannot create workdir {workdir}: {e.strerror}") from None
  with workdir_lib.lock(workdir, wait=STUDY_LOCK_WAIT):
    workdir_lib.check(workdir, study.config_dict, fresh)
    if fresh and distributed.is_primary():
      busy = [u.name for u in study.units
              if workdir_lib.is_locked(os.path.join(workdir, u.name))]
      if busy:
        raise UserError(f"--fresh: workers are training {', '.join(busy)} in "
                        f"{workdir}; stop them first")
      workdir_lib.archive_run(workdir, whole=True)
    distributed.barrier("study-started")
    workdir_lib.record_config(workdir, study.config_dict)
    provenance.record(workdir, invocation)
    if distributed.is_primary():
      os.makedirs(os.path.join(workdir, STATE_DIR), exist_ok=True)
      workdir_lib.write_json_atomic(
          os.path.join(workdir, STATE_DIR, UNITS_FILE),
          [u.describe() for u in study.units])
      plan = copy.deepcopy(study.plan)
      for unit in study.units:
        if _done(study, unit):
          _mark_done(plan, unit)
      workdir_lib.write_json_atomic(os.path.join(workdir, STUDY_FILE), plan)


def _mark_done(plan: dict[str, Any], unit: units.Unit) -> None:
  for entry in plan["arms"]:
    if entry["name"] in unit.arms:
      entry["status"] = "done"
      if unit.kind == "group":
        entry["vectorized_in"] = unit.name


def _loop(study, me, progress, ran, failed, keep_going, poll, seconds) -> None:
  primary = distributed.is_primary()
  while not training.stop_requested():
    with contextlib.ExitStack() as held:
      choice = _claim_next(study, me, held) if primary else _WAIT
      choice = distributed.broadcast_int(choice)
      if choice == _STOP:
        return
      if choice == _WAIT:
        held.close()
        time.sleep(poll)
        seconds["wait"] += poll
        continue
      unit = study.units[choice]
      if not primary:  # (process 0 holds the lock; this follows it)
        held.enter_context(workdir_lib.lock(os.path.join(study.workdir,
                                                         unit.name)))
      error = _run_unit(study, unit, me, progress, held, keep_going, seconds)
      if error:
        failed[unit.name] = error
      else:
        ran.append(unit.name)
  logging.warning("worker %d: stop requested; leaving the units left to "
                  "other workers or a rerun", me["worker"])


def _claim_next(study, me, held: contextlib.ExitStack) -> int:
  """The index of the first unit this worker can take, now held; _WAIT if
  the units left are taken or wait for a shared run; _STOP if none is left
  that this submission can still train."""
  workdir = study.workdir
  states = {u.name: read_json(state_path(workdir, u.name))
            for u in study.units}
  done = {u.name for u in study.units if _done(study, u)}

  def given_up(name: str) -> bool:  # failed in this submission
    state = states.get(name)
    return bool(state and state["state"] == "failed" and
                state.get("submission") == me["submission"])

  waiting = False
  for index, unit in enumerate(study.units):
    if unit.name in done or given_up(unit.name):
      continue
    needed = [n for n in unit.needs if n not in done]
    if any(given_up(n) for n in needed):
      continue  # (its source failed: it cannot run in this submission)
    waiting = True
    if needed:
      continue
    unit_dir = os.path.join(workdir, unit.name)
    os.makedirs(unit_dir, exist_ok=True)
    attempt = contextlib.ExitStack()
    try:
      attempt.enter_context(workdir_lib.lock(unit_dir))
    except workdir_lib.Busy:
      continue
    if _done(study, unit):  # finished by another worker since we looked
      attempt.close()
      continue
    held.enter_context(attempt)
    return index
  return _WAIT if waiting else _STOP


def _run_unit(study, unit, me, progress, held, keep_going,
              seconds) -> str | None:
  """Trains a held unit; returns the failure's last line, or None."""
  workdir = study.workdir
  primary = distributed.is_primary()
  # A group's arms are written by whoever holds the group: hold them too
  # (a status probe may hold one for a moment).
  for name in unit.arms if unit.kind == "group" else ():
    os.makedirs(os.path.join(workdir, name), exist_ok=True)
    held.enter_context(workdir_lib.lock(os.path.join(workdir, name), wait=30))
  unit_dir = os.path.join(workdir, unit.name)
  claim = {**me, "unit": unit.name, "kind": unit.kind, "arms": unit.arms,
           "epochs": unit.epochs(), "state": "running", "started": _now(),
           "resumed_from_step": checkpoints.latest_step(unit_dir)}
  if primary:
    workdir_lib.write_json_atomic(state_path(workdir, unit.name), claim)
  started = time.perf_counter()
  try:
    try:
      units.train(unit, study, progress)
    finally:
      seconds["train"] += time.perf_counter() - started
  except training.Interrupted:
    raise  # (a stop: the claim stays "running"; the lock goes)
  except Exception as e:  # pylint: disable=broad-except
    line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    error = f"{type(e).__name__}: {line}"[:500]
    if primary:
      workdir_lib.write_json_atomic(
          state_path(workdir, unit.name),
          {**claim, "state": "failed", "finished": _now(), "error": error})
    if not keep_going:
      raise
    logging.error("worker %d: %s failed: %s", me["worker"], unit.name, error)
    return error
  done = {**claim, "state": "done", "finished": _now(),
          "seconds": round(time.perf_counter() - started, 3)}
  with workdir_lib.lock(workdir, wait=STUDY_LOCK_WAIT):
    if primary:
      workdir_lib.write_json_atomic(state_path(workdir, unit.name), done)
      plan_path = os.path.join(workdir, STUDY_FILE)
      plan = read_json(plan_path) or copy.deepcopy(study.plan)
      _mark_done(plan, unit)
      workdir_lib.write_json_atomic(plan_path, plan)
      with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(workdir, STATE_DIR, REPORT_MARK))
  return None


def _report_if_done(study, me, always: bool) -> str | None:
  """report.md, if every unit is done (and, unless `always`, no report was
  written since the last one finished). Returns its path, or None."""
  workdir = study.workdir
  with workdir_lib.lock(workdir, wait=STUDY_LOCK_WAIT):
    if not all(_done(study, u) for u in study.units):
      return None
    mark = os.path.join(workdir, STATE_DIR, REPORT_MARK)
    if not always and os.path.exists(mark):
      return None
    if not distributed.is_primary():
      return None
    path = report.write_report(workdir)
    workdir_lib.write_json_atomic(mark, {**me, "written": _now()})
  logging.info("Report: %s", path)
  return path


def status(workdir: str) -> list[str]:
  """Where a study stands, from its directory alone: each shared run and arm
  done, running (which worker, which epoch), waiting, failed (the error's
  last line) or skipped; and the report."""
  plan = read_json(os.path.join(workdir, STUDY_FILE))
  if plan is None:
    raise UserError(f"{workdir} holds no study (no {STUDY_FILE})")
  listed = read_json(os.path.join(workdir, STATE_DIR, UNITS_FILE)) or [
      {"name": a["name"], "kind": "arm", "arms": [a["name"]], "epochs": None}
      for a in plan["arms"] if a["status"] != "skipped"]
  rows, counts = [], {}
  for unit in listed:
    state = read_json(state_path(workdir, unit["name"])) or {}
    unit_dir = os.path.join(workdir, unit["name"])
    held = workdir_lib.is_locked(unit_dir)
    records = workdir_lib.read_metrics(unit_dir)
    epoch = max((r.get("epoch", 0) for r in records), default=0)
    per_arm = (unit["epochs"] // max(len(unit["arms"]), 1)
               if unit["epochs"] else None)
    of = f"epoch {epoch}/{per_arm if per_arm else '?'}"
    who = (f"worker {state.get('worker')} on {state.get('host')} "
           f"(pid {state.get('pid')})")
    if state.get("state") == "done" or (
        not state and plan_status(plan, unit) == "done"):
      word = "done"
      detail = (f"{who}, {state['seconds']:.0f} s" if state.get("seconds")
                is not None else "")
    elif held:
      word = "running"
      detail = (f"{who} since {state.get('started', '?')}, {of}" if state
                else f"{of} (a run without a claim file)")
    elif state.get("state") == "failed":
      word, detail = "failed", f"{who}: {state.get('error')}"
    else:
      word = "waiting"
      detail = (f"stopped at {of} ({who} is gone); resumes from its "
                "checkpoint" if state.get("state") == "running" else "")
      needs = [n for n in unit.get("needs", ())
               if not _is_done(workdir, n)]
      if needs:
        detail = (detail + "; " if detail else "") + f"needs {', '.join(needs)}"
    counts[word] = counts.get(word, 0) + len(unit["arms"])
    label = unit["name"] if unit["kind"] == "arm" else (
        f"{unit['name']} ({unit['kind']}" + (
            f": {', '.join(unit['arms'])})" if unit["arms"] else ")"))
    rows.append((word, label, detail))
  for arm in plan["arms"]:
    if arm["status"] == "skipped":
      counts["skipped"] = counts.get("skipped", 0) + 1
      rows.append(("skipped", arm["name"], arm["reason"]))
  width = max(len(label) for _, label, _ in rows)
  words = ("done", "running", "waiting", "failed", "skipped")
  lines = [f"study {workdir}: {len(plan['arms'])} arms: " + ", ".join(
      f"{counts.get(w, 0)} {w}" for w in words)] + [
          f"  {word:8} {label:{width}}  {detail}".rstrip()
          for word, label, detail in rows]
  mark = read_json(os.path.join(workdir, STATE_DIR, REPORT_MARK))
  report_file = os.path.join(workdir, workdir_lib.REPORT_FILE)
  if mark:
    lines.append(f"report: {report_file} (worker {mark.get('worker')}, "
                 f"{mark.get('written')})")
  elif os.path.exists(report_file):
    lines.append(f"report: {report_file}")
  else:
    lines.append("report: not yet (written when every arm is done)")
  return lines


def plan_status(plan: dict[str, Any], unit: dict[str, Any]) -> str:
  """'done' if study.json marks all of a unit's arms done."""
  entries = [a for a in plan["arms"] if a["name"] in unit["arms"]]
  return "done" if entries and all(a["status"] == "done"
                                   for a in entries) else ""

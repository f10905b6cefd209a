"""Where features plug in: what each feature adds to the lab, by kind.

A feature (a module or subpackage of jaxtransfer/features/) registers, when
it is imported, what it provides:

  config_check(fn)          fn(config) raises UserError for a value of the
                            fields it owns that cannot work (run by
                            engine/validation.py before anything is read)
  run_kind(RunKind(...))    a kind of run that replaces the plain one when
                            its `enabled(config)` is true (staged runs,
                            active learning): experiment.train/evaluate and
                            the study runner dispatch through it
  report_section(ReportSection(...))   its part of a study's report.md
                            (study/report.py), for the arms it filed
  default(field, value)     the value a field takes in a workdir written
                            before the field existed (core/workdir.py)

The engine, the study runner and the report writer iterate over what is
registered and name no feature. Features are found by convention, as
big_vision finds a model from its name (`importlib.import_module(
f"big_vision.models.{name}")`): `load_features()` imports every module and
subpackage of the `jaxtransfer.features` package by its folder listing, so
adding a feature is adding a module there, with no table to edit. Nothing
here imports a feature by name: the layers contract in pyproject.toml holds.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable

FEATURES_PACKAGE = "jaxtransfer.features"


@dataclasses.dataclass(frozen=True)
class RunKind:
  """A kind of run that a config switches on (e.g. `config.stages`).

  title                                   what it is, for messages
  enabled(config)                         whether the config asks for it
  switch(config)                          the field that switched it on, as
                                          'config.<field>=<value>'
  train(config, workdir, *, fresh, dataset, hooks, invocation) -> history
                                          records (invocation: the command
                                          line for provenance.json, or None)
  final_run(config, workdir) -> (config, run_dir) of the run that holds
                                          the final model (for eval, analyze;
                                          None: no single final model)
  total_epochs(config)                    epochs it trains in all (progress)
  epochs_done(config, run_dir)            epochs already filed (progress)
  prepare(config, dataset)                checks that need the data read
                                          (None: none)
  report_config(arm_dir) -> config dict   what a study report describes
                                          such an arm by (None: its own)
  report_values(arm_dir, values) -> values  its swept values as the report
                                          row shows them (None: as they are)
  """
  name: str
  title: str
  enabled: Callable[[Any], bool]
  switch: Callable[[Any], str]
  train: Callable[..., Any]
  final_run: Callable[[Any, str], tuple[Any, str]] | None
  total_epochs: Callable[[Any], int]
  epochs_done: Callable[[Any, str], int]
  prepare: Callable[[Any, Any], None] | None = None
  report_config: Callable[[str], dict | None] | None = None
  report_values: Callable[[str, dict], dict] | None = None


@dataclasses.dataclass(frozen=True)
class ReportSection:
  """A feature's part of a study's report.md.

  files_arm(arm_dir)         whether the feature filed this arm (its records
                             are its own files, not metrics.jsonl)
  lines(workdir, arm_dirs)   the section's markdown lines for those arms
                             (placed after the report's list of arms)
  lone_run(workdir)          report.md of a workdir that is one run of the
                             feature (not a study), or None if it is not one
  """
  name: str
  files_arm: Callable[[str], bool]
  lines: Callable[[str, list[str]], list[str]]
  lone_run: Callable[[str], str | None] | None = None


_CONFIG_CHECKS: list[Callable[[Any], None]] = []
_RUN_KINDS: list[RunKind] = []
_REPORT_SECTIONS: list[ReportSection] = []
_DEFAULTS: dict[str, Any] = {}
_loaded = False


def _add(registry: list, item):
  if item not in registry:  # a module imported twice registers once
    registry.append(item)
  return item


def config_check(fn: Callable[[Any], None]) -> Callable[[Any], None]:
  return _add(_CONFIG_CHECKS, fn)


def run_kind(kind: RunKind) -> RunKind:
  if any(k.name == kind.name for k in _RUN_KINDS):
    return kind
  _RUN_KINDS.append(kind)
  return kind


def report_section(section: ReportSection) -> ReportSection:
  if not any(s.name == section.name for s in _REPORT_SECTIONS):
    _REPORT_SECTIONS.append(section)
  return section


def default(field: str, value: Any) -> None:
  _DEFAULTS.setdefault(field, value)


def load_features() -> None:
  """Imports every feature module once (module docstring)."""
  global _loaded
  if _loaded:
    return
  _loaded = True
  package = importlib.import_module(FEATURES_PACKAGE)
  for info in sorted(pkgutil.iter_modules(package.__path__),
                     key=lambda i: i.name):
    importlib.import_module(f"{FEATURES_PACKAGE}.{info.name}")


def config_checks() -> tuple[Callable[[Any], None], ...]:
  load_features()
  return tuple(_CONFIG_CHECKS)


def run_kinds() -> tuple[RunKind, ...]:
  load_features()
  return tuple(_RUN_KINDS)


def run_kind_of(config) -> RunKind | None:
  """The first registered run kind the config switches on, or None (a
  plain run). (Two at once: the first's config check says which.)"""
  return next((k for k in run_kinds() if k.enabled(config)), None)


def report_sections() -> tuple[ReportSection, ...]:
  load_features()
  return tuple(_REPORT_SECTIONS)


def defaults() -> dict[str, Any]:
  load_features()
  return dict(_DEFAULTS)

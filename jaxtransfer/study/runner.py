"""A study: named arms, each an ordinary run of `config.num_seeds` seeds
trained side by side, then a report.

The arms come from `config.study`:
  grid    a grid over any config fields: {'optimizer': ('sgd', 'adam'),
          'augment': {'hflip': (False, True)}} (a dict, nested for dotted
          fields; its keys come sorted) or ((field, values), ...) pairs in
          the order you want (dotted names allowed: ('augment.hflip', ...)).
  arms    an explicit list of named arms, each a dict of overrides:
          ({'name': 'case1', 'lr_values': (...), 'freeze': 'none'}, ...);
          with a grid as well, every arm is crossed with the grid.
  inits, freezes   shorthand for the grid over 'init' and 'freeze' (seed
          000's study, configs/study.py).
  colour_by, panel_by   which swept field colours the plots' lines and
          which makes their panels ('' = chosen from the swept fields).
  source  a dict of overrides for a classifier run trained first into
          <workdir>/source (resumable, as an arm); every arm with
          init='checkpoint' and no init_weights starts from it (seed 001's
          transfer with a jaxtransfer run as the source model).
  vectorize  True: arms that differ only in seed, initialisers, learning
          rate, weight decay, regulariser strengths or joint loss weights
          train as one program (engine/variants.py, study/vectorize.py); each still
          gets its own <workdir>/<arm>/ run, records and report row.
  columns the report's table in a study's own terms (report_columns.py):
          metrics, config fields and per-arm notes, e.g. seed 001's
          ('train_accuracy', 'val_accuracy', 'lr', 'epochs', ...).
  An explicit arm may carry 'notes': {column: text} for the table (not a
  config field; e.g. {'technique': 'fine-tuning'}).

  <workdir>/study.json          the arms (name, swept values), and per arm:
                                done / skipped (why)
  <workdir>/autoencoder/        an autoencoder pre-trained once for all the
                                autoencoder arms that share its config
  <workdir>/source/             the source run of study.source
  <workdir>/<arm>/              each arm's run: config.json, metrics.jsonl
                                (a line per epoch and seed), checkpoints/
  <workdir>/report.md, *.png    the report (report.py)
  <workdir>/workers/            who trains or trained what (workers.py)

A killed study started again with the same command skips finished arms and
resumes the unfinished one from its latest checkpoint. The same command
started several times at once (on one machine, or on several sharing the
directory), or `jaxtransfer study submit` (submit.py), runs the study with
as many workers: each takes an unfinished arm (or group, or shared source)
by its directory's lock, and the last writes the report (workers.py);
<workdir>/workers/ holds their claims (`jaxtransfer study status`).
"""

from __future__ import annotations

from typing import Any

from jaxtransfer.study import workers
from jaxtransfer.study.planning import (Arm, arm_config, is_study, plan_arms,
                                        plan_study, swept_fields)

STUDY_FILE = workers.STUDY_FILE
__all__ = ["Arm", "arm_config", "is_study", "plan_arms", "plan_study",
           "swept_fields", "run", "STUDY_FILE"]


def run(config, workdir: str, *, fresh: bool = False,
        invocation: dict[str, Any] | None = None) -> dict[str, Any]:
  """Trains every arm that can run (resuming), then writes the report;
  returns the plan (study.json). One worker (workers.work): alone on the
  study it trains what the study always trained, in the same order; beside
  others it trains the arms they have not taken. Each arm locks its own
  directory; the study's is locked only for moments. `invocation` (main's
  command line, core/provenance.py) goes into <workdir>/provenance.json
  once the study has passed its checks."""
  return workers.work(config, workdir, fresh=fresh,
                      invocation=invocation)["plan"]

#!/usr/bin/env bash
# Runs parts of a sweep study (docs/studies/sweeps.md) at full size, one arm
# after another, and files each one's records (docs/parts/table.py's
# docstring says why parts):
#
#   bash docs/parts/run.sh inits he_uniform zeros ones
#       # into docs/results/sweeps/sweep_inits_full/
#   bash docs/parts/run.sh reg none kernel_l2_1e-4
#       # into docs/results/sweeps/sweep_reg_full/
#
# Per arm NAME: trains it (2 seeds, one program) into
# workdirs/<study dir>_NAME -- the same command started again resumes from
# the latest checkpoint and skips a part already trained -- then computes
# precise BatchNorm statistics and copies metrics.jsonl, report.md, the
# pngs and precise_bn.md into docs/results/sweeps/<study dir>/NAME/. A part
# already filed there is refused rather than overwritten. Stopped (Ctrl-C,
# or SIGTERM to its process group: kill -TERM -- -PGID), training
# checkpoints and the script exits; run it again to go on. Then
# `python docs/parts/table.py STUDY` prints the study page's table
# (docs/studies/sweeps.md). PYTHON picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python}"
case "${1:-}" in  # table.py's STUDIES holds the same names and directories
  inits) dir=sweep_inits_full; config=configs/sweeps/initializers.py; arg=inits ;;
  reg) dir=sweep_reg_full; config=configs/sweeps/regularization.py; arg=arms ;;
  *) echo "usage: bash docs/parts/run.sh {inits|reg} ARM [ARM ...]" >&2; exit 2 ;;
esac
shift
if [[ $# -eq 0 ]]; then
  echo "usage: bash docs/parts/run.sh {inits|reg} ARM [ARM ...]" >&2; exit 2
fi
# every name checked by the config itself before the first part starts
names="$(IFS=+; echo "$*")"
"$PY" -c "
import importlib, sys
from jaxtransfer.errors import UserError
try:
  importlib.import_module('${config%.py}'.replace('/', '.')).get_config('$arg=$names')
except UserError as e:
  print(f'run.sh: {e}', file=sys.stderr); sys.exit(2)
"
for name in "$@"; do
  if [[ -e "docs/results/sweeps/$dir/$name" ]]; then
    echo "run.sh: docs/results/sweeps/$dir/$name is already filed; remove it to redo $name" >&2
    exit 2
  fi
done
for name in "$@"; do
  work="workdirs/${dir}_$name"
  out="docs/results/sweeps/$dir/$name"
  echo "run.sh: $name: training into $work ($(date -u))"
  "$PY" -m jaxtransfer.main --config="$config:$arg=$name" --workdir="$work"
  echo "run.sh: $name: precise BatchNorm statistics ($(date -u))"
  "$PY" docs/results/sweeps/sweep_inits_5k/precise_bn.py "$work" > "$work/precise_bn.md"
  mkdir -p "$out"
  cp "$work/$name/metrics.jsonl" "$work/report.md" "$work"/*.png "$out/"
  cp "$work/precise_bn.md" "$out/precise_bn.md"
  echo "run.sh: $name: filed in $out ($(date -u))"
done

"""README's full-size initialiser table is printed by
docs/sweep_inits_full/table.py from the committed parts' records; each
part's numbers must agree with the study report written by the run
(report.py, an independent reading of the same records), and every row
README shows must be the script's."""

import contextlib
import io
import os
import re
import runpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = os.path.join(ROOT, "docs", "sweep_inits_full")


def _table_rows():
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    runpy.run_path(os.path.join(PARTS, "table.py"), run_name="__main__")
  return {line.split("|")[1].strip(): line
          for line in out.getvalue().splitlines()[2:]}


def test_full_size_parts_agree_with_their_reports_and_readme():
  rows = _table_rows()
  parts = [d for d in sorted(os.listdir(PARTS))
           if os.path.isdir(os.path.join(PARTS, d))]
  assert parts, "no committed part"
  with open(os.path.join(ROOT, "README.md")) as f:
    readme = f.read()
  for name in parts:
    with open(os.path.join(PARTS, name, "report.md")) as f:
      report = f.read()
    # "| random_normal | 2 | 59.25 ± 1.81 | ..." in "The study's table"
    stored = re.search(rf"^\| {name} \| \d+ \| ([\d.]+ ± [\d.]+) \|",
                       report, re.M).group(1)
    assert f"| {stored} (" in rows[name], (name, rows[name])
    # README shows the script's row for every committed part (bold aside)
    cells = [c.strip() for c in rows[name].split("|")[1:-1]]
    readme_row = next(line for line in readme.splitlines()
                      if line.startswith(f"| {name} |")
                      and "±" in line
                      and "(" in line)
    readme_cells = [c.strip().replace("**", "")
                    for c in readme_row.split("|")[1:-1]]
    assert readme_cells == cells, (readme_cells, cells)

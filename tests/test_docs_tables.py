"""The sweep studies' full-size tables (docs/studies/sweeps.md) are printed
by docs/parts/table.py from the parts' records filed under docs/results/;
each filed part's numbers must agree with the study report its run wrote
(report.py, an independent reading of the same records), every row the
study page shows must be the script's, and the regularisation table's
differences against no penalty are checked on made-up parts against a
computation by hand."""

import importlib.util
import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the page that shows the full-size tables (README did, before docs/studies/)
STUDY_PAGE = os.path.join(ROOT, "docs", "studies", "sweeps.md")


def _table_module():
  spec = importlib.util.spec_from_file_location(
      "parts_table", os.path.join(ROOT, "docs", "parts", "table.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


TABLE = _table_module()


def _by_arm(lines):
  return {line.split("|")[1].strip(): line for line in lines[2:]}


@pytest.mark.parametrize("study", sorted(TABLE.STUDIES))
def test_filed_parts_agree_with_their_reports_and_study_page(study):
  rows = _by_arm(TABLE.rows(study))
  parts_dir = os.path.join(TABLE.RESULTS, TABLE.STUDIES[study][0])
  parts = (sorted(d for d in os.listdir(parts_dir)
                  if os.path.isdir(os.path.join(parts_dir, d)))
           if os.path.isdir(parts_dir) else [])
  if study == "inits":
    assert parts, "no filed part of the initialiser table"
  assert set(parts) <= set(rows), parts  # no stray directory
  with open(STUDY_PAGE) as f:
    page = f.read()
  for name in parts:
    with open(os.path.join(parts_dir, name, "report.md")) as f:
      report = f.read()
    # "| random_normal | 2 | 59.25 ± 1.81 | ..." in "The study's table" (the
    # summary above it can have a row of the same shape: best val loss)
    table = report[report.index("## The study's table"):]
    stored = re.search(rf"^\| {name} \| \d+ \| ([\d.]+ ± [\d.]+) \|",
                       table, re.M).group(1)
    assert f"| {stored} (" in rows[name], (name, rows[name])
    # the study page shows the script's row for every filed part (bold aside)
    cells = [c.strip() for c in rows[name].split("|")[1:-1]]
    page_row = next(line for line in page.splitlines()
                      if line.startswith(f"| {name} |")
                      and "±" in line and "(" in line)
    page_cells = [c.strip().replace("**", "")
                  for c in page_row.split("|")[1:-1]]
    assert page_cells == cells, (page_cells, cells)


def _file_part(docs_dir, name, val, train, precise):
  part = os.path.join(docs_dir, TABLE.STUDIES["reg"][0], name)
  os.makedirs(part)
  with open(os.path.join(part, "metrics.jsonl"), "w") as f:
    for epoch in (1, 2):
      for seed, (v, t) in enumerate(zip(val, train)):
        # epoch 1's numbers are off by 0.5 so a table from it would differ
        f.write(json.dumps({"epoch": epoch, "seed": seed,
                            "val_accuracy": v - 0.5 * (epoch == 1),
                            "train_accuracy": t}) + "\n")
  with open(os.path.join(part, "precise_bn.md"), "w") as f:
    f.write("| arm | seed | stored | precise |\n|---|---|---|---|\n")
    for seed, p in enumerate(precise):
      f.write(f"| {name} | {seed} | 0 | {p} |\n")


def test_regularisation_rows_difference_against_none(tmp_path):
  _file_part(str(tmp_path), "none", [0.50, 0.60], [0.7, 0.8], [60.0, 62.0])
  _file_part(str(tmp_path), "kernel_l2_1e-4", [0.52, 0.56], [0.6, 0.7],
             [58.0, 59.0])
  rows = _by_arm(TABLE.rows("reg", docs_dir=str(tmp_path)))
  none = [c.strip() for c in rows["none"].split("|")[1:-1]]
  l2 = [c.strip() for c in rows["kernel_l2_1e-4"].split("|")[1:-1]]
  # by hand: stored means 55.0 and 54.0 (std 5.0, 2.0); precise 61.0, 58.5
  assert none == ["none", "55.00 ± 5.00 (50.00, 60.00)", "-",
                  "61.00 ± 1.00", "-", "75.00"]
  assert l2 == ["kernel_l2_1e-4", "54.00 ± 2.00 (52.00, 56.00)", "−1.0",
                "58.50 ± 0.50", "−2.5", "65.00"]
  assert rows["kernel_l1_1e-5"].split("|")[2].strip() == "not run yet"
  assert len(rows["kernel_l1_1e-5"].split("|")) == len(rows["none"].split("|"))

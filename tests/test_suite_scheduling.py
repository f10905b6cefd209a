"""The suite's own scheduling over xdist workers (conftest.py): every module
with a module-scoped fixture is one unit of work, so its fixture is built
once, and no other test is grouped."""

import ast
import glob
import os

from conftest import SHARED_FIXTURE_MODULES, TESTS_DIR, work_unit


def _has_module_fixture(path: str) -> bool:
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.Call) and any(
        k.arg == "scope" and getattr(k.value, "value", None) == "module"
        for k in node.keywords):
      return True
  return False


def test_the_grouped_modules_are_those_with_a_module_fixture():
  found = {os.path.basename(p) for p in glob.glob(os.path.join(TESTS_DIR, "test_*.py"))
           if _has_module_fixture(p)}
  assert found == SHARED_FIXTURE_MODULES


def test_a_grouped_module_is_one_unit_and_other_tests_their_own():
  assert work_unit("tests/test_end_to_end.py::test_smoke[a]") == "tests/test_end_to_end.py"
  assert work_unit("tests/test_end_to_end.py::test_b") == "tests/test_end_to_end.py"
  assert work_unit("tests/test_pets.py::test_x") == "tests/test_pets.py::test_x"
  assert work_unit("test_lab.py::test_y") == "test_lab.py"

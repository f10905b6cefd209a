"""The suite's own scheduling over xdist workers (conftest.py): every module
with a module-scoped fixture is one unit of work, so its fixture is built
once, and no other test is grouped."""

import ast
import glob
import inspect
import os

from xdist.scheduler import LoadScopeScheduling

from conftest import (SHARED_FIXTURE_MODULES, TESTS_DIR,
                      SharedFixturesTogether, work_unit)


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


def test_the_scheduler_groups_by_work_unit():
  """Our scheduler's scope is work_unit, and pytest-xdist's schedule and
  bookkeeping still ask the method it overrides (an internal one: a
  renamed method would silently group every module)."""
  scheduler = SharedFixturesTogether.__new__(SharedFixturesTogether)
  for nodeid in ("tests/test_lab.py::test_y", "tests/test_pets.py::test_x"):
    assert scheduler._split_scope(nodeid) == work_unit(nodeid)
  for method in (LoadScopeScheduling.schedule,
                 LoadScopeScheduling.mark_test_complete):
    assert "self._split_scope(" in inspect.getsource(method)

"""The package that installs is the whole package: a wheel built from the
source holds every module of jaxtransfer/ (a subpackage left out of
pyproject's package list would be missing from `pip install .`, hidden by an
editable install), and CI's suite imports the installed wheel, not the
source (.ci/run)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO_ROOT

import jaxtransfer

SOURCE = pathlib.Path(REPO_ROOT) / "jaxtransfer"
INSTALLED = os.environ.get("JAXTRANSFER_INSTALLED") == "1"


@pytest.mark.skipif(not INSTALLED, reason="CI's run against the installed "
                    "wheel (.ci/run sets JAXTRANSFER_INSTALLED=1)")
def test_ci_imports_the_installed_package_not_the_source():
  package_dir = pathlib.Path(jaxtransfer.__file__).resolve().parent
  assert not SOURCE.exists(), "the suite's copy holds the package source"
  assert "site-packages" in package_dir.parts, package_dir


@pytest.mark.skipif(not SOURCE.is_dir(), reason="needs the package source")
def test_the_wheel_holds_every_module_of_the_source(tmp_path):
  tree = tmp_path / "tree"
  shutil.copytree(SOURCE, tree / "jaxtransfer",
                  ignore=shutil.ignore_patterns("__pycache__"))
  for name in ("pyproject.toml", "README.md"):
    shutil.copy(pathlib.Path(REPO_ROOT) / name, tree / name)
  out = tmp_path / "dist"
  out.mkdir()
  subprocess.run(
      [sys.executable, "-c", "import sys; from setuptools import build_meta; "
       "build_meta.build_wheel(sys.argv[1])", str(out)],
      cwd=tree, check=True, capture_output=True, text=True, timeout=300)
  (wheel,) = out.glob("jaxtransfer-*.whl")
  with zipfile.ZipFile(wheel) as archive:
    in_wheel = {n for n in archive.namelist()
                if n.startswith("jaxtransfer/") and n.endswith(".py")}
  in_source = {p.relative_to(SOURCE.parent).as_posix()
               for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts}
  assert len(in_source) > 50  # the package, not an empty folder
  assert in_source - in_wheel == set()
  assert in_wheel - in_source == set()

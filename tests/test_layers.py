"""The direction of imports (console -> sessions_app -> profiles) is enforced by import-linter."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_project(target):
    for package in ("console", "profiles", "sessions_app"):
        shutil.copytree(ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")


def _lint(cwd):
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)}, timeout=120)


def test_it_keeps_the_layers_of_this_tree():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_it_fails_the_build_on_an_upward_import(tmp_path):
    """A lower app importing a higher one (profiles -> console) breaks the contract."""
    _copy_project(tmp_path)
    rules = tmp_path / "profiles" / "rules.py"
    rules.write_text(rules.read_text() + "\nfrom console import observability  # noqa: E402,F401\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
    assert "profiles.rules -> console.observability" in result.stdout

"""The import graph as Python executes it: no circles, no import up the layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_circles_and_layers_point_down():
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_imports.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 circles, 0 imports up the layers" in out.stdout


def test_the_checker_counts_package_inits_and_function_level_imports(tmp_path):
    """A lazy import of a submodule whose package imports the importer is a circle."""
    pkg = tmp_path / "scinas"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("def f():\n    from .sub.leaf import x\n")
    (pkg / "sub" / "__init__.py").write_text("from . import other\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    (pkg / "sub" / "other.py").write_text("from scinas.errors import f\n")
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_imports.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 1
    assert "import circle: scinas.errors <-> scinas.sub <-> scinas.sub.other" in out.stdout

"""The package's import structure: import-linter contracts (pyproject.toml) hold, a broken contract fails the
linter, and no module outside the CLI imports the package inside a function (the way cycles used to be dodged)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "interhandgen"
LINT = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))


def _function_local_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "interhandgen":
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} from {node.module}")
            elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "interhandgen" for a in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} import {node.names[0].name}")
    return found


def test_no_function_local_package_imports_outside_the_cli():
    # The CLI imports its command's modules inside the command, so that `interhandgen --help` does not load torch;
    # everywhere else an import inside a function would only hide a cycle from the linter.
    found = [hit for p in sorted(SRC.rglob("*.py")) if "cli" not in p.relative_to(SRC).parts
             for hit in _function_local_imports(p)]
    assert found == []


def _lint(cwd: Path, env_path: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = str(env_path) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([LINT, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_way_import_fails_the_linter(tmp_path):
    """The same kind of layers contract on a tiny package with one upward import must fail."""
    pkg = tmp_path / "src" / "layered"
    for name, body in {"__init__.py": "", "low.py": "from layered import high\n", "high.py": ""}.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""\
        [importlinter]
        root_package = layered

        [importlinter:contract:layers]
        name = layers
        type = layers
        layers =
            layered.high
            layered.low
        """))
    result = _lint(tmp_path, tmp_path / "src")
    assert result.returncode != 0, result.stdout
    assert "layered.low -> layered.high" in result.stdout
    (pkg / "low.py").write_text("")
    assert _lint(tmp_path, tmp_path / "src").returncode == 0

"""Test-wide settings and helpers."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The evaluate CLI caches reference features under $INTERHANDGEN_CACHE: keep tests out of the user's cache.
    monkeypatch.setenv("INTERHANDGEN_CACHE", str(tmp_path_factory.mktemp("ihg_cache")))


@pytest.fixture(scope="session")
def load_benchmark():
    """``load_benchmark(name)``: the module ``benchmarks/<name>.py`` (not a package), loaded once per session and
    registered in sys.modules (dataclasses look their module up there)."""
    def load(name: str):
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]
    return load

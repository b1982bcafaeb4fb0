"""Test-wide settings."""

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The evaluate CLI caches reference features under $INTERHANDGEN_CACHE: keep tests out of the user's cache.
    monkeypatch.setenv("INTERHANDGEN_CACHE", str(tmp_path_factory.mktemp("ihg_cache")))

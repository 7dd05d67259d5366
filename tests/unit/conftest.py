import pytest


@pytest.fixture(autouse=True)
def no_minimum_defer(monkeypatch):
    """Unit tests of triggers need not hold results back (see triggers/base.py MIN_DEFER_SECONDS)."""
    monkeypatch.setattr("release_orchestrator.triggers.base.MIN_DEFER_SECONDS", 0.0)

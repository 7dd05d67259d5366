"""The Airflow plugin entry point: Airflow loads this file; the package is imported normally."""

from release_orchestrator.plugin import ReleaseOrchestratorPlugin  # noqa: F401

"""Test-wide settings: an isolated Airflow home, no example DAGs, dummy AWS credentials.

Set before anything imports Airflow, so no test touches ~/airflow or a real AWS account.
"""

import os
import tempfile

import pytest

os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="release-orchestrator-tests-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


# Suites that start an Airflow environment of their own in the worker that runs them (the session fixtures of
# tests/integration/conftest.py). The fault tests kill and restart its processes, the execution-mode tests hold
# stages with long builds, and the stage-control tests (rollback, retry, lifecycle events) hold a stage for a
# minute at a time: they run apart from the rest of the integration suite, in the other worker.
SUITE_MODULES = {
    "integration-apart": (
        "tests/integration/test_faults.py",
        "tests/integration/test_execution_modes.py",
        "tests/integration/test_rollback.py",
        "tests/integration/test_stage_retry.py",
        "tests/integration/test_notifications_lifecycle.py",
    ),
}
AIRFLOW_SUITES = ("integration", *SUITE_MODULES)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two workers (`-n 2`). Each Airflow suite (AIRFLOW_SUITES) shares one Airflow
    environment and the sandbox tests one sandbox, so each of those suites goes to one worker as a whole, the
    Airflow suites to different workers, while the unit, DAG and package tests go one by one to whichever
    worker is free."""
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            for suite, modules in SUITE_MODULES.items():
                if nodeid.startswith(modules):
                    return suite
            suite = nodeid.split("/")[1] if nodeid.startswith("tests/") else ""
            return suite if suite in ("integration", "sandbox") else nodeid

        def _assign_work_unit(self, node) -> None:
            # A worker without an Airflow suite takes the next one first; a worker with one takes anything else.
            holds_one = any(scope in AIRFLOW_SUITES for scope in self.assigned_work.get(node, {}))
            preferred = [scope for scope in self.workqueue if (scope in AIRFLOW_SUITES) != holds_one]
            if preferred:
                self.workqueue.move_to_end(preferred[0], last=False)
            super()._assign_work_unit(node)

    return SuiteScheduling(config, log)


@pytest.fixture
def task_xcoms(monkeypatch):
    """What triggers write as XCom of their task instance (through the Task SDK in the triggerer):
    {(item id, key): value}. A fresh poller registry, so no poller of an earlier test is reused."""
    from release_orchestrator.triggers import poller

    poller.reset_pollers()
    written: dict = {}
    monkeypatch.setattr(
        "release_orchestrator.triggers.base.BatchPolledTrigger.write_xcom",
        lambda self, key, value: written.__setitem__((self.item_id, key), value),
    )
    return written

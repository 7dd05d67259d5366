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


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """`make test` runs two workers (`-n 2 --dist loadgroup`): the integration tests share one Airflow
    environment and the sandbox tests one sandbox, so each of those suites stays in one worker while the
    other worker takes the unit, DAG and package tests."""
    for item in items:
        suite = item.path.relative_to(item.config.rootpath).parts[1:2]
        if suite in (("integration",), ("sandbox",)):
            item.add_marker(pytest.mark.xdist_group(suite[0]))

"""One sandbox and one Airflow environment (real processes) for the whole integration session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from include.localenv.airflow_api import AirflowAPI
from include.localenv.environment import REPO_ROOT, LocalEnvironment, free_port
from tests.integration.helpers import Inbox

TEST_PIPELINES = Path(__file__).parent / "pipelines"


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow-home")
    env = LocalEnvironment(
        home=home,
        airflow_port=free_port(),
        sandbox_port=free_port(),
        build_seconds=3,
        deploy_seconds=3,
        pipelines_dir=os.pathsep.join([str(REPO_ROOT / "include" / "pipelines"), str(TEST_PIPELINES)]),
        echo=False,
    )
    with env:
        yield env


@pytest.fixture(scope="session")
def api(airflow_env) -> AirflowAPI:
    return AirflowAPI(airflow_env.airflow_url, "admin", airflow_env.users["admin"])


@pytest.fixture(scope="session")
def reviewer_api(airflow_env) -> AirflowAPI:
    return AirflowAPI(airflow_env.airflow_url, "qa-lead", airflow_env.users["qa-lead"])


@pytest.fixture(scope="session")
def inbox(airflow_env) -> Inbox:
    return Inbox(airflow_env)

"""One sandbox and one Airflow environment (real processes) for the whole integration session.

The environment runs in Airflow's production shape (PostgreSQL metadata DB, CeleryExecutor on Redis)
when both services answer on loopback, as they do on this project's CI machines, and in the embedded
shape (SQLite, LocalExecutor) otherwise. RELEASE_ORCHESTRATOR_TEST_SHAPE=production|embedded forces one;
RELEASE_ORCHESTRATOR_TEST_POSTGRES and RELEASE_ORCHESTRATOR_TEST_REDIS point at other servers.
"""

from __future__ import annotations

import os

import pytest

from include.localenv import postgres
from include.localenv.airflow_api import AirflowAPI
from include.localenv.environment import REPO_ROOT, LocalEnvironment, free_port
from include.localenv.redis_queue import forget_celery_queue, redis_is_reachable
from tests.integration.fab import FabApiServer
from tests.integration.helpers import APPROVAL_TIMEOUT_MIN_SECONDS, TEST_PIPELINES, Inbox

POSTGRES_SERVER = os.environ.get("RELEASE_ORCHESTRATOR_TEST_POSTGRES", postgres.DEFAULT_SERVER_URL)
REDIS_URL = os.environ.get("RELEASE_ORCHESTRATOR_TEST_REDIS", "redis://127.0.0.1:6379/0")


def airflow_shape() -> str:
    shape = os.environ.get("RELEASE_ORCHESTRATOR_TEST_SHAPE", "auto")
    if shape not in ("auto", "production", "embedded"):
        raise pytest.UsageError(f"RELEASE_ORCHESTRATOR_TEST_SHAPE={shape!r}: expected auto, production or embedded")
    if shape == "auto":
        reachable = postgres.server_is_reachable(POSTGRES_SERVER) and redis_is_reachable(REDIS_URL)
        shape = "production" if reachable else "embedded"
    return shape


@pytest.fixture(scope="session")
def airflow_env(tmp_path_factory, request):
    home = tmp_path_factory.mktemp("airflow-home")
    production = airflow_shape() == "production"
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:
        shape = "production: PostgreSQL, CeleryExecutor on Redis" if production else "embedded: SQLite, LocalExecutor"
        reporter.write_line(f"\n[integration] Airflow in its {shape} shape; home {home}")
    database_url = postgres.create_scratch_database(POSTGRES_SERVER, "ro_test") if production else None
    env = LocalEnvironment(
        home=home,
        airflow_port=free_port(),
        sandbox_port=free_port(),
        build_seconds=3,
        deploy_seconds=3,
        pipelines_dir=os.pathsep.join([str(REPO_ROOT / "include" / "pipelines"), str(TEST_PIPELINES)]),
        database_url=database_url,
        celery_broker_url=REDIS_URL if production else None,
        # ap-timeout's approval runs out in seconds (specs elsewhere keep CodePipeline's 5-minute minimum).
        extra_env={"RELEASE_ORCHESTRATOR_APPROVAL_TIMEOUT_MIN_SECONDS": str(APPROVAL_TIMEOUT_MIN_SECONDS)},
        echo=False,
    )
    try:
        with env:
            yield env
    finally:
        if database_url:
            postgres.drop_database(database_url, POSTGRES_SERVER)
        if production:
            forget_celery_queue(REDIS_URL, env.celery_queue)


@pytest.fixture(scope="session")
def api(airflow_env) -> AirflowAPI:
    return client_of(airflow_env, "admin")


def client_of(airflow_env, user: str) -> AirflowAPI:
    return AirflowAPI(airflow_env.airflow_url, user, airflow_env.users[user])


@pytest.fixture(scope="session")
def reviewer_api(airflow_env) -> AirflowAPI:
    return client_of(airflow_env, "qa-lead")


@pytest.fixture(scope="session")
def manager_api(airflow_env) -> AirflowAPI:
    """release-manager: an approver by role (`role:user`) in tests/integration/pipelines/ap-gate*.yaml."""
    return client_of(airflow_env, "release-manager")


@pytest.fixture(scope="session")
def inbox(airflow_env) -> Inbox:
    return Inbox(airflow_env)


@pytest.fixture(scope="session")
def fab_api_server(airflow_env, request) -> FabApiServer:
    """A second api-server with the FAB auth manager on the session's environment (tests/integration/fab.py)."""
    server = FabApiServer(airflow_env)
    try:
        server.start()
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                f"\n[integration] FAB api-server on {server.url}: users and roles in {server.setup_seconds:.1f}s, "
                f"answering {server.startup_seconds:.1f}s after its start"
            )
        yield server
    finally:
        server.stop()

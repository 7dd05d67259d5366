"""A stage that retries its failed actions by itself (on_failure RETRY), in the real Airflow processes on the sandbox
(tests/integration/pipelines/rt-retry.yaml): a build that fails twice passes on its third attempt and the run goes
on. Only the failed action runs again; the sandbox counts the builds. (That a last failure fails the run is
Airflow's retries: tests/unit/test_stage_success_conditions.py checks the tasks get the stage's max_attempts.)"""

from __future__ import annotations

import pytest

from include.sandbox.client import SandboxClient
from tests.integration.helpers import aws_client, create_build_project, wait_for_run

pytestmark = pytest.mark.integration

PIPELINE = "rt-retry"
COMPILE, LINT = "rt-retry", "rt-retry-lint"


@pytest.fixture(scope="module")
def world(airflow_env, api):
    api.wait_for_dag(PIPELINE, timeout=240)
    codebuild = aws_client(airflow_env, "codebuild")
    for project in (COMPILE, LINT):
        create_build_project(codebuild, project, "acme/retry", "version: 0.2\nphases: {build: {commands: [make]}}\n")
    return {"codebuild": codebuild, "sandbox": SandboxClient(airflow_env.sandbox_url)}


def builds(world, project: str) -> list[str]:
    """The statuses of the project's builds, oldest first."""
    ids = world["codebuild"].list_builds_for_project(projectName=project, sortOrder="ASCENDING")["ids"]
    return [b["buildStatus"] for b in world["codebuild"].batch_get_builds(ids=ids)["builds"]] if ids else []


def tries(api, run_id: str) -> dict[str, tuple[str, int]]:
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in api.task_instances(PIPELINE, run_id)}


def test_failed_actions_run_again_up_to_the_stages_max_attempts(api, world):
    # Fails twice, then passes: two more attempts are what the stage allows.
    world["sandbox"].set_fault("codebuild", COMPILE, "fail", times=2)
    run_id = api.trigger(PIPELINE)["dag_run_id"]
    assert wait_for_run(api, PIPELINE, run_id, timeout=180)["state"] == "success", tries(api, run_id)
    assert tries(api, run_id) == {"Build.Compile": ("success", 3), "Build.Lint": ("success", 1)}
    assert builds(world, COMPILE) == ["FAILED", "FAILED", "SUCCEEDED"]
    assert builds(world, LINT) == ["SUCCEEDED"]  # what succeeded did not run again
    assert world["sandbox"].faults()["codebuild"].get(COMPILE) is None  # the counted fault is used up

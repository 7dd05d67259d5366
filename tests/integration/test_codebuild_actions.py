"""build.codebuild and test.codebuild actions in real Airflow processes, on the sandbox's CodeBuild.

Pipelines: tests/integration/pipelines/cb-*.yaml (a source action, then one build or test action), each
building its own CodeBuild project, created here, so the faults set on them never touch other tests.

A deferred action ends (in the triggerer) as soon as its poller sees the build finished. All runs but one are started at once by the `background` fixture; the tests that act
on a waiting task (clear, mark failed, stop) go first, while the others finish. Killing the triggerer comes
last, with a run of its own, so that it touches no other run.
"""

from __future__ import annotations

import hashlib
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from include.sandbox import resources
from include.sandbox.client import SandboxClient
from tests.integration.helpers import aws_client, task_log, wait_for, wait_for_run, wait_for_task_state

pytestmark = pytest.mark.integration

BUILD_TASK = "Build.Compile"
TEST_TASK = "Test.Integration"
RUN_TIMEOUT = 240

# Exported: IMAGE_TAG and BUILD_LABEL come back as outputs, DEPLOY_TOKEN (a secret by its name) as "***".
BUILD_SPEC = """\
version: 0.2
env:
  exported-variables:
    - IMAGE_TAG
    - BUILD_LABEL
    - DEPLOY_TOKEN
phases:
  install:
    commands:
      - pip install -r requirements.txt
  pre_build:
    commands:
      - export IMAGE_TAG=${CODEBUILD_RESOLVED_SOURCE_VERSION:0:7}
  build:
    commands:
      - export BUILD_LABEL="${RELEASE_ID}/${CODEBUILD_BUILD_NUMBER}"
      - export DEPLOY_TOKEN=deploy-token-${CODEBUILD_BUILD_NUMBER}
      - make package
  post_build:
    commands:
      - echo packaged
"""

TEST_SPEC = """\
version: 0.2
phases:
  install:
    commands:
      - pip install -r requirements-test.txt
  build:
    commands:
      - python -m pytest tests/integration --junitxml=reports/junit.xml
reports:
  integration:
    files:
      - junit.xml
    base-directory: reports
    file-format: JUNITXML
"""

# project (= pipeline name) -> (buildspec, project timeout in minutes, fault)
PROJECTS = {
    "cb-build-ok": (BUILD_SPEC, 30, None),
    "cb-build-fail": (BUILD_SPEC, 30, {"mode": "fail"}),
    "cb-build-stop": (BUILD_SPEC, 30, {"mode": "hang"}),
    # The hang fault's timeout_seconds times the build out in seconds rather than its project's minutes.
    "cb-build-timeout": (BUILD_SPEC, 5, {"mode": "hang", "timeout_seconds": 8}),
    "cb-build-throttle": (BUILD_SPEC, 30, {"mode": "throttle", "rate": 0.5}),
    # Slow enough to be still running when the triggerer is killed.
    "cb-build-kill": (BUILD_SPEC, 30, {"mode": "slow", "seconds": 25}),
    # Slow enough to be still running when its cleared task starts again (a finished build is not reattached).
    "cb-build-clear": (BUILD_SPEC, 30, {"mode": "slow", "seconds": 30}),
    "cb-build-markfailed": (BUILD_SPEC, 30, {"mode": "hang"}),
    "cb-test-fail": (TEST_SPEC, 30, {"mode": "fail-tests"}),
}
# Started together by the `background` fixture.
BACKGROUND = (
    "cb-build-ok",
    "cb-build-fail",
    "cb-build-stop",
    "cb-build-timeout",
    "cb-build-throttle",
    "cb-build-markfailed",
    "cb-test-fail",
)


def push(label: str) -> tuple[dict, str]:
    commit = hashlib.sha1(f"{label}-{time.time()}".encode()).hexdigest()
    return {
        "source": {
            "provider": "github",
            "repository": "acme/cb-tests",
            "branch": "main",
            "commit_id": commit,
            "commit_message": f"test {label}",
        }
    }, commit


def codebuild_client(env, config: Config | None = None):
    """A CodeBuild client on the sandbox with its own botocore config."""
    return boto3.client(
        "codebuild",
        endpoint_url=env.sandbox_url,
        region_name=resources.REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


def project_builds(codebuild, project: str) -> list[str]:
    return codebuild.list_builds_for_project(projectName=project)["ids"]


def get_build(codebuild, build_id: str) -> dict:
    return codebuild.batch_get_builds(ids=[build_id])["builds"][0]


def task_instance(api, dag_id: str, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(dag_id, run_id) if ti["task_id"] == task_id)


def one_build_started(codebuild, project: str) -> str:
    """The project's only build, once it exists."""
    ids = wait_for(lambda: project_builds(codebuild, project), timeout=RUN_TIMEOUT, what=f"a build of {project}")
    assert len(ids) == 1, ids
    return ids[0]


def trigger_starts(api, dag_id: str, run_id: str) -> list[str]:
    """The lines of the build task's first try logged by a triggerer starting its trigger."""
    name = f"{dag_id}/{run_id}/{BUILD_TASK}/-1/1 "
    return [
        line for line in task_log(api, dag_id, run_id, BUILD_TASK).splitlines() if name in line and "starting" in line
    ]


def finished(api, dag_id: str, run_id: str) -> dict:
    """The run once it ended; when it does not, fail with where its tasks are."""
    try:
        return wait_for_run(api, dag_id, run_id, timeout=RUN_TIMEOUT)
    except AssertionError as err:
        tasks = [
            (ti["task_id"], ti["state"], ti["try_number"], ti.get("start_date"), ti.get("end_date"))
            for ti in api.task_instances(dag_id, run_id)
        ]
        raise AssertionError(f"{err}; task instances: {tasks}") from None


def restart_triggerer(env) -> None:
    env.kill_and_restart("triggerer")


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codebuild(airflow_env):
    return aws_client(airflow_env, "codebuild")


@pytest.fixture(scope="module")
def projects(airflow_env):
    """This module's CodeBuild projects, with their faults set; the faults are cleared at the end."""
    creator = codebuild_client(airflow_env)
    existing = {p["name"] for p in creator.batch_get_projects(names=list(PROJECTS))["projects"]}
    for name, (buildspec, timeout, _) in PROJECTS.items():
        if name in existing:
            continue
        creator.create_project(
            name=name,
            source={"type": "GITHUB", "location": "https://github.com/acme/cb-tests.git", "buildspec": buildspec},
            sourceVersion="refs/heads/main",
            artifacts={
                "type": "S3",
                "location": resources.ARTIFACT_BUCKET,
                "path": name,
                "namespaceType": "BUILD_ID",
                "name": "out",
                "packaging": "NONE",
            },
            environment={
                "type": "LINUX_CONTAINER",
                "image": "aws/codebuild/standard:7.0",
                "computeType": "BUILD_GENERAL1_SMALL",
                "environmentVariables": [{"name": "STAGE", "value": "ci", "type": "PLAINTEXT"}],
            },
            serviceRole=resources.SERVICE_ROLE_ARN,
            timeoutInMinutes=timeout,
            logsConfig={"cloudWatchLogs": {"status": "ENABLED", "groupName": f"/aws/codebuild/{name}"}},
        )
    sandbox = SandboxClient(airflow_env.sandbox_url)
    faults = {name: fault for name, (_, _, fault) in PROJECTS.items() if fault}
    try:
        sandbox.set_faults({"codebuild": faults})
        yield sorted(PROJECTS)
    finally:
        sandbox.set_faults({"codebuild": {name: None for name in faults}})


@pytest.fixture(scope="module")
def background(api, inbox, projects) -> dict[str, tuple[str, str]]:
    """Start the runs of BACKGROUND at once; pipeline -> (run id, commit)."""
    for dag_id in PROJECTS:
        api.wait_for_dag(dag_id, timeout=240)
    inbox.drain()
    started = {}
    for dag_id in BACKGROUND:
        conf, commit = push(dag_id)
        started[dag_id] = (api.trigger(dag_id, conf=conf)["dag_run_id"], commit)
    return started


# --- acting on a waiting task -----------------------------------------------------------------


def test_task_cleared_while_deferred_reattaches_to_its_build(api, codebuild, background):
    dag_id = "cb-build-clear"
    # Started here, not with the background runs: its 30-s build must still run when this test clears the
    # task, whenever the shuffled order gets to it.
    run_id = api.trigger(dag_id, conf=push(dag_id)[0])["dag_run_id"]
    wait_for_task_state(api, dag_id, run_id, BUILD_TASK, {"deferred"}, timeout=RUN_TIMEOUT)
    build_id = one_build_started(codebuild, dag_id)

    cleared = api.request(
        "POST",
        f"/dags/{dag_id}/clearTaskInstances",
        json={"dry_run": False, "only_failed": False, "task_ids": [BUILD_TASK], "dag_run_id": run_id},
    )
    assert [ti["task_id"] for ti in cleared["task_instances"]] == [BUILD_TASK]
    run = finished(api, dag_id, run_id)

    ti = task_instance(api, dag_id, run_id, BUILD_TASK)
    assert run["state"] == "success", ti
    assert ti["try_number"] == 2
    assert project_builds(codebuild, dag_id) == [build_id]  # no second build
    assert api.xcom(dag_id, run_id, BUILD_TASK)["BuildId"] == build_id
    log = task_log(api, dag_id, run_id, BUILD_TASK, try_number=2, containing=(f"Reattaching to build {build_id}",))
    assert f"Reattaching to build {build_id}" in log
    assert "Starting a build" not in log


def test_marking_the_deferred_task_failed_stops_the_build(api, codebuild, background):
    dag_id = "cb-build-markfailed"
    run_id, _ = background[dag_id]
    wait_for_task_state(api, dag_id, run_id, BUILD_TASK, {"deferred"}, timeout=RUN_TIMEOUT)
    build_id = one_build_started(codebuild, dag_id)
    assert get_build(codebuild, build_id)["buildStatus"] == "IN_PROGRESS"

    api.set_task_state(dag_id, run_id, BUILD_TASK, "failed", note="abandoned by the test")
    build = wait_for(
        lambda: (b := get_build(codebuild, build_id))["buildStatus"] != "IN_PROGRESS" and b,
        timeout=30,
        what=f"build {build_id} to stop",
    )
    assert build["buildStatus"] == "STOPPED"
    assert finished(api, dag_id, run_id)["state"] == "failed"
    assert task_instance(api, dag_id, run_id, BUILD_TASK)["state"] == "failed"
    assert project_builds(codebuild, dag_id) == [build_id]


def test_build_stopped_in_codebuild_fails_the_task(api, codebuild, background):
    dag_id = "cb-build-stop"
    run_id, _ = background[dag_id]
    wait_for_task_state(api, dag_id, run_id, BUILD_TASK, {"deferred"}, timeout=RUN_TIMEOUT)
    build_id = one_build_started(codebuild, dag_id)
    # Stopped where it hangs, not while it is still provisioning (a test that comes first gets there early).
    wait_for(lambda: get_build(codebuild, build_id)["currentPhase"] == "BUILD", 60, 0.2, what="the build's BUILD phase")
    codebuild.stop_build(id=build_id)

    run = finished(api, dag_id, run_id)
    assert run["state"] == "failed"
    assert task_instance(api, dag_id, run_id, BUILD_TASK)["state"] == "failed"
    log = task_log(api, dag_id, run_id, BUILD_TASK, containing=(f"Build {build_id} STOPPED", "StopBuild request"))
    assert f"Build {build_id} STOPPED in phase BUILD" in log
    assert "Build was stopped by a StopBuild request" in log  # from the build's own log


# --- runs that only wait ------------------------------------------------------------------------


def test_build_succeeds_with_its_outputs(api, codebuild, background):
    dag_id = "cb-build-ok"
    run_id, commit = background[dag_id]
    run = finished(api, dag_id, run_id)
    assert run["state"] == "success"

    outputs = api.xcom(dag_id, run_id, BUILD_TASK)
    assert project_builds(codebuild, dag_id) == [outputs["BuildId"]]
    build = get_build(codebuild, outputs["BuildId"])
    assert build["buildStatus"] == "SUCCEEDED"
    assert outputs["BuildStatus"] == "SUCCEEDED"
    assert outputs["BuildNumber"] == build["buildNumber"]
    assert outputs["ResolvedSourceVersion"] == commit == build["resolvedSourceVersion"]
    assert outputs["LogsUrl"] == build["logs"]["deepLink"]
    assert build["logs"]["streamName"] in outputs["LogsUrl"]
    # Exported variables, computed by the buildspec from the commit and the run id passed in.
    assert outputs["IMAGE_TAG"] == commit[:7]
    assert outputs["BUILD_LABEL"] == f"{run_id}/{build['buildNumber']}"
    assert outputs["DEPLOY_TOKEN"] == "***"
    exported = {v["name"]: v["value"] for v in build["exportedEnvironmentVariables"]}
    assert exported["DEPLOY_TOKEN"] == f"deploy-token-{build['buildNumber']}"
    env = {v["name"]: v["value"] for v in build["environment"]["environmentVariables"]}
    assert env["COMMIT_ID"] == commit and env["RELEASE_ID"] == run_id and env["STAGE"] == "ci"


def test_failed_build_fails_with_phase_message_and_log_tail(api, inbox, codebuild, background):
    dag_id = "cb-build-fail"
    run_id, _ = background[dag_id]
    run = finished(api, dag_id, run_id)
    assert run["state"] == "failed"
    assert task_instance(api, dag_id, run_id, BUILD_TASK)["state"] == "failed"

    [build_id] = project_builds(codebuild, dag_id)
    assert get_build(codebuild, build_id)["buildStatus"] == "FAILED"
    log = task_log(api, dag_id, run_id, BUILD_TASK, containing=(f"Build {build_id} FAILED", "lines of the build log"))
    assert (
        f"Build {build_id} FAILED in phase BUILD: COMMAND_EXECUTION_ERROR: "
        "Error while executing command: make package. Reason: exit status 1"
    ) in log
    # The end of the build's CloudWatch log, in the task log.
    assert "Last " in log and "lines of the build log" in log
    assert "sandbox: injected failure (fault mode 'fail')" in log
    assert "Command did not exit successfully make package exit status 1" in log

    messages = inbox.drain(until=(f"FAILED: action {BUILD_TASK}",))
    failed = [
        m["parsed"]["detail"]
        for m in messages
        if m.get("Subject", "").startswith("FAILED: action") and m["parsed"]["detail"].get("pipeline") == dag_id
    ]
    assert len(failed) == 1, [m.get("Subject") for m in messages]
    assert "BUILD" in failed[0]["error-summary"]


def test_build_timed_out_in_codebuild_fails_the_task(api, codebuild, background):
    dag_id = "cb-build-timeout"
    run_id, _ = background[dag_id]
    run = finished(api, dag_id, run_id)
    assert run["state"] == "failed"
    [build_id] = project_builds(codebuild, dag_id)
    assert get_build(codebuild, build_id)["buildStatus"] == "TIMED_OUT"
    log = task_log(
        api, dag_id, run_id, BUILD_TASK, containing=(f"Build {build_id} TIMED_OUT", "lines of the build log")
    )
    assert f"Build {build_id} TIMED_OUT in phase BUILD: BUILD_TIMED_OUT: Build has timed out." in log
    assert "lines of the build log" in log


def test_throttled_project_still_builds(airflow_env, api, codebuild, background):
    dag_id = "cb-build-throttle"
    run_id, commit = background[dag_id]
    run = finished(api, dag_id, run_id)
    assert run["state"] == "success", task_log(api, dag_id, run_id, BUILD_TASK)
    outputs = api.xcom(dag_id, run_id, BUILD_TASK)
    assert outputs["ResolvedSourceVersion"] == commit

    # The fault was on all along: of two calls without retries, exactly one is refused.
    single_try = codebuild_client(airflow_env, Config(retries={"total_max_attempts": 1}))
    refused = 0
    ids = None
    for _ in range(2):
        try:
            ids = single_try.list_builds_for_project(projectName=dag_id)["ids"]
        except ClientError as err:
            assert err.response["Error"]["Code"] == "ThrottlingException"
            refused += 1
    assert refused == 1
    assert ids == [outputs["BuildId"]]


def test_failing_tests_fail_the_test_action_naming_them(api, codebuild, background):
    dag_id = "cb-test-fail"
    run_id, _ = background[dag_id]
    run = finished(api, dag_id, run_id)
    assert run["state"] == "failed"
    assert task_instance(api, dag_id, run_id, TEST_TASK)["state"] == "failed"

    [build_id] = project_builds(codebuild, dag_id)
    log = task_log(api, dag_id, run_id, TEST_TASK, containing=("tests.integration.test_webapp",))
    failing = (
        "tests.integration.test_webapp.test_checkout_applies_discount, "
        "tests.integration.test_webapp.test_order_confirmation_email"
    )
    assert f"Build {build_id} FAILED in phase BUILD" in log
    assert f"2 of 12 tests failed: {failing}" in log
    assert "Tests: 12 total, 10 passed, 2 failed, 0 skipped" in log
    assert "Failed test: tests.integration.test_webapp.test_order_confirmation_email" in log


# --- last, so that killing the triggerer touches no other run -------------------------------------


def test_killed_triggerer_is_replaced_and_the_wait_goes_on(airflow_env, api, codebuild, projects):
    dag_id = "cb-build-kill"
    conf, commit = push(dag_id)
    run_id = api.trigger(dag_id, conf=conf)["dag_run_id"]
    wait_for_task_state(api, dag_id, run_id, BUILD_TASK, {"deferred"}, timeout=RUN_TIMEOUT)
    build_id = one_build_started(codebuild, dag_id)
    # Kill it once it runs the trigger, while the (slow) build is still running.
    wait_for(
        lambda: len(trigger_starts(api, dag_id, run_id)) == 1,
        timeout=60,
        interval=0.5,
        what="the triggerer to run the trigger",
    )

    restart_triggerer(airflow_env)
    # The build was still running when the triggerer died: the task is still waiting.
    assert task_instance(api, dag_id, run_id, BUILD_TASK)["state"] == "deferred"

    run = finished(api, dag_id, run_id)
    ti = task_instance(api, dag_id, run_id, BUILD_TASK)
    assert run["state"] == "success", ti
    assert ti["try_number"] == 1
    outputs = api.xcom(dag_id, run_id, BUILD_TASK)
    assert outputs["BuildId"] == build_id
    assert outputs["ResolvedSourceVersion"] == commit
    assert project_builds(codebuild, dag_id) == [build_id]
    # The same trigger ran twice: in the killed triggerer, then in its replacement, which fired.
    starts = trigger_starts(api, dag_id, run_id)
    assert len(starts) == 2, starts
    airflow_env.check_alive()

"""Execution modes through real Airflow processes: one run per stage at a time (stages/entry.py).

Pipelines: tests/integration/pipelines/em-*.yaml, building CodeBuild projects of their own on the sandbox,
whose build history (start and end of every build) shows which runs were in a stage when.

- em-queued (QUEUED): three runs started at once go through Build (short builds) and Test (long builds)
  one at a time, first in, first out; the second run builds while the first one tests.
- em-superseded (SUPERSEDED): a run waiting to enter Build, held by a slow build, is superseded by a newer
  run that comes to wait there too; it ends reported as superseded, not failed.
- em-transition (QUEUED): the transition into Build, disabled with the command line, holds a run at Build's
  door until it is enabled again; nobody changes it through Airflow's Variables API, nor without permission.
- em-retry (QUEUED): a failed stage is retried with the command line (only its failed action builds again),
  and a run whose build hangs is stopped (the build is stopped in the sandbox).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

import pytest

from include.localenv.airflow_api import AirflowAPI, AirflowAPIError
from include.sandbox.client import SandboxClient
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY
from tests.integration import helpers
from tests.integration.helpers import (
    aws_client,
    console_command,
    task_log,
    wait_for,
    wait_for_run,
    wait_for_task_state,
)
from tests.integration.test_release_console import Session

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
QUEUED, SUPERSEDED = "em-queued", "em-superseded"
BUILD_SPEC = "version: 0.2\nphases:\n  build:\n    commands:\n      - make\n"
# project -> seconds each build takes (the sandbox's slow fault)
PROJECTS = {
    "em-queued-build": 1,
    "em-queued-test": 15,  # the second run builds while the first one tests (below)
    # The third queued run's test: long enough for what is done while it holds Test (below), on a loaded machine.
    "em-queued-test-long": 90,
    "em-superseded-build": 25,
    "em-transition-build": 1,
    "em-retry-steady": 1,
    "em-retry-flaky": 1,
    "em-retry-release": 1,
}
TRANSITION, RETRY = "em-transition", "em-retry"


def push(label: str) -> dict:
    commit = hashlib.sha1(f"{label}-{time.time()}".encode()).hexdigest()
    return {"source": {"provider": "github", "repository": "acme/modes", "branch": "main", "commit_id": commit}}


@pytest.fixture(scope="module")
def codebuild(airflow_env):
    return aws_client(airflow_env, "codebuild")


@pytest.fixture(scope="module")
def sandbox(airflow_env):
    return SandboxClient(airflow_env.sandbox_url)


@pytest.fixture(scope="module")
def projects(codebuild, sandbox):
    for name in PROJECTS:
        helpers.create_build_project(codebuild, name, "acme/modes", BUILD_SPEC)
    faults = {name: {"mode": "slow", "seconds": seconds} for name, seconds in PROJECTS.items()}
    sandbox.set_faults({"codebuild": faults})
    yield
    sandbox.set_faults({"codebuild": {name: None for name in PROJECTS}})


@pytest.fixture(scope="module")
def queued_runs(api: AirflowAPI, projects) -> list[str]:
    """Three em-queued runs started one right after the other (oldest first); the third one's test is long."""
    api.wait_for_dag(QUEUED, timeout=240)
    confs = [push("queued-0"), push("queued-1"), {**push("queued-2"), "test_project": "em-queued-test-long"}]
    return [api.trigger(QUEUED, conf=conf)["dag_run_id"] for conf in confs]


def build_times(codebuild, api: AirflowAPI, dag_id: str, task_id: str, run_ids: list[str]) -> list[tuple]:
    """(start, end) of the build each run's `task_id` ran, from the sandbox's build history, in run order."""
    ids = [api.xcom(dag_id, run_id, task_id)["BuildId"] for run_id in run_ids]
    builds = {b["id"]: b for b in codebuild.batch_get_builds(ids=ids)["builds"]}
    return [(builds[i]["startTime"], builds[i]["endTime"]) for i in ids]


def builds_of(codebuild, project: str, conf: dict) -> list[str]:
    """The builds of `project` for the commit a run was started with (other runs build the project too)."""
    ids = codebuild.list_builds_for_project(projectName=project)["ids"]
    builds = codebuild.batch_get_builds(ids=ids)["builds"] if ids else []
    return [b["id"] for b in builds if b.get("sourceVersion") == conf["source"]["commit_id"]]


def assert_one_at_a_time_in_order(times: list[tuple], what: str) -> None:
    for (_, earlier_end), (later_start, _) in zip(times, times[1:]):
        assert earlier_end <= later_start, f"{what}: builds of two runs overlap: {times}"


def test_queued_runs_go_through_each_stage_one_at_a_time_first_in_first_out(
    api, codebuild, queued_runs, superseded_runs
):
    first, second, third = queued_runs
    for run_id in (first, second):
        assert wait_for_run(api, QUEUED, run_id, timeout=300)["state"] == "success"
    # While the third run holds Test, someone clears the first run's Test action by hand (not its door):
    # the action refuses to run beside the run that entered the stage after its own.
    ti = wait_for_task_state(api, QUEUED, third, "Test.Suite", {"deferred", "success", "failed"}, timeout=120)
    assert ti["state"] == "deferred", helpers.ti_states(api, QUEUED, third)
    builds = build_times(codebuild, api, QUEUED, "Build.Compile", queued_runs)
    tests = build_times(codebuild, api, QUEUED, "Test.Suite", [first, second])
    api.request(
        "POST",
        f"/dags/{QUEUED}/clearTaskInstances",
        json={"dry_run": False, "only_failed": False, "task_ids": ["Test.Suite"], "dag_run_id": first},
    )
    assert wait_for_run(api, QUEUED, first, timeout=120)["state"] == "failed"
    refusal = f"run {third} entered stage Test after this run and holds it"
    assert refusal in task_log(api, QUEUED, first, "Test.Suite", try_number=2, containing=(refusal,))
    assert wait_for_run(api, QUEUED, third, timeout=240)["state"] == "success"
    tests += build_times(codebuild, api, QUEUED, "Test.Suite", [third])
    # No build for the refused try.
    assert len(codebuild.list_builds_for_project(projectName="em-queued-test")["ids"]) == 2
    assert len(codebuild.list_builds_for_project(projectName="em-queued-test-long")["ids"]) == 1

    # Never two runs in a stage, and in the order the runs were started.
    assert_one_at_a_time_in_order(builds, "Build")
    assert_one_at_a_time_in_order(tests, "Test")
    # Not one run at a time through the whole pipeline: the second run built while the first one tested.
    assert builds[1][1] < tests[0][1], (builds, tests)
    # The later runs waited at Test's door, without a worker, for the run ahead of them.
    waited = [api.xcom(QUEUED, run_id, "Test.Enter")["WaitedSeconds"] for run_id in (second, third)]
    assert all(seconds > 0 for seconds in waited), waited
    assert "holds stage Test: waiting for it to leave" in task_log(
        api, QUEUED, third, "Test.Enter", containing=("holds stage Test",)
    )


@pytest.fixture(scope="module")
def superseded_runs(api: AirflowAPI, sandbox, inbox, projects) -> dict:
    """em-superseded's three runs, started in the background (while em-queued's runs go on): the first
    holds Build with its slow build, the second waits at Build's door, then the third comes."""
    mailbox = helpers.Mailbox(inbox)
    mailbox.collect()
    started: dict = {"mailbox": mailbox}

    def start() -> None:
        try:
            api.wait_for_dag(SUPERSEDED, timeout=240)
            first = started["first"] = api.trigger(SUPERSEDED, conf=push("superseded-1"))["dag_run_id"]
            wait_for_task_state(api, SUPERSEDED, first, "Build.Compile", {"deferred"}, timeout=240)
            # The first run's build holds Build for its 25 s; later builds take the sandbox's usual time.
            sandbox.set_faults({"codebuild": {"em-superseded-build": None}})
            second = started["second"] = api.trigger(SUPERSEDED, conf=push("superseded-2"))["dag_run_id"]
            wait_for_task_state(api, SUPERSEDED, second, "Build.Enter", {"deferred"}, timeout=120)
            started["third"] = api.trigger(SUPERSEDED, conf=push("superseded-3"))["dag_run_id"]
        except BaseException as error:  # noqa: BLE001 - the test reports it
            started["error"] = error

    started["thread"] = threading.Thread(target=start, name="em-superseded runs", daemon=True)
    started["thread"].start()
    return started


def test_a_newer_run_waiting_to_enter_a_stage_supersedes_the_one_waiting_there(
    api, airflow_env, codebuild, superseded_runs, queued_runs
):
    superseded_runs["thread"].join(timeout=400)
    if "error" in superseded_runs:
        raise superseded_runs["error"]
    first, second, third = (superseded_runs[key] for key in ("first", "second", "third"))
    mailbox = superseded_runs["mailbox"]

    assert wait_for_run(api, SUPERSEDED, second, timeout=120)["state"] == "failed"
    record = api.xcom(SUPERSEDED, second, "Build.Enter", key=DECISION_XCOM_KEY)
    assert (record["Outcome"], record["SupersededBy"]) == ("Superseded", third)
    # The older run still finishes, then the newest enters.
    for run_id in (first, third):
        assert wait_for_run(api, SUPERSEDED, run_id, timeout=240)["state"] == "success"
    states = helpers.ti_states(api, SUPERSEDED, second)
    assert states["Build.Compile"] == "upstream_failed", states
    assert_one_at_a_time_in_order(build_times(codebuild, api, SUPERSEDED, "Build.Compile", [first, third]), "Build")

    # Reported as superseded, never as failed.
    [superseded] = mailbox.wait(SUPERSEDED, second, "SUPERSEDED")
    assert superseded["parsed"]["detail"]["superseded-by"] == third
    mailbox.wait(SUPERSEDED, third, "SUCCEEDED")
    subjects = [m["Subject"] for m in mailbox.of(SUPERSEDED, second)]
    assert not [s for s in subjects if s.startswith("FAILED")], subjects

    # The release console shows who superseded it.
    shown = console_overview(airflow_env, SUPERSEDED, runs=3)
    assert shown[second]["superseded_by"] == third and shown[third]["superseded_by"] is None


def console_overview(airflow_env, dag_id: str, runs: int = 1) -> dict[str, dict]:
    """run id -> the run as the release console's overview shows it."""
    pipelines = Session(airflow_env, "developer").get("/releases/api/pipelines", runs=runs).json()["pipelines"]
    return {run["run_id"]: run for run in next(p for p in pipelines if p["pipeline"] == dag_id)["runs"]}


def test_a_disabled_transition_holds_runs_at_the_door_until_it_is_enabled(api, airflow_env, projects):
    api.wait_for_dag(TRANSITION, timeout=240)
    disabled = console_command(
        airflow_env, "release-manager", "transition", "disable", TRANSITION, "Build", "--reason", "code freeze"
    )
    assert disabled.returncode == 0, disabled.stderr
    rows = [line.split() for line in disabled.stdout.splitlines()[1:]]
    assert rows[0] == ["Source", "enabled"] and rows[1][:3] == ["Build", "DISABLED", "release-manager"], rows
    assert disabled.stdout.rstrip().endswith("code freeze")

    run_id = api.trigger(TRANSITION, conf=push("transition"))["dag_run_id"]
    wait_for_task_state(api, TRANSITION, run_id, "Build.Enter", {"deferred"}, timeout=120)
    said = "The transition into stage Build is disabled by release-manager"
    log = task_log(api, TRANSITION, run_id, "Build.Enter", containing=(said,))
    assert said in log and "code freeze" in log
    # The release console shows the run waiting at the door, and who closed it and why.
    build = next(s for s in console_overview(airflow_env, TRANSITION)[run_id]["stages"] if s["name"] == "Build")
    assert build["waiting"] == "waiting at the door for the stage to be free", build
    closed = Session(airflow_env, "developer").get("/releases/api/pipelines", runs=1).json()["pipelines"]
    record = next(p for p in closed if p["pipeline"] == TRANSITION)["disabled_transitions"]["Build"]
    assert (record["disabled_by"], record["reason"]) == ("release-manager", "code freeze")

    # Nobody opens it around the record: not through Airflow's Variables API, not without edit permission.
    key = f"release_orchestrator.transition.{TRANSITION}.Build"
    for method, path, body in (
        ("DELETE", f"/variables/{key}", None),
        ("PATCH", f"/variables/{key}", {"key": key, "value": "{}"}),
        ("POST", "/variables", {"key": f"release_orchestrator.transition.{TRANSITION}.Source", "value": "{}"}),
    ):
        with pytest.raises(AirflowAPIError, match="HTTP 403"):
            api.request(method, path, json=body)
    refused = console_command(airflow_env, "developer", "transition", "enable", TRANSITION, "Build")
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr, refused
    shown = console_command(airflow_env, "developer", "transition", "show", TRANSITION)
    assert shown.returncode == 0 and "code freeze" in shown.stdout, shown
    assert helpers.ti_states(api, TRANSITION, run_id)["Build.Enter"] == "deferred"

    enabled = console_command(airflow_env, "release-manager", "transition", "enable", TRANSITION, "Build")
    assert enabled.returncode == 0, enabled.stderr
    assert wait_for_run(api, TRANSITION, run_id, timeout=120)["state"] == "success"
    assert api.xcom(TRANSITION, run_id, "Build.Enter")["WaitedSeconds"] > 0


@pytest.fixture(scope="module")
def retry_inbox(airflow_env):
    """em-retry's own topic: what stopping and retrying its runs publish."""
    return helpers.topic_inbox(airflow_env, "em-retry")


def stop_detail(message: dict) -> dict:
    return json.loads(message["Message"])["detail"]


def test_a_failed_stage_is_retried_and_a_hanging_run_is_stopped(
    api, airflow_env, codebuild, sandbox, projects, retry_inbox
):
    api.wait_for_dag(RETRY, timeout=240)
    sandbox.set_faults({"codebuild": {"em-retry-flaky": {"mode": "fail"}}})
    conf = push("retry")
    run_id = api.trigger(RETRY, conf=conf)["dag_run_id"]
    assert wait_for_run(api, RETRY, run_id, timeout=120)["state"] == "failed"
    steady_build = api.xcom(RETRY, run_id, "Build.Steady")["BuildId"]
    assert [helpers.event_of(m) for m in retry_inbox(until="FAILED: pipeline")] == [("pipeline", "FAILED")]

    refused = console_command(airflow_env, "developer", "retry", RETRY, run_id, "Build")
    assert refused.returncode == 1 and "HTTP 403" in refused.stderr, refused
    nothing = console_command(airflow_env, "release-manager", "retry", RETRY, run_id, "Source")
    assert nothing.returncode == 1 and "stage Source has no failed action in this run" in nothing.stderr, nothing

    sandbox.set_faults({"codebuild": {"em-retry-flaky": {"mode": "slow", "seconds": 1}}})  # the flake is gone
    retried = console_command(airflow_env, "release-manager", "retry", RETRY, run_id, "Build")
    assert retried.returncode == 0, retried.stderr
    assert "cleared: Build.Enter, Build.Flaky" in retried.stdout
    resumed = retry_inbox(until="RESUMED: stage")
    assert [helpers.event_of(m) for m in resumed] == [("pipeline", "RESUMED"), ("stage", "RESUMED", "Build")]
    assert stop_detail(resumed[1])["retry"] == {
        "stage": "Build",
        "mode": "FAILED_ACTIONS",
        "user": "release-manager",
        "reason": "",
    }
    assert wait_for_run(api, RETRY, run_id, timeout=120)["state"] == "success"
    # Only the failed action built again; the steady one kept its build and outputs.
    assert api.xcom(RETRY, run_id, "Build.Steady")["BuildId"] == steady_build
    assert builds_of(codebuild, "em-retry-steady", conf) == [steady_build]
    assert len(builds_of(codebuild, "em-retry-flaky", conf)) == 2

    sandbox.set_faults({"codebuild": {"em-retry-flaky": {"mode": "hang"}}})
    hanging_conf = push("stop")
    hanging = api.trigger(RETRY, conf=hanging_conf)["dag_run_id"]
    wait_for_task_state(api, RETRY, hanging, "Build.Flaky", {"deferred"}, timeout=120)
    [build_id] = builds_of(codebuild, "em-retry-flaky", hanging_conf)
    stopped = console_command(airflow_env, "release-manager", "stop", RETRY, hanging, "--reason", "wrong branch")
    assert stopped.returncode == 0, stopped.stderr
    run = wait_for_run(api, RETRY, hanging, timeout=60)
    assert run["state"] == "failed" and run["note"] == "Stopped by release-manager: wrong branch"
    wait_for(
        lambda: codebuild.batch_get_builds(ids=[build_id])["builds"][0]["buildStatus"] == "STOPPED",
        60,
        what=f"build {build_id} to be stopped",
    )
    again = console_command(airflow_env, "release-manager", "stop", RETRY, hanging, "--reason", "twice")
    assert again.returncode == 1 and "has ended (failed): nothing to stop" in again.stderr, again
    # Stopped, not failed: STOPPED, with the stage it was at work in (the run marked failed gets no failure
    # callback), nothing else.
    stopped = retry_inbox(until="STOPPED: stage")
    assert [helpers.event_of(m) for m in stopped] == [("pipeline", "STOPPED"), ("stage", "STOPPED", "Build")]
    assert stop_detail(stopped[0])["execution-id"] == hanging
    assert stop_detail(stopped[0])["stop-execution-trigger"] == {
        "abandon": True,
        "reason": "wrong branch",
        "user": "release-manager",
    }


def test_stop_and_wait_lets_the_build_at_work_finish_and_starts_nothing_after_it(
    api, airflow_env, codebuild, sandbox, projects, retry_inbox
):
    api.wait_for_dag(RETRY, timeout=240)
    sandbox.set_faults({"codebuild": {"em-retry-flaky": {"mode": "slow", "seconds": 15}}})
    try:
        run_id = api.trigger(RETRY, conf=push("wait"))["dag_run_id"]
        wait_for_task_state(api, RETRY, run_id, "Build.Flaky", {"deferred"}, timeout=120)
        stopped = console_command(
            airflow_env, "release-manager", "stop", RETRY, run_id, "--wait", "--reason", "code freeze"
        )
        assert stopped.returncode == 0, stopped.stderr
        assert "actions at work finish" in stopped.stdout and "Release.Ship" in stopped.stdout, stopped.stdout
        run = wait_for_run(api, RETRY, run_id, timeout=120)
    finally:
        sandbox.set_faults({"codebuild": {"em-retry-flaky": {"mode": "slow", "seconds": PROJECTS["em-retry-flaky"]}}})
    states = helpers.ti_states(api, RETRY, run_id)
    assert run["state"] == "failed" and run["note"] == "Stopped by release-manager (stop and wait): code freeze"
    # The build at work finished (not stopped) and kept its outputs; the next stage never started.
    assert (states["Build.Flaky"], states["Release.Ship"]) == ("success", "upstream_failed"), states
    build_id = api.xcom(RETRY, run_id, "Build.Flaky")["BuildId"]
    assert codebuild.batch_get_builds(ids=[build_id])["builds"][0]["buildStatus"] == "SUCCEEDED"
    # STOPPING when asked (the api-server), STOPPED when the run ended (its failure callback), never FAILED.
    told = retry_inbox(until="STOPPED: pipeline")
    assert [helpers.event_of(m) for m in told] == [
        ("pipeline", "STOPPING"),
        ("stage", "STOPPING", "Build"),
        ("pipeline", "STOPPED"),
    ]
    assert stop_detail(told[0])["stop-execution-trigger"]["abandon"] is False

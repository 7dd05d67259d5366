"""Rolling a stage back in the real Airflow processes on the sandbox (tests/integration/pipelines/rb-release.yaml,
QUEUED): a failed Deploy rolls back by itself to the last release, before the run waiting at its door goes in; so
does a Deploy whose alarm goes off while it is watched after the stage succeeded; a rollback by hand through the CLI to a chosen run; a run marked failed as a whole is not rolled back; a run started
with a forged rollback conf deploys nothing.

What was deployed is read from the sandbox: the Lambda version each run published (its code), the object the S3
deployment wrote, and the environment of each smoke build (the source version it was given).
"""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from include.sandbox import resources
from include.sandbox.client import SandboxClient
from tests.integration.helpers import (
    aws_client,
    code_sha256,
    console_command,
    create_build_project,
    function_behind_alias,
    function_zip,
    put_alarm,
    ti_states,
    wait_for_run,
    wait_for_task_state,
)
from tests.integration.test_release_console import Session

pytestmark = pytest.mark.integration

PIPELINE = "rb-release"
FUNCTION = "rb-tests-function"
SOURCE_KEY = "rb-tests/function.zip"
DEPLOYED_KEY = "rb-tests/deployed/function.zip"
SMOKE_OK, SMOKE_FAIL, SMOKE_HANG = "rb-smoke-ok", "rb-smoke-fail", "rb-smoke-hang"
ALARM = "rb-health"  # Deploy's success condition watches it


@pytest.fixture(scope="module")
def world(airflow_env, api):
    """The function (version 1 behind `live`), the smoke projects (one fails, one hangs: sandbox faults)."""
    api.wait_for_dag(PIPELINE, timeout=240)
    functions = function_behind_alias(airflow_env, FUNCTION)
    codebuild = aws_client(airflow_env, "codebuild")
    for project in (SMOKE_OK, SMOKE_FAIL, SMOKE_HANG):
        create_build_project(codebuild, project, "acme/rollback", "version: 0.2\nphases: {build: {commands: [make]}}\n")
    faults = {SMOKE_FAIL: {"mode": "fail"}, SMOKE_HANG: {"mode": "hang"}}
    SandboxClient(airflow_env.sandbox_url).set_faults({"codebuild": faults})
    cloudwatch = aws_client(airflow_env, "cloudwatch")
    put_alarm(cloudwatch, ALARM, "OK")
    return {"lambda": functions, "s3": aws_client(airflow_env, "s3"), "codebuild": codebuild, "cloudwatch": cloudwatch}


def release(api, world, code: bytes, **conf) -> str:
    """Put new code at the source's key and start a run (its Source reads the object's latest version)."""
    world["s3"].put_object(Bucket=resources.ARTIFACT_BUCKET, Key=SOURCE_KEY, Body=code)
    return api.trigger(PIPELINE, conf=conf or None)["dag_run_id"]


def live_code(api, world, run_id: str) -> str:
    """The code of the Lambda version `run_id` published and moved the alias to."""
    version = str(api.xcom(PIPELINE, run_id, "Deploy.Lambda")["LambdaVersion"])
    return world["lambda"].get_function(FunctionName=FUNCTION, Qualifier=version)["Configuration"]["CodeSha256"]


def smoke_build(api, world, run_id: str) -> dict:
    build_id = api.xcom(PIPELINE, run_id, "Deploy.Smoke")["BuildId"]
    return world["codebuild"].batch_get_builds(ids=[build_id])["builds"][0]


def bucket_history(world) -> list[bytes]:
    s3 = world["s3"]
    versions = s3.list_object_versions(Bucket=resources.ARTIFACT_BUCKET, Prefix=DEPLOYED_KEY).get("Versions", [])
    return [
        s3.get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY, VersionId=v["VersionId"])["Body"].read()
        for v in reversed(versions)  # S3 lists the newest first
    ]


def when(ti: dict, key: str) -> datetime:
    return datetime.fromisoformat(ti[key].replace("Z", "+00:00"))


def task(api, run_id: str, task_id: str) -> dict:
    return next(ti for ti in api.task_instances(PIPELINE, run_id) if ti["task_id"] == task_id)


def test_a_failed_stage_rolls_back_to_the_last_release_before_the_next_run_goes_in(api, world, airflow_env):
    first_code, failing_code, next_code = (function_zip(f"{label} {time.time()}") for label in ("one", "two", "three"))
    first = release(api, world, first_code)
    assert wait_for_run(api, PIPELINE, first, timeout=240)["state"] == "success"
    first_version = api.xcom(PIPELINE, first, "Source.Code")["VersionId"]

    # The second run's smoke test fails; a third run, with newer code, waits at Deploy's door meanwhile.
    failing = release(api, world, failing_code, smoke_project=SMOKE_FAIL)
    wait_for_task_state(api, PIPELINE, failing, "Source.Code", {"success"}, timeout=120)
    third = release(api, world, next_code)

    assert wait_for_run(api, PIPELINE, failing, timeout=300)["state"] == "failed"
    states = ti_states(api, PIPELINE, failing)
    assert (states["Deploy.Smoke"], states["Deploy.Rollback"]) == ("failed", "success"), states
    started = api.xcom(PIPELINE, failing, "Deploy.Rollback")
    assert started["TargetRunId"] == first and started["Result"] == "Succeeded"
    rollback = started["RollbackRunId"]

    # The rollback run: only Deploy ran, with the first run's artifact, variables and outputs.
    run = wait_for_run(api, PIPELINE, rollback, timeout=60)
    assert run["state"] == "success"
    assert f"Automatic rollback of stage Deploy to run {first}" in (run.get("note") or "")
    states = ti_states(api, PIPELINE, rollback)
    assert states["Source.Code"] == "skipped" and states["Source.Enter"] == "skipped"
    # It went in on the failed run's hold, not through the door the third run was waiting at.
    assert states["Deploy.Enter"] == "skipped" and states["Deploy.Rollback"] == "skipped"
    assert {states[t] for t in ("Deploy.Lambda", "Deploy.Bucket", "Deploy.Smoke")} == {"success"}
    assert live_code(api, world, rollback) == code_sha256(first_code)
    smoke = smoke_build(api, world, rollback)
    assert smoke["projectName"] == SMOKE_OK  # the first run's variables
    assert {"name": "SOURCE_VERSION", "value": first_version, "type": "PLAINTEXT"} in smoke["environment"][
        "environmentVariables"
    ]
    read = api.xcom(PIPELINE, rollback, "Deploy.Lambda", key="artifacts")["inputs"]["FunctionCode"]
    assert "rollback__Deploy__" in read  # a copy in the rollback run's own folder

    # Then the third run deployed its code: after the rollback, never beside it.
    assert wait_for_run(api, PIPELINE, third, timeout=240)["state"] == "success"
    assert when(task(api, third, "Deploy.Lambda"), "start_date") >= when(
        task(api, rollback, "Deploy.Smoke"), "end_date"
    )
    assert live_code(api, world, third) == code_sha256(next_code)
    # The bucket's history (a versioned bucket), oldest first: each deployment in turn.
    assert bucket_history(world)[-4:] == [first_code, failing_code, first_code, next_code]

    # By hand, through the CLI: back to the first run, through the stage's door, as a run of its own.
    refused = console_command(airflow_env, "developer", "rollback", PIPELINE, "Deploy", "--reason", "bad release")
    assert refused.returncode == 1 and "403" in refused.stderr, refused.stderr
    not_deployed = console_command(
        airflow_env, "release-manager", "rollback", PIPELINE, "Deploy", "--to", failing, "--reason", "x"
    )
    assert not_deployed.returncode == 1 and f"stage Deploy did not succeed in run {failing}" in not_deployed.stderr
    by_hand = console_command(
        airflow_env, "release-manager", "rollback", PIPELINE, "Deploy", "--to", first, "--reason", "three is slow"
    )
    assert by_hand.returncode == 0, by_hand.stderr
    manual = by_hand.stdout.split("rollback run ")[1].split(" started")[0]
    run = wait_for_run(api, PIPELINE, manual, timeout=240)
    assert run["state"] == "success"
    assert run["note"] == f"Rollback of stage Deploy to run {first} by release-manager: three is slow"
    assert ti_states(api, PIPELINE, manual)["Deploy.Enter"] == "success"
    assert live_code(api, world, manual) == code_sha256(first_code)
    assert world["s3"].get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY)["Body"].read() == first_code

    # The console's run history tells rollbacks apart.
    console = Session(airflow_env, "developer")
    history = console.get(f"/releases/api/pipelines/{PIPELINE}/runs", started_by="rollback").json()
    assert {r["run_id"] for r in history["runs"]} == {rollback, manual}
    assert all(r["started_by"] == "rollback" for r in history["runs"])


def test_an_alarm_going_off_while_the_stage_is_watched_rolls_it_back(api, world):
    good_code, bad_code = (function_zip(f"{label} {time.time()}") for label in ("good", "bad"))
    good = release(api, world, good_code)
    assert wait_for_run(api, PIPELINE, good, timeout=240)["state"] == "success"
    assert api.xcom(PIPELINE, good, "Deploy.SuccessConditions")["Result"] == "SUCCEEDED"

    # The next release deploys, then its alarm goes off while it is watched (for up to 5 minutes).
    bad = release(api, world, bad_code, watch_minutes="5")
    wait_for_task_state(api, PIPELINE, bad, "Deploy.SuccessConditions", {"deferred"}, timeout=240)
    assert live_code(api, world, bad) == code_sha256(bad_code)
    try:
        world["cloudwatch"].set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="5xx above 1")
        assert wait_for_run(api, PIPELINE, bad, timeout=120)["state"] == "failed"
    finally:
        world["cloudwatch"].set_alarm_state(AlarmName=ALARM, StateValue="OK", StateReason="test over")
    states = ti_states(api, PIPELINE, bad)
    assert {states[t] for t in ("Deploy.Lambda", "Deploy.Bucket", "Deploy.Smoke")} == {"success"}
    assert (states["Deploy.SuccessConditions"], states["Deploy.Rollback"]) == ("failed", "success"), states
    watched = api.xcom(PIPELINE, bad, "Deploy.SuccessConditions")
    assert watched["Result"] == "FAILED" and watched["WatchedSeconds"] < 120
    assert watched["Rules"][0]["detail"] == f"alarm '{ALARM}' is in state ALARM"
    started = api.xcom(PIPELINE, bad, "Deploy.Rollback")
    assert (started["TargetRunId"], started["Result"]) == (good, "Succeeded")

    # The rollback run deployed the good release again, and was not watched itself.
    rollback = started["RollbackRunId"]
    assert wait_for_run(api, PIPELINE, rollback, timeout=60)["state"] == "success"
    assert ti_states(api, PIPELINE, rollback)["Deploy.SuccessConditions"] == "skipped"
    assert live_code(api, world, rollback) == code_sha256(good_code)
    assert world["s3"].get_object(Bucket=resources.ARTIFACT_BUCKET, Key=DEPLOYED_KEY)["Body"].read() == good_code


def test_a_run_marked_failed_is_not_rolled_back_and_a_forged_rollback_to_it_deploys_nothing(api, world):
    # Airflow leaves a run with a teardown (the Rollback task) still to run unset, to decide later from its
    # last tasks, which the marking skipped: the gate ends it failed and skips its Rollback.
    run_id = release(api, world, function_zip(f"stopped {time.time()}"), smoke_project=SMOKE_HANG)
    wait_for_task_state(api, PIPELINE, run_id, "Deploy.Smoke", {"deferred"}, timeout=240)
    api.request("PATCH", f"/dags/{PIPELINE}/dagRuns/{run_id}", json={"state": "failed"})
    assert wait_for_run(api, PIPELINE, run_id, timeout=60)["state"] == "failed"
    states = ti_states(api, PIPELINE, run_id)
    assert (states["Deploy.Smoke"], states["Deploy.Rollback"]) == ("failed", "skipped"), states
    runs = api.request("GET", f"/dags/{PIPELINE}/dagRuns", params={"limit": 100})["dag_runs"]
    assert not [r for r in runs if r["dag_run_id"].startswith(f"rollback__Deploy__{run_id}")]

    # Someone who may trigger runs names it as the run to go back to: its Deploy never succeeded.
    before = world["lambda"].get_alias(FunctionName=FUNCTION, Name=resources.LAMBDA_ALIAS)["FunctionVersion"]
    forged = api.trigger(PIPELINE, conf={"rollback": {"stage": "Deploy", "target_run_id": run_id}})["dag_run_id"]
    assert wait_for_run(api, PIPELINE, forged, timeout=180)["state"] == "failed"
    states = ti_states(api, PIPELINE, forged)
    assert states["Deploy.Lambda"] == "failed" and states["Deploy.Bucket"] == "failed", states
    assert world["lambda"].get_alias(FunctionName=FUNCTION, Name=resources.LAMBDA_ALIAS)["FunctionVersion"] == before
    log = api.task_log(PIPELINE, forged, "Deploy.Lambda")
    assert f"its actions did not all succeed in run {run_id}" in log

"""CodeBuild hook, operators and trigger against moto."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta, timezone
from unittest import mock

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred, redact
from airflow.sdk.exceptions import TaskDeferralTimeout

from release_orchestrator.hooks.codebuild import CodeBuildHook
from release_orchestrator.operators.codebuild import (
    CodeBuildOperator,
    TestCodeBuildOperator,
    normalize_environment_variables,
    parse_junit,
)
from release_orchestrator.operators.reattach import stable_token
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.codebuild import CodeBuildBuildTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance

REGION = "us-east-1"
PROJECT = "webapp-build"
ARTIFACT_BUCKET = "release-artifacts"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws(moto_aws):
    """moto, and the Airflow connection every operator here uses; a fresh poller registry."""
    poller_module.reset_pollers()


@pytest.fixture
def project(codebuild_project):
    return codebuild_project


FakeTI = FakeTaskInstance


@pytest.fixture
def store():
    return FakeStateStore()


@pytest.fixture
def context(store):
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti, "task_state_store": store, "run_id": ti.run_id}


def make_operator(cls=CodeBuildOperator, **kwargs):
    kwargs.setdefault("task_id", "compile")
    kwargs.setdefault("project_name", PROJECT)
    return cls(**kwargs)


def build(status="SUCCEEDED", **extra):
    return {
        "id": f"{PROJECT}:1111-2222",
        "buildNumber": 7,
        "buildStatus": status,
        "resolvedSourceVersion": "abc123",
        "logs": {"groupName": "/aws/codebuild/webapp-build", "streamName": "1111-2222"},
        **extra,
    }


def spy(client, method):
    return mock.patch.object(client, method, wraps=getattr(client, method))


# --- hook -------------------------------------------------------------------------------------


def test_hook_names_call_and_resource_in_errors():
    with pytest.raises(AirflowException, match=r"StartBuild on project 'missing' failed: ResourceNotFoundException"):
        CodeBuildHook().start_build("missing")


def test_hook_finds_its_custom_waiter():
    assert "build_complete" in CodeBuildHook().list_waiters()


# --- start ------------------------------------------------------------------------------------


def test_start_sends_overrides_and_defers(project, context, store):
    op = make_operator(
        source_version="refs/heads/main",
        environment_variables=[
            {"name": "STAGE", "value": "prod", "type": "PLAINTEXT"},
            {"name": "DB_PASSWORD", "value": "/prod/db/password", "type": "PARAMETER_STORE"},
        ],
        buildspec="version: 0.2\nphases: {}\n",
        build_timeout_minutes="30",
        primary_source="s3://release-artifacts/run-1/source.zip",
        poll_interval=5,
    )
    with spy(op.hook.conn, "start_build") as start, pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    request = start.call_args.kwargs
    assert request["projectName"] == PROJECT
    assert request["sourceVersion"] == "refs/heads/main"
    assert request["environmentVariablesOverride"] == [
        {"name": "STAGE", "value": "prod", "type": "PLAINTEXT"},
        {"name": "DB_PASSWORD", "value": "/prod/db/password", "type": "PARAMETER_STORE"},
    ]
    assert request["buildspecOverride"].startswith("version: 0.2")
    assert request["timeoutInMinutesOverride"] == 30
    assert request["sourceTypeOverride"] == "S3"
    assert request["sourceLocationOverride"] == "release-artifacts/run-1/source.zip"
    assert request["idempotencyToken"] == stable_token(context, "codebuild", 0)

    trigger = deferred.value.trigger
    assert isinstance(trigger, CodeBuildBuildTrigger)
    build_id = store.data["codebuild_build"]["id"]
    assert trigger.build_id == build_id
    assert trigger.poll_interval == 5
    assert trigger.aws_conn_id == "aws_default"
    assert deferred.value.method_name == "execute_complete"
    assert store.data["codebuild_build"] == {"id": build_id, "generation": 0, "reported": False}
    links = context["ti"].xcom
    assert links["_codebuild_build"]["build_id"] == build_id
    assert links["_codebuild_logs"]["log_group"] == f"/aws/codebuild/{PROJECT}"


def test_mapping_of_environment_variables_means_plaintext():
    assert normalize_environment_variables({"A": 1, "B": "x"}) == [
        {"name": "A", "value": "1", "type": "PLAINTEXT"},
        {"name": "B", "value": "x", "type": "PLAINTEXT"},
    ]
    assert normalize_environment_variables('[{"name": "S", "value": "arn", "type": "secrets_manager"}]') == [
        {"name": "S", "value": "arn", "type": "SECRETS_MANAGER"}
    ]
    with pytest.raises(ValueError, match="type must be one of"):
        normalize_environment_variables([{"name": "X", "value": "1", "type": "VAULT"}])


def test_secret_values_are_masked_and_never_logged(project, context, capsys):
    op = make_operator(
        environment_variables=[
            {"name": "API_TOKEN", "value": "plain-but-secret-123", "type": "PLAINTEXT"},
            {"name": "DB", "value": "prod/db-credentials-456", "type": "SECRETS_MANAGER"},
            {"name": "STAGE", "value": "visible-stage", "type": "PLAINTEXT"},
        ]
    )
    with pytest.raises(TaskDeferred):
        op.execute(context)
    logged = capsys.readouterr()
    assert "plain-but-secret-123" not in logged.out + logged.err
    assert "prod/db-credentials-456" not in logged.out + logged.err
    assert "API_TOKEN (PLAINTEXT)" in logged.out + logged.err
    assert redact("token plain-but-secret-123") == "token ***"
    assert redact("uses prod/db-credentials-456") == "uses ***"
    assert redact("visible-stage") == "visible-stage"


def test_defer_timeout_is_what_is_left_of_execution_timeout(project, context):
    context["ti"].start_date = datetime.now(timezone.utc) - timedelta(minutes=10)
    op = make_operator(execution_timeout=timedelta(minutes=30))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert timedelta(minutes=19) < deferred.value.timeout <= timedelta(minutes=20)


# --- reattach ---------------------------------------------------------------------------------


def test_retry_reattaches_to_a_running_build(project, context, store):
    store.set("codebuild_build", {"id": f"{PROJECT}:running", "generation": 0, "reported": False})
    op = make_operator()
    running = build("IN_PROGRESS", id=f"{PROJECT}:running")
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=running),
        mock.patch.object(CodeBuildHook, "start_build") as start,
        pytest.raises(TaskDeferred) as deferred,
    ):
        op.execute(context)
    start.assert_not_called()
    assert deferred.value.trigger.build_id == f"{PROJECT}:running"


def test_a_finished_build_is_not_reattached(project, context, store):
    # Its trigger ended the earlier try (and cannot mark the record reported), or it finished while
    # nobody waited: either way a new try is a new build.
    first = CodeBuildHook().start_build(PROJECT)  # moto reports SUCCEEDED at the first read
    store.set("codebuild_build", {"id": first["id"], "generation": 0, "reported": False})
    op = make_operator()
    with spy(op.hook.conn, "start_build") as start, pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    start.assert_called_once()
    assert deferred.value.trigger.build_id != first["id"]
    assert start.call_args.kwargs["idempotencyToken"] == stable_token(context, "codebuild", 1)


def test_new_try_after_a_reported_build_starts_a_new_one(project, context, store):
    store.set("codebuild_build", {"id": f"{PROJECT}:old", "generation": 2, "reported": True})
    op = make_operator()
    with spy(op.hook.conn, "start_build") as start, pytest.raises(TaskDeferred):
        op.execute(context)
    assert start.call_args.kwargs["idempotencyToken"] == stable_token(context, "codebuild", 3)
    assert store.data["codebuild_build"]["generation"] == 3


def test_stopped_build_is_not_reattached(project, context, store):
    store.set("codebuild_build", {"id": f"{PROJECT}:stopped", "generation": 0, "reported": False})
    op = make_operator()
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=build("STOPPED", id=f"{PROJECT}:stopped")),
        spy(op.hook.conn, "start_build") as start,
        pytest.raises(TaskDeferred) as deferred,
    ):
        op.execute(context)
    start.assert_called_once()
    assert deferred.value.trigger.build_id != f"{PROJECT}:stopped"
    assert start.call_args.kwargs["idempotencyToken"] == stable_token(context, "codebuild", 1)


def test_token_is_the_same_for_every_try_of_a_task_instance(context):
    first = stable_token(context, "codebuild", 0)
    context["ti"].try_number = 5
    assert stable_token(context, "codebuild", 0) == first
    assert stable_token(context, "codebuild", 1) != first


# --- completion -------------------------------------------------------------------------------


def test_execute_complete_outputs(context, store):
    op = make_operator()
    finished = build(
        exportedEnvironmentVariables=[
            {"name": "IMAGE_TAG", "value": "1.2.3"},
            {"name": "DEPLOY_SECRET", "value": "s3cr3t-value"},
        ],
        logs={"deepLink": "https://console.aws.amazon.com/cloudwatch/deep", "groupName": "g", "streamName": "s"},
    )
    with mock.patch.object(CodeBuildHook, "get_build", return_value=finished):
        outputs = op.execute_complete(context, {"status": "success", "build_id": finished["id"]})
    assert outputs == {
        "BuildId": finished["id"],
        "BuildNumber": 7,
        "BuildStatus": "SUCCEEDED",
        "ResolvedSourceVersion": "abc123",
        "LogsUrl": "https://console.aws.amazon.com/cloudwatch/deep",
        "IMAGE_TAG": "1.2.3",
        "DEPLOY_SECRET": "***",
    }
    assert redact("s3cr3t-value") == "***"


def test_logs_url_is_built_without_deep_link(context):
    op = make_operator()
    with mock.patch.object(CodeBuildHook, "get_build", return_value=build()):
        outputs = op.execute_complete(context, {"status": "success", "build_id": build()["id"]})
    assert outputs["LogsUrl"] == (
        "https://console.aws.amazon.com/cloudwatch/home?region=us-east-1#logsV2:log-groups/log-group/"
        "%2Faws%2Fcodebuild%2Fwebapp-build/log-events/1111-2222"
    )


def test_failed_build_names_phase_and_prints_log_tail(context, store, capsys):
    logs = boto3.client("logs", region_name=REGION)
    logs.create_log_group(logGroupName="/aws/codebuild/webapp-build")
    logs.create_log_stream(logGroupName="/aws/codebuild/webapp-build", logStreamName="1111-2222")
    now = int(datetime.now(timezone.utc).timestamp() * 1000)
    logs.put_log_events(
        logGroupName="/aws/codebuild/webapp-build",
        logStreamName="1111-2222",
        logEvents=[{"timestamp": now + n, "message": f"line {n}"} for n in range(50)],
    )
    failed = build(
        "FAILED",
        phases=[
            {"phaseType": "INSTALL", "phaseStatus": "SUCCEEDED"},
            {
                "phaseType": "BUILD",
                "phaseStatus": "FAILED",
                "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "make: exit status 2"}],
            },
        ],
    )
    store.set("codebuild_build", {"id": failed["id"], "generation": 0, "reported": False})
    op = make_operator()
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=failed),
        pytest.raises(AirflowException) as err,
    ):
        op.execute_complete(context, {"status": "failed", "build_id": failed["id"]})
    assert str(err.value) == (
        f"Build {failed['id']} FAILED in phase BUILD: COMMAND_EXECUTION_ERROR: make: exit status 2"
    )
    printed = capsys.readouterr().out
    assert "line 49" in printed and "line 20" in printed and "line 19\n" not in printed
    # The failure was reported: a retry starts a new build.
    assert store.data["codebuild_build"]["reported"] is True


def test_trigger_error_event_fails_with_its_message(context):
    with pytest.raises(AirflowException, match="BatchGetBuilds denied"):
        make_operator().execute_complete(
            context, {"status": "error", "build_id": "b:1", "message": "BatchGetBuilds denied"}
        )


def test_synchronous_mode_waits_with_the_waiter(project, context):
    op = make_operator(deferrable=False, poll_interval=1)
    outputs = op.execute(context)
    assert outputs["BuildStatus"] == "SUCCEEDED"


# --- stopping ---------------------------------------------------------------------------------


def test_on_kill_stops_the_build(project, context):
    op = make_operator()
    with pytest.raises(TaskDeferred):
        op.execute(context)
    with spy(op.hook.conn, "stop_build") as stop:
        op.on_kill()
    stop.assert_called_once_with(id=op._build_id)


def test_deferral_timeout_stops_the_recorded_build(project, context, store):
    op = make_operator()
    with pytest.raises(TaskDeferred):
        op.execute(context)
    build_id = store.data["codebuild_build"]["id"]
    with spy(op.hook.conn, "stop_build") as stop, pytest.raises(TaskDeferralTimeout):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, context)
    stop.assert_called_once_with(id=build_id)
    assert store.data["codebuild_build"]["reported"] is True


# --- test.codebuild ---------------------------------------------------------------------------

JUNIT = """<?xml version="1.0"?>
<testsuites>
  <testsuite name="api">
    <testcase classname="api.Health" name="test_ok"/>
    <testcase classname="api.Orders" name="test_create"><failure message="500"/></testcase>
    <testcase classname="api.Orders" name="test_delete"><error message="boom"/></testcase>
    <testcase classname="api.Orders" name="test_later"><skipped/></testcase>
  </testsuite>
</testsuites>"""


def test_parse_junit():
    assert [c["status"] for c in parse_junit(JUNIT)] == ["SUCCEEDED", "FAILED", "ERROR", "SKIPPED"]


def put_junit(key):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=ARTIFACT_BUCKET)
    s3.put_object(Bucket=ARTIFACT_BUCKET, Key=key, Body=JUNIT.encode())


def test_tests_read_from_junit_under_artifacts_and_fail_naming_them(context):
    put_junit(f"{PROJECT}/1111-2222/reports/junit.xml")
    op = make_operator(TestCodeBuildOperator, junit_path="reports/*.xml")
    failed = build("FAILED", artifacts={"location": f"arn:aws:s3:::{ARTIFACT_BUCKET}"})
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=failed),
        pytest.raises(AirflowException) as err,
    ):
        op.execute_complete(context, {"status": "failed", "build_id": failed["id"]})
    assert "2 of 4 tests failed: api.Orders.test_create, api.Orders.test_delete" in str(err.value)


def test_unreadable_reports_fall_back_to_the_xml_next_to_them(context):
    # moto has no DescribeTestCases; the emulator writes reports to <bucket>/<project>/<build uuid>/.
    put_junit(f"{PROJECT}/1111-2222/integration.xml")
    op = make_operator(TestCodeBuildOperator, fail_on_test_failure=False)
    finished = build(
        reportArns=["arn:aws:codebuild:us-east-1:123456789012:report/webapp-build-integration:1111-2222"],
        artifacts={"location": f"arn:aws:s3:::{ARTIFACT_BUCKET}/builds/{PROJECT}"},
    )
    with mock.patch.object(CodeBuildHook, "get_build", return_value=finished):
        outputs = op.execute_complete(context, {"status": "success", "build_id": finished["id"]})
    assert (outputs["TestsTotal"], outputs["TestsFailed"]) == (4, 2)


def test_no_report_at_all_counts_no_tests(context):
    op = make_operator(TestCodeBuildOperator)
    with mock.patch.object(CodeBuildHook, "get_build", return_value=build()):
        outputs = op.execute_complete(context, {"status": "success", "build_id": build()["id"]})
    assert outputs["TestsTotal"] == 0 and outputs["FailedTests"] == ""


def test_tests_outputs_when_failures_are_tolerated(context):
    put_junit("run-1/junit.xml")
    op = make_operator(
        TestCodeBuildOperator, junit_path=f"s3://{ARTIFACT_BUCKET}/run-1/junit.xml", fail_on_test_failure="false"
    )
    with mock.patch.object(CodeBuildHook, "get_build", return_value=build()):
        outputs = op.execute_complete(context, {"status": "success", "build_id": build()["id"]})
    assert outputs["TestsTotal"] == 4
    assert outputs["TestsPassed"] == 1
    assert outputs["TestsFailed"] == 2
    assert outputs["TestsSkipped"] == 1
    assert outputs["FailedTests"] == "api.Orders.test_create, api.Orders.test_delete"
    assert outputs["BuildStatus"] == "SUCCEEDED"


def test_passing_build_with_failed_tests_fails_by_default(context):
    put_junit("run-1/junit.xml")
    op = make_operator(TestCodeBuildOperator, junit_path=f"s3://{ARTIFACT_BUCKET}/run-1/junit.xml")
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=build()),
        pytest.raises(AirflowException, match="api.Orders.test_create"),
    ):
        op.execute_complete(context, {"status": "success", "build_id": build()["id"]})


def test_tests_read_from_report_groups_first(context):
    report = "arn:aws:codebuild:us-east-1:123456789012:report/webapp-tests:r1"
    other = "arn:aws:codebuild:us-east-1:123456789012:report/other:r2"
    op = make_operator(
        TestCodeBuildOperator,
        report_group_arn="arn:aws:codebuild:us-east-1:123456789012:report-group/webapp-tests",
        junit_path="never-read.xml",
    )
    cases = [
        {"prefix": "suite", "name": "a", "status": "SUCCEEDED"},
        {"prefix": "suite", "name": "b", "status": "FAILED"},
    ]
    with (
        mock.patch.object(CodeBuildHook, "get_build", return_value=build(reportArns=[report, other])),
        mock.patch.object(CodeBuildHook, "get_test_cases", return_value=cases) as read,
        pytest.raises(AirflowException, match="1 of 2 tests failed: suite.b"),
    ):
        op.execute_complete(context, {"status": "success", "build_id": build()["id"]})
    read.assert_called_once_with(report)


# --- trigger ----------------------------------------------------------------------------------


def test_trigger_serialize_round_trips():
    trigger = CodeBuildBuildTrigger(
        build_id="p:1", aws_conn_id="deploy", region_name="eu-west-1", poll_interval=12, botocore_config={"a": 1}
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.triggers.codebuild.CodeBuildBuildTrigger"
    assert CodeBuildBuildTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_fires_through_the_shared_poller(project):
    build_ids = [CodeBuildHook().start_build(PROJECT)["id"] for _ in range(3)]

    async def wait_all():
        triggers = [CodeBuildBuildTrigger(build_id=b, poll_interval=0.01) for b in build_ids]
        events = await asyncio.gather(*(anext(t.run()) for t in triggers))
        pollers = poller_module.all_pollers()
        return events, pollers

    events, pollers = asyncio.run(wait_all())
    assert [e.payload["status"] for e in events] == ["success"] * 3
    assert [e.payload["build_id"] for e in events] == build_ids
    assert events[0].payload["item"]["buildStatus"] == "SUCCEEDED"
    assert "environment" not in events[0].payload["item"]
    assert len(pollers) == 1
    assert pollers[0].api_calls == 1 and pollers[0].ids_polled == 3


def test_the_operator_defers_on_a_trigger_that_concludes_for_it(project, context):
    op = make_operator(TestCodeBuildOperator, junit_path="reports/*.xml", fail_on_test_failure="false")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert trigger.result == op.result().to_dict()
    assert trigger.result["tests"] == {
        "report_group_arn": None,
        "junit_path": "reports/*.xml",
        "fail_on_test_failure": "false",
    }
    classpath, kwargs = trigger.serialize()
    assert CodeBuildBuildTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_ends_the_tasks_with_their_outputs(project, task_xcoms):
    from airflow.triggers.base import TaskSuccessEvent

    build_ids = [CodeBuildHook().start_build(PROJECT)["id"] for _ in range(3)]
    result = make_operator().result().to_dict()

    async def wait_all():
        triggers = [CodeBuildBuildTrigger(build_id=b, poll_interval=0.01, result=result) for b in build_ids]
        return await asyncio.gather(*(anext(t.run()) for t in triggers)), poller_module.all_pollers()

    events, pollers = asyncio.run(wait_all())
    assert all(isinstance(e, TaskSuccessEvent) and not e.xcoms for e in events)
    assert [task_xcoms[(b, "return_value")]["BuildId"] for b in build_ids] == build_ids
    assert {task_xcoms[(b, "return_value")]["BuildStatus"] for b in build_ids} == {"SUCCEEDED"}
    assert pollers[0].api_calls == 1 and pollers[0].ids_polled == 3


def test_trigger_fails_the_task_with_the_reason_and_the_log_tail(capsys, task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    failed = build(
        "FAILED",
        phases=[
            {
                "phaseType": "BUILD",
                "phaseStatus": "FAILED",
                "contexts": [{"statusCode": "COMMAND_EXECUTION_ERROR", "message": "exit 2"}],
            }
        ],
    )

    async def instant(self, item_id, interval, stop_states):
        return failed

    async def run():
        with mock.patch.object(poller_module.BatchPoller, "wait", instant):
            trigger = CodeBuildBuildTrigger(build_id=failed["id"], result=make_operator().result().to_dict())
            return await anext(trigger.run())

    event = asyncio.run(run())
    assert isinstance(event, TaskFailedEvent)
    reason = f"Build {failed['id']} FAILED in phase BUILD: COMMAND_EXECUTION_ERROR: exit 2"
    assert task_xcoms == {(failed["id"], "failure_reason"): reason}
    assert reason in capsys.readouterr().out


def test_test_trigger_fails_the_task_naming_the_failed_tests(task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    put_junit("run-1/junit.xml")
    op = make_operator(TestCodeBuildOperator, junit_path=f"s3://{ARTIFACT_BUCKET}/run-1/junit.xml")

    async def instant(self, item_id, interval, stop_states):
        return build()

    async def run():
        with mock.patch.object(poller_module.BatchPoller, "wait", instant):
            return await anext(CodeBuildBuildTrigger(build_id=build()["id"], result=op.result().to_dict()).run())

    event = asyncio.run(run())
    assert isinstance(event, TaskFailedEvent)
    reason = task_xcoms[(build()["id"], "failure_reason")]
    assert "2 of 4 tests failed: api.Orders.test_create, api.Orders.test_delete" in reason


def test_trigger_that_cannot_wait_fails_the_task_naming_the_cause(task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    async def run():
        trigger = CodeBuildBuildTrigger(build_id="webapp-build:unknown", result=make_operator().result().to_dict())
        with mock.patch.object(poller_module.BatchPoller, "wait", side_effect=RuntimeError("denied")):
            return await anext(trigger.run())

    event = asyncio.run(run())
    assert isinstance(event, TaskFailedEvent)
    assert task_xcoms == {
        ("webapp-build:unknown", "failure_reason"): "Waiting for codebuild webapp-build:unknown failed: denied"
    }


def test_trigger_reports_an_error_event():
    async def run():
        trigger = CodeBuildBuildTrigger(build_id="webapp-build:unknown", poll_interval=0.01)
        with mock.patch.object(poller_module.BatchPoller, "wait", side_effect=RuntimeError("denied")):
            return await anext(trigger.run())

    event = asyncio.run(run())
    assert event.payload["status"] == "error"
    assert "denied" in event.payload["message"]


@pytest.mark.parametrize(
    ("state", "stops"),
    [("failed", True), (None, False), ("scheduled", False), ("success", False), (..., True)],
)
def test_trigger_on_kill_stops_only_abandoned_tasks(state, stops):
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", return_value=state),
        mock.patch.object(CodeBuildHook, "stop_build") as stop,
    ):
        asyncio.run(trigger.on_kill())
    assert stop.called is stops


def test_trigger_on_kill_stops_when_the_state_cannot_be_read():
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", side_effect=RuntimeError("no comms")),
        mock.patch.object(CodeBuildHook, "stop_build") as stop,
    ):
        asyncio.run(trigger.on_kill())
    stop.assert_called_once_with("p:1")


def _cancel_repeatedly(coro, every: float = 0.02):
    """Run ``coro`` as a task cancelled again and again, as Airflow 3.3.2's triggerer does with a trigger
    whose task a user acted on: its supervisor re-sends the cancellation at every state sync until the
    trigger has ended, also while ``on_kill`` runs. Returns how the task ended and after how long."""

    async def run():
        started = time.monotonic()
        task = asyncio.create_task(coro)
        # One turn of the loop, not a guess: the task has run to its first await, on_kill has started
        # (Airflow calls it once the trigger was cancelled).
        await asyncio.sleep(0)
        while not task.done():
            task.cancel("__airflow_user_action__")
            await asyncio.sleep(every)  # the behaviour under test: the next state sync cancels again
        return ("cancelled" if task.cancelled() else "returned"), time.monotonic() - started

    return asyncio.run(run())


def _slow(seconds, value=None):
    """A call that takes `seconds`: the slowness is the behaviour under test, nothing waits on it."""

    def call(*args, **kwargs):
        time.sleep(seconds)
        return value

    return call


def test_trigger_on_kill_completes_the_stop_while_cancelled_again_and_again():
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    with (
        # Reading the state goes through the triggerer's supervisor: slow when it is busy.
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", side_effect=_slow(0.3, "failed")),
        mock.patch.object(CodeBuildHook, "stop_build", side_effect=_slow(0.2)) as stop,
    ):
        _cancel_repeatedly(trigger.on_kill())
    stop.assert_called_once_with("p:1")


def test_trigger_on_kill_leaves_a_cleared_task_s_build_while_cancelled_again_and_again():
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", side_effect=_slow(0.3, "scheduled")),
        mock.patch.object(CodeBuildHook, "stop_build") as stop,
    ):
        assert _cancel_repeatedly(trigger.on_kill())[0] == "returned"
    stop.assert_not_called()


def test_trigger_on_kill_gives_up_waiting_at_its_budget_but_the_stop_still_happens(monkeypatch):
    monkeypatch.setattr("release_orchestrator.triggers.base.on_kill_budget", lambda: 0.1)
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    stopped = threading.Event()
    with (
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", side_effect=_slow(0.5, "failed")),
        mock.patch.object(CodeBuildHook, "stop_build", side_effect=lambda build_id: stopped.set()),
    ):
        outcome, seconds = _cancel_repeatedly(trigger.on_kill())
        assert outcome == "cancelled" and seconds < 0.45  # did not wait for the state read
        assert stopped.wait(5)


def test_trigger_on_kill_logs_a_failed_stop_instead_of_raising(capsys):
    trigger = CodeBuildBuildTrigger(build_id="p:1")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CodeBuildBuildTrigger, "_task_state", return_value="failed"),
        mock.patch.object(CodeBuildHook, "stop_build", side_effect=AirflowException("StopBuild ... denied")),
    ):
        asyncio.run(trigger.on_kill())
    captured = capsys.readouterr()
    assert "Could not stop codebuild p:1" in captured.out + captured.err

"""CodeDeploy hook, operator and trigger against moto."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from unittest import mock

import boto3
import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.sdk.exceptions import TaskDeferralTimeout
from botocore.client import BaseClient
from moto.codedeploy.models import codedeploy_backends

from release_orchestrator.hooks.codedeploy import CodeDeployHook
from release_orchestrator.operators.codedeploy import CodeDeployOperator
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.codedeploy import CodeDeployDeploymentTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance

REGION = "us-east-1"
ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/release-service-role"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def aws(moto_aws):
    """moto, and the Airflow connection every operator here uses; a fresh poller registry."""
    poller_module.reset_pollers()


@pytest.fixture
def groups():
    """One application and deployment group per platform."""
    client = boto3.client("codedeploy", region_name=REGION)
    for app, platform in (("webapp-ec2", "Server"), ("webapp-ecs", "ECS"), ("webapp-lambda", "Lambda")):
        client.create_application(applicationName=app, computePlatform=platform)
        client.create_deployment_group(applicationName=app, deploymentGroupName="production", serviceRoleArn=ROLE)


@pytest.fixture
def lambda_function():
    iam = boto3.client("iam", region_name=REGION)
    role = iam.create_role(
        RoleName="lambda-role",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
    )["Role"]["Arn"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return 1\n")
    client = boto3.client("lambda", region_name=REGION)
    client.create_function(
        FunctionName="webapp-api",
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": buffer.getvalue()},
    )
    version = client.publish_version(FunctionName="webapp-api")["Version"]
    client.create_alias(FunctionName="webapp-api", Name="live", FunctionVersion=version)
    return "webapp-api"


class FakeTI(FakeTaskInstance):
    task_id = "Deploy.Production"


@pytest.fixture
def store():
    return FakeStateStore()


def make_context(store):
    ti = FakeTI()
    return {"ti": ti, "task_instance": ti, "task_state_store": store, "run_id": ti.run_id}


@pytest.fixture
def context(store):
    return make_context(store)


def server_operator(**kwargs):
    kwargs.setdefault("task_id", "deploy")
    kwargs.setdefault("application_name", "webapp-ec2")
    kwargs.setdefault("deployment_group_name", "production")
    kwargs.setdefault("revision_s3_bucket", "release-artifacts")
    kwargs.setdefault("revision_s3_key", "run-1/webapp.tar.gz")
    return CodeDeployOperator(**kwargs)


def set_status(deployment_id, status):
    codedeploy_backends[ACCOUNT][REGION].deployments[deployment_id].status = status


def deployed(deployment_id):
    return boto3.client("codedeploy", region_name=REGION).get_deployment(deploymentId=deployment_id)["deploymentInfo"]


def spy(client, method):
    return mock.patch.object(client, method, wraps=getattr(client, method))


@pytest.fixture
def batch_gets(monkeypatch):
    """The deploymentIds of every BatchGetDeployments request any client sends, in order."""
    requests: list[list[str]] = []
    send = BaseClient._make_api_call

    def recording(client, operation, params):
        if operation == "BatchGetDeployments":
            requests.append(list(params["deploymentIds"]))
        return send(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    return requests


async def looked_at_twice(requests, deployment_id, waiting, timeout=5.0):
    """Until BatchGetDeployments asked twice more about the deployment (a look starts only once the one
    before was handled, so the poller has acted on the status it saw), or `waiting` ended."""
    start, deadline = len(requests), asyncio.get_running_loop().time() + timeout
    while not waiting.done() and sum(deployment_id in ids for ids in requests[start:]) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"{deployment_id} was not polled"
        await asyncio.sleep(0.01)


# --- hook -------------------------------------------------------------------------------------


def deferred_on(op, context):
    """Run the operator until it defers; the trigger it defers on."""
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value.trigger


def test_hook_names_call_and_resource_in_errors():
    with pytest.raises(
        AirflowException,
        match=r"CreateDeployment on deployment group 'missing/production' failed: ApplicationDoesNotExistException",
    ):
        CodeDeployHook().create_deployment("missing", "production", revision={})


def test_hook_stop_and_continue_requests():
    hook = CodeDeployHook()
    with (
        mock.patch.object(hook.conn, "stop_deployment") as stop,
        mock.patch.object(hook.conn, "continue_deployment") as go_on,
    ):
        hook.stop_deployment("d-1")
        hook.continue_deployment("d-1")
    stop.assert_called_once_with(deploymentId="d-1", autoRollbackEnabled=True)
    go_on.assert_called_once_with(deploymentId="d-1", deploymentWaitType="READY_WAIT")


# --- create -----------------------------------------------------------------------------------


def test_server_s3_deployment_request_and_defer(groups, context, store):
    op = server_operator(
        auto_rollback="true",
        deployment_config_name="CodeDeployDefault.OneAtATime",
        description="webapp 1.2.3",
        poll_interval=7,
    )
    with spy(op.hook.conn, "create_deployment") as create, pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    request = create.call_args.kwargs
    assert request["revision"] == {
        "revisionType": "S3",
        "s3Location": {"bucket": "release-artifacts", "key": "run-1/webapp.tar.gz", "bundleType": "tgz"},
    }
    assert request["autoRollbackConfiguration"] == {
        "enabled": True,
        "events": ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_REQUEST"],
    }
    assert request["deploymentConfigName"] == "CodeDeployDefault.OneAtATime"
    assert request["description"] == f"webapp 1.2.3 {op.marker(context)}"

    trigger = deferred.value.trigger
    deployment_id = store.data["codedeploy_deployment"]["id"]
    assert isinstance(trigger, CodeDeployDeploymentTrigger)
    assert trigger.deployment_id == deployment_id
    assert trigger.continue_at_ready is True
    assert trigger.poll_interval == 7
    assert context["ti"].xcom["_codedeploy_deployment"]["deployment_id"] == deployment_id


def test_github_revision_and_waiting_for_someone_to_continue(groups, context):
    op = CodeDeployOperator(
        task_id="deploy",
        application_name="webapp-ec2",
        deployment_group_name="production",
        revision_github_repository="acme/webapp",
        revision_github_commit="abc123",
        auto_rollback=False,
        on_ready="wait",
    )
    with spy(op.hook.conn, "create_deployment") as create, pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    assert create.call_args.kwargs["revision"] == {
        "revisionType": "GitHub",
        "gitHubLocation": {"repository": "acme/webapp", "commitId": "abc123"},
    }
    assert create.call_args.kwargs["autoRollbackConfiguration"] == {"enabled": False}
    assert deferred.value.trigger.continue_at_ready is False


def test_ecs_registers_task_definition_and_writes_appspec(groups, context, tmp_path):
    template = tmp_path / "taskdef.json"
    template.write_text(
        json.dumps(
            {
                "taskDefinition": {
                    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/webapp-web:3",
                    "revision": 3,
                    "status": "ACTIVE",
                    "family": "webapp-web",
                    "networkMode": "awsvpc",
                    "requiresCompatibilities": ["FARGATE"],
                    "cpu": "256",
                    "memory": "512",
                    "containerDefinitions": [
                        {"name": "web", "image": "webapp:old", "portMappings": [{"containerPort": 8080}]},
                        {"name": "sidecar", "image": "envoy:1"},
                    ],
                }
            }
        )
    )
    op = CodeDeployOperator(
        task_id="deploy",
        application_name="webapp-ecs",
        deployment_group_name="production",
        platform="ecs",
        task_definition_template=str(template),
        container_name="web",
        container_port="8080",
        image="123456789012.dkr.ecr.us-east-1.amazonaws.com/webapp:1.2.3",
        platform_version="1.4.0",
        network_configuration={
            "awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}
        },
        hooks={"AfterAllowTestTraffic": "webapp-smoke-test"},
    )
    with spy(op.hook.conn, "create_deployment") as create, pytest.raises(TaskDeferred):
        op.execute(context)

    revision = create.call_args.kwargs["revision"]
    assert revision["revisionType"] == "AppSpecContent"
    appspec = json.loads(revision["appSpecContent"]["content"])
    task_definition_arn = appspec["Resources"][0]["TargetService"]["Properties"]["TaskDefinition"]
    assert appspec == {
        "version": 0.0,
        "Resources": [
            {
                "TargetService": {
                    "Type": "AWS::ECS::Service",
                    "Properties": {
                        "TaskDefinition": task_definition_arn,
                        "LoadBalancerInfo": {"ContainerName": "web", "ContainerPort": 8080},
                        "PlatformVersion": "1.4.0",
                        "NetworkConfiguration": {
                            "AwsvpcConfiguration": {
                                "Subnets": ["subnet-1"],
                                "SecurityGroups": ["sg-1"],
                                "AssignPublicIp": "DISABLED",
                            }
                        },
                    },
                }
            }
        ],
        "Hooks": [{"AfterAllowTestTraffic": "webapp-smoke-test"}],
    }
    registered = boto3.client("ecs", region_name=REGION).describe_task_definition(taskDefinition=task_definition_arn)[
        "taskDefinition"
    ]
    images = {c["name"]: c["image"] for c in registered["containerDefinitions"]}
    assert images == {"web": "123456789012.dkr.ecr.us-east-1.amazonaws.com/webapp:1.2.3", "sidecar": "envoy:1"}

    # Once succeeded, the outputs carry the task definition.
    deployment_id = context["task_state_store"].data["codedeploy_deployment"]["id"]
    set_status(deployment_id, "Succeeded")
    outputs = op.execute_complete(context, {"status": "success", "deployment_id": deployment_id})
    assert outputs["TaskDefinitionArn"] == task_definition_arn
    assert outputs["DeploymentStatus"] == "Succeeded"


def test_ecs_unknown_container_is_an_error(groups, context):
    op = CodeDeployOperator(
        task_id="deploy",
        application_name="webapp-ecs",
        deployment_group_name="production",
        platform="ecs",
        task_definition_template={"family": "f", "containerDefinitions": [{"name": "web", "image": "x"}]},
        container_name="api",
        image="y",
    )
    with pytest.raises(ValueError, match="no container named 'api'"):
        op.execute(context)


def test_lambda_publishes_version_and_reads_alias(groups, lambda_function, context):
    # New code since version 1, so publishing makes version 2.
    boto3.client("lambda", region_name=REGION).update_function_configuration(
        FunctionName=lambda_function, Description="release 1.2.3"
    )
    op = CodeDeployOperator(
        task_id="deploy",
        application_name="webapp-lambda",
        deployment_group_name="production",
        platform="lambda",
        function_name=lambda_function,
        alias="live",
        publish_version="true",
        hooks=[{"BeforeAllowTraffic": "webapp-pre-traffic"}],
    )
    with spy(op.hook.conn, "create_deployment") as create, pytest.raises(TaskDeferred):
        op.execute(context)
    appspec = json.loads(create.call_args.kwargs["revision"]["appSpecContent"]["content"])
    assert appspec == {
        "version": 0.0,
        "Resources": [
            {
                "webappapi": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {"Name": "webapp-api", "Alias": "live", "CurrentVersion": "1", "TargetVersion": "2"},
                }
            }
        ],
        "Hooks": [{"BeforeAllowTraffic": "webapp-pre-traffic"}],
    }
    deployment_id = context["task_state_store"].data["codedeploy_deployment"]["id"]
    set_status(deployment_id, "Succeeded")
    outputs = op.execute_complete(context, {"status": "success", "deployment_id": deployment_id})
    assert outputs["LambdaVersion"] == "2"


def test_lambda_given_versions_need_no_lambda_calls(groups, context):
    # No function webapp-api exists in moto: a PublishVersion or GetAlias call would fail.
    op = CodeDeployOperator(
        task_id="deploy",
        application_name="webapp-lambda",
        deployment_group_name="production",
        platform="lambda",
        function_name="webapp-api",
        alias="live",
        target_version=5,
        current_version="4",
    )
    properties = op.lambda_appspec()["Resources"][0]["webappapi"]["Properties"]
    assert (properties["CurrentVersion"], properties["TargetVersion"]) == ("4", "5")


def test_bad_platform_is_rejected(context):
    with pytest.raises(ValueError, match="platform must be one of"):
        server_operator(platform="kubernetes").revision()


# --- reattach ---------------------------------------------------------------------------------


def test_retry_reattaches_to_the_recorded_deployment(groups, context, store):
    op = server_operator()
    first = deferred_on(op, context)
    with spy(op.hook.conn, "create_deployment") as create:
        second = deferred_on(server_operator(), make_context(store))
    create.assert_not_called()
    assert second.deployment_id == first.deployment_id


def test_lost_record_finds_the_active_deployment_by_its_marker(groups, context):
    first = deferred_on(server_operator(), context)
    op = server_operator()
    fresh = FakeStateStore()
    with spy(op.hook.conn, "create_deployment") as create:
        second = deferred_on(op, make_context(fresh))
    create.assert_not_called()
    assert second.deployment_id == first.deployment_id
    assert fresh.data["codedeploy_deployment"]["id"] == first.deployment_id


def test_lost_record_never_takes_a_rollback_deployment_for_its_own(groups, context):
    """CodeDeploy's rollback deployment of a failed one may carry its description (and so its marker)."""
    own = deferred_on(server_operator(), context).deployment_id
    original = deployed(own)
    rollback = {**original, "deploymentId": "d-ROLLBACK1", "creator": "codeDeployRollback", "status": "InProgress"}
    hook = CodeDeployHook()
    marker = server_operator().marker(context)
    assert marker in original["description"]
    with (
        mock.patch.object(hook.conn, "list_deployments", return_value={"deployments": ["d-ROLLBACK1"]}),
        mock.patch.object(hook, "batch_get_deployments", return_value=[rollback]),
    ):
        assert hook.find_active_deployment("webapp-ec2", "production", marker) is None
    with (
        mock.patch.object(hook.conn, "list_deployments", return_value={"deployments": ["d-ROLLBACK1", own]}),
        mock.patch.object(hook, "batch_get_deployments", return_value=[rollback, {**original, "creator": "user"}]),
    ):
        assert hook.find_active_deployment("webapp-ec2", "production", marker) == own


def test_after_a_reported_deployment_a_new_one_is_created(groups, context, store):
    first = deferred_on(server_operator(), context)
    set_status(first.deployment_id, "Succeeded")
    server_operator().execute_complete(context, {"status": "success", "deployment_id": first.deployment_id})
    assert store.data["codedeploy_deployment"]["reported"] is True
    assert deferred_on(server_operator(), make_context(store)).deployment_id != first.deployment_id


def test_stopped_deployment_is_not_reattached(groups, context, store):
    first = deferred_on(server_operator(), context)
    set_status(first.deployment_id, "Stopped")
    assert deferred_on(server_operator(), make_context(store)).deployment_id != first.deployment_id


# --- completion -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status_now,continued",
    [
        ("Ready", True),
        # The event is held a while after Ready was seen: a person may have continued it meanwhile.
        ("InProgress", False),
    ],
)
def test_ready_event_continues_if_still_ready_and_waits_for_the_end(groups, context, status_now, continued):
    op = server_operator()
    deployment_id = deferred_on(op, context).deployment_id
    set_status(deployment_id, status_now)
    with (
        mock.patch.object(CodeDeployHook, "continue_deployment") as go_on,
        pytest.raises(TaskDeferred) as again,
    ):
        op.execute_complete(context, {"status": "ready", "deployment_id": deployment_id})
    if continued:
        go_on.assert_called_once_with(deployment_id)
    else:
        go_on.assert_not_called()
    assert again.value.trigger.deployment_id == deployment_id
    assert again.value.trigger.continue_at_ready is False


def test_ready_event_for_a_deployment_that_ended_meanwhile_reports_its_end(groups, context, store):
    op = server_operator()
    deployment_id = deferred_on(op, context).deployment_id
    set_status(deployment_id, "Succeeded")
    with mock.patch.object(CodeDeployHook, "continue_deployment") as go_on:
        outputs = op.execute_complete(context, {"status": "ready", "deployment_id": deployment_id})
    go_on.assert_not_called()
    assert outputs["DeploymentId"] == deployment_id and outputs["DeploymentStatus"] == "Succeeded"
    assert store.data["codedeploy_deployment"]["reported"] is True

    set_status(deployment_id, "Stopped")
    with pytest.raises(AirflowException, match=f"Deployment {deployment_id} of webapp-ec2/production Stopped"):
        server_operator().execute_complete(context, {"status": "ready", "deployment_id": deployment_id})


def test_continue_refused_because_someone_was_faster_is_not_an_error(groups, context):
    """ContinueDeployment refused as not Ready, and the deployment has indeed moved on: keep waiting."""
    op = server_operator()
    deployment_id = deferred_on(op, context).deployment_id
    set_status(deployment_id, "Ready")

    def someone_was_faster(_deployment_id):
        set_status(deployment_id, "InProgress")
        raise AirflowException(
            f"ContinueDeployment on deployment '{deployment_id}' failed: "
            "DeploymentIsNotInReadyStateException: not in the Ready state"
        )

    with (
        mock.patch.object(CodeDeployHook, "continue_deployment", side_effect=someone_was_faster),
        pytest.raises(TaskDeferred) as again,
    ):
        op.execute_complete(context, {"status": "ready", "deployment_id": deployment_id})
    assert again.value.trigger.continue_at_ready is False

    # Still at Ready after a refusal: that is a real error.
    with (
        mock.patch.object(CodeDeployHook, "continue_deployment", side_effect=AirflowException("AccessDenied")),
        pytest.raises(AirflowException, match="AccessDenied"),
    ):
        set_status(deployment_id, "Ready")
        server_operator().execute_complete(context, {"status": "ready", "deployment_id": deployment_id})


def test_bad_on_ready_is_refused_before_any_deployment_exists(groups, context):
    op = server_operator(on_ready="later")
    with spy(op.hook.conn, "create_deployment") as create, pytest.raises(ValueError, match="on_ready"):
        op.execute(context)
    create.assert_not_called()


def test_success_outputs(groups, context):
    op = server_operator()
    deployment_id = deferred_on(op, context).deployment_id
    set_status(deployment_id, "Succeeded")
    assert op.execute_complete(context, {"status": "success", "deployment_id": deployment_id}) == {
        "DeploymentId": deployment_id,
        "DeploymentStatus": "Succeeded",
        "ConsoleUrl": f"https://console.aws.amazon.com/codesuite/codedeploy/deployments/{deployment_id}?region=us-east-1",
    }


def test_failure_names_lifecycle_event_diagnostics_and_rollback(context):
    failed = {
        "deploymentId": "d-FAILED1",
        "status": "Failed",
        "errorInformation": {"code": "HEALTH_CONSTRAINTS", "message": "The overall deployment failed"},
        "rollbackInfo": {"rollbackDeploymentId": "d-ROLLBACK", "rollbackMessage": "Automatic rollback"},
    }
    targets = [
        {
            "ecsTarget": {
                "targetId": "webapp:webapp-web",
                "lifecycleEvents": [
                    {"lifecycleEventName": "BeforeInstall", "status": "Succeeded"},
                    {
                        "lifecycleEventName": "AfterAllowTestTraffic",
                        "status": "Failed",
                        "diagnostics": {
                            "errorCode": "ScriptFailed",
                            "message": "smoke test returned 500",
                            "scriptName": "webapp-smoke-test",
                            "logTail": "GET /health -> 500",
                        },
                    },
                ],
            }
        }
    ]
    op = server_operator()
    with (
        mock.patch.object(CodeDeployHook, "get_deployment", return_value=failed),
        mock.patch.object(CodeDeployHook, "get_deployment_targets", return_value=targets),
        pytest.raises(AirflowException) as err,
    ):
        op.execute_complete(context, {"status": "failed", "deployment_id": "d-FAILED1"})
    assert str(err.value) == (
        "Deployment d-FAILED1 of webapp-ec2/production Failed; "
        "lifecycle event AfterAllowTestTraffic failed on webapp:webapp-web: "
        "ScriptFailed: smoke test returned 500 (script webapp-smoke-test); "
        "HEALTH_CONSTRAINTS: The overall deployment failed; "
        "rolled back by deployment d-ROLLBACK (Automatic rollback)"
    )


def test_stopped_without_targets_api_still_explains(groups, context):
    op = server_operator()
    deployment_id = deferred_on(op, context).deployment_id
    set_status(deployment_id, "Stopped")
    with pytest.raises(
        AirflowException, match=f"Deployment {deployment_id} of webapp-ec2/production Stopped; no rollback"
    ):
        op.execute_complete(context, {"status": "failed", "deployment_id": deployment_id})


def test_error_event_fails_with_its_message(context):
    with pytest.raises(AirflowException, match="not returned"):
        server_operator().execute_complete(
            context, {"status": "error", "deployment_id": "d-1", "message": "not returned"}
        )


# --- stopping ---------------------------------------------------------------------------------


def test_on_kill_stops_with_rollback(groups, context):
    op = server_operator()
    with pytest.raises(TaskDeferred):
        op.execute(context)
    with mock.patch.object(CodeDeployHook, "stop_deployment") as stop:
        op.on_kill()
    stop.assert_called_once_with(op._deployment_id, auto_rollback=True)


def test_deferral_timeout_stops_the_recorded_deployment(groups, context, store):
    op = server_operator()
    first = deferred_on(op, context)
    with (
        mock.patch.object(CodeDeployHook, "stop_deployment") as stop,
        pytest.raises(TaskDeferralTimeout),
    ):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, context)
    stop.assert_called_once_with(first.deployment_id, auto_rollback=True)


# --- trigger ----------------------------------------------------------------------------------


def test_trigger_serialize_round_trips():
    trigger = CodeDeployDeploymentTrigger(
        deployment_id="d-1", aws_conn_id="prod", region_name="eu-west-1", poll_interval=9, stop_at_ready=True
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.triggers.codedeploy.CodeDeployDeploymentTrigger"
    assert kwargs["stop_at_ready"] is True
    assert CodeDeployDeploymentTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_fires_at_ready_only_when_asked_and_polls_in_batches_of_25(groups, batch_gets):
    hook = CodeDeployHook()
    revision = {"revisionType": "S3", "s3Location": {"bucket": "b", "key": "k.zip", "bundleType": "zip"}}
    ids = [hook.create_deployment("webapp-ec2", "production", revision=revision) for _ in range(30)]
    for deployment_id in ids:
        set_status(deployment_id, "Ready")

    async def scenario():
        at_ready = [CodeDeployDeploymentTrigger(deployment_id=d, poll_interval=0.01, stop_at_ready=True) for d in ids]
        events = await asyncio.gather(*(anext(t.run()) for t in at_ready))
        first_round = list(batch_gets)
        waiting = asyncio.ensure_future(
            anext(CodeDeployDeploymentTrigger(deployment_id=ids[0], poll_interval=0.01).run())
        )
        await looked_at_twice(batch_gets, ids[0], waiting)
        assert not waiting.done()  # Ready is not the end for a trigger not asked to stop there
        set_status(ids[0], "Succeeded")
        return events, first_round, await waiting

    events, first_round, final = asyncio.run(scenario())
    assert {e.payload["status"] for e in events} == {"ready"}
    assert final.payload["status"] == "success"
    # 30 deployments found in batched requests of at most 25 ids (BatchGetDeployments' limit), each id once:
    # two requests when all 30 triggers register before the first round, a few more when a loaded machine
    # spreads their registrations over rounds, never one request per deployment.
    assert max(map(len, first_round)) <= 25 and len(first_round) <= 5
    assert sorted(sum(first_round, [])) == sorted(ids)


def test_trigger_continues_at_ready_and_ends_the_task_with_the_outputs(groups, context, task_xcoms):
    from airflow.triggers.base import TaskSuccessEvent

    op = server_operator()
    trigger = deferred_on(op, context)
    assert trigger.result == op.result().to_dict() and trigger.continue_at_ready is True
    trigger.poll_interval = 0.01
    set_status(trigger.deployment_id, "Ready")

    def go_on(deployment_id):
        set_status(deployment_id, "Succeeded")

    async def run():
        with mock.patch.object(CodeDeployHook, "continue_deployment", side_effect=go_on) as continued:
            event = await anext(trigger.run())
        return event, continued

    event, continued = asyncio.run(run())
    continued.assert_called_once_with(trigger.deployment_id)
    assert isinstance(event, TaskSuccessEvent)
    outputs = task_xcoms[(trigger.deployment_id, "return_value")]
    assert (outputs["DeploymentId"], outputs["DeploymentStatus"]) == (trigger.deployment_id, "Succeeded")


def test_trigger_that_waits_at_ready_leaves_it_to_someone_else(groups, context, task_xcoms, batch_gets):
    op = server_operator(on_ready="wait")
    trigger = deferred_on(op, context)
    trigger.poll_interval = 0.01
    set_status(trigger.deployment_id, "Ready")

    async def run():
        with mock.patch.object(CodeDeployHook, "continue_deployment") as continued:
            waiting = asyncio.ensure_future(anext(trigger.run()))
            await looked_at_twice(batch_gets, trigger.deployment_id, waiting)
            assert not waiting.done()
            set_status(trigger.deployment_id, "Succeeded")
            return await waiting, continued

    event, continued = asyncio.run(run())
    continued.assert_not_called()
    assert task_xcoms[(trigger.deployment_id, "return_value")]["DeploymentStatus"] == "Succeeded"


def test_trigger_fails_the_task_naming_the_deployment_and_its_rollback(groups, context, task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    trigger = deferred_on(server_operator(), context)
    trigger.poll_interval = 0.01
    set_status(trigger.deployment_id, "Failed")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert task_xcoms[(trigger.deployment_id, "failure_reason")].startswith(
        f"Deployment {trigger.deployment_id} of webapp-ec2/production Failed"
    )


def test_trigger_on_kill_stops_with_rollback_when_marked_failed():
    trigger = CodeDeployDeploymentTrigger(deployment_id="d-1")
    trigger._task_instance = FakeTI()
    with (
        mock.patch.object(CodeDeployDeploymentTrigger, "_task_state", return_value="failed"),
        mock.patch.object(CodeDeployHook, "stop_deployment") as stop,
    ):
        asyncio.run(trigger.on_kill())
    stop.assert_called_once_with("d-1", auto_rollback=True)

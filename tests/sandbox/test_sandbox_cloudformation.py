"""deploy.cloudformation over real HTTP: the operator and its triggers against the sandbox, whose stack
operations take STACK_SECONDS (tests/sandbox/conftest.py), fail or hang by fault."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.hooks.cloudformation import StackHook
from release_orchestrator.operators.cloudformation import CloudFormationOperator
from release_orchestrator.results import ActionFailed
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.cloudformation import CloudFormationStackTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance

CONN = "cloudformation_sandbox"


def template(name: str) -> dict:
    return {
        "Parameters": {"Value": {"Type": "String"}},
        "Resources": {
            "Setting": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {"Name": f"/{name}/setting", "Type": "String", "Value": {"Ref": "Value"}},
            },
            "Topic": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": f"{name}-events"}},
        },
        "Outputs": {"SettingName": {"Value": {"Ref": "Setting"}}, "TopicArn": {"Value": {"Ref": "Topic"}}},
    }


@pytest.fixture
def connection(sandbox, monkeypatch):
    extra = {"endpoint_url": sandbox.url, "region_name": r.REGION}
    value = json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN.upper()}", value)
    poller_module.reset_pollers()
    # One hook for the test's operators (building one reads the connection and makes a client: slow).
    hook = StackHook(aws_conn_id=CONN)
    monkeypatch.setattr(CloudFormationOperator, "hook", property(lambda self: hook))
    return CONN


@pytest.fixture
def xcoms(monkeypatch):
    """What the triggers write as XCom of their task: {(item id, key): value}."""
    written: dict = {}
    monkeypatch.setattr(
        BatchPolledTrigger, "write_xcom", lambda self, key, value: written.__setitem__((self.item_id, key), value)
    )
    return written


@pytest.fixture
def stack():
    return f"sandbox-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def context():
    ti = FakeTaskInstance()
    return {"ti": ti, "task_instance": ti, "task_state_store": FakeStateStore(), "run_id": ti.run_id}


def operator(connection, stack, **kwargs):
    kwargs.setdefault("action_mode", "CREATE_UPDATE")
    if kwargs["action_mode"] in ("CREATE_UPDATE", "REPLACE_ON_FAILURE", "CHANGE_SET_REPLACE"):
        kwargs.setdefault("template", template(stack))
        kwargs.setdefault("parameter_overrides", {"Value": "one"})
    return CloudFormationOperator(
        task_id="stack", stack_name=stack, aws_conn_id=connection, poll_interval=0.2, **kwargs
    )


@dataclass
class Outcome:
    """How an action ended: its outputs or why it failed, and whether it waited on a trigger to get there."""

    outputs: dict | None
    reason: str | None
    trigger: CloudFormationStackTrigger | None


def run(op, context, xcoms, release=None) -> Outcome:
    """Run the operator; when it defers, run its trigger to the end as the triggerer would. `release` is
    called once the poller has seen the operation in progress (to clear a fault holding it there)."""
    try:
        return Outcome(op.execute(context), None, None)
    except ActionFailed as failure:  # finished before the operator looked: nothing to wait for
        return Outcome(None, str(failure), None)
    except TaskDeferred as deferred:
        trigger = deferred.trigger

    async def wait():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        if release is not None:
            poller = trigger.poller()
            while poller.api_calls < 1:
                assert not waiting.done()
                await asyncio.sleep(0.05)
            release()
        return await asyncio.wait_for(waiting, timeout=20)

    event = asyncio.run(wait())
    assert isinstance(event, (TaskSuccessEvent, TaskFailedEvent))
    if isinstance(event, TaskSuccessEvent):
        return Outcome(xcoms[(trigger.item_id, "return_value")], None, trigger)
    return Outcome(None, xcoms[(trigger.item_id, "failure_reason")], trigger)


def test_create_waits_for_the_stack_and_its_outputs_become_variables_then_update_and_no_updates(
    connection, stack, context, xcoms, aws, control
):
    control.set_fault("cloudformation", stack, "hang")  # held in progress until the trigger waits
    created = run(operator(connection, stack), context, xcoms, lambda: control.clear_fault("cloudformation", stack))
    assert isinstance(created.trigger, CloudFormationStackTrigger)  # a real wait, over HTTP
    outputs = created.outputs
    assert (outputs["StackStatus"], outputs["SettingName"]) == ("CREATE_COMPLETE", f"/{stack}/setting")
    assert outputs["TopicArn"] == f"arn:aws:sns:{r.REGION}:{r.ACCOUNT_ID}:{stack}-events"
    assert outputs["StackId"] == created.trigger.item_id

    updated = run(operator(connection, stack, parameter_overrides={"Value": "two"}), context, xcoms)
    assert updated.outputs["StackStatus"] == "UPDATE_COMPLETE"
    assert aws("ssm").get_parameter(Name=f"/{stack}/setting")["Parameter"]["Value"] == "two"

    unchanged = run(operator(connection, stack, parameter_overrides={"Value": "two"}), context, xcoms)
    assert unchanged.trigger is None and unchanged.outputs["StackStatus"] == "UPDATE_COMPLETE"  # no updates


def test_a_failing_create_names_the_resource_then_only_replace_on_failure_recovers(
    connection, stack, context, xcoms, control
):
    control.set_fault("cloudformation", stack, "fail")
    failed = run(operator(connection, stack), context, xcoms)
    assert failed.reason.startswith(f"Stack {stack} is ROLLBACK_COMPLETE (CREATE_UPDATE); first failure: Setting ")
    assert "CREATE_FAILED: Resource handler returned message" in failed.reason

    control.clear_fault("cloudformation", stack)
    with pytest.raises(AirflowException, match="ROLLBACK_COMPLETE and cannot be updated"):
        operator(connection, stack).execute(context)
    replaced = run(operator(connection, stack, action_mode="REPLACE_ON_FAILURE"), context, xcoms)
    assert replaced.outputs["StackStatus"] == "CREATE_COMPLETE"
    assert replaced.outputs["SettingName"] == f"/{stack}/setting"


def test_delete_waits_until_the_stack_is_gone_and_a_missing_stack_is_fine(connection, stack, context, xcoms):
    stack_id = run(operator(connection, stack), context, xcoms).outputs["StackId"]
    deleted = run(operator(connection, stack, action_mode="DELETE_ONLY"), context, xcoms)
    assert (deleted.outputs["StackStatus"], deleted.outputs["StackId"]) == ("DELETE_COMPLETE", stack_id)
    again = run(operator(connection, stack, action_mode="DELETE_ONLY"), context, xcoms)
    assert again.trigger is None and again.outputs["StackStatus"] == ""


def test_change_set_created_then_executed(connection, stack, context, xcoms, aws):
    created = run(operator(connection, stack, action_mode="CHANGE_SET_REPLACE", change_set_name="go"), context, xcoms)
    change_set_id = created.outputs["ChangeSetId"]
    assert ":changeSet/go/" in change_set_id
    assert aws("cloudformation").describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_COMPLETE"

    executed = run(operator(connection, stack, action_mode="CHANGE_SET_EXECUTE", change_set_name="go"), context, xcoms)
    assert (executed.outputs["StackStatus"], executed.outputs["ChangeSetId"]) == ("CREATE_COMPLETE", change_set_id)


def test_marking_the_task_failed_cancels_the_update(connection, stack, context, xcoms, control, aws, wait_until):
    run(operator(connection, stack), context, xcoms)
    control.set_fault("cloudformation", stack, "hang")
    with pytest.raises(TaskDeferred) as deferred:
        operator(connection, stack, parameter_overrides={"Value": "two"}).execute(context)
    trigger = deferred.value.trigger
    trigger._task_instance = context["ti"]
    cloudformation = aws("cloudformation")
    status = lambda: cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]  # noqa: E731

    async def scenario():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        poller = trigger.poller()
        while poller.api_calls < 2:  # the poller has seen the update in progress, twice
            assert not waiting.done()
            await asyncio.sleep(0.05)
        assert status() == "UPDATE_IN_PROGRESS"  # held by the fault
        with mock.patch.object(CloudFormationStackTrigger, "_task_state", return_value="failed"):
            await trigger.on_kill()
        return await asyncio.wait_for(waiting, timeout=10)

    event = asyncio.run(scenario())
    assert isinstance(event, TaskFailedEvent)
    assert status() == "UPDATE_ROLLBACK_COMPLETE"
    assert xcoms[(trigger.item_id, "failure_reason")].startswith(f"Stack {stack} is UPDATE_ROLLBACK_COMPLETE")


def test_the_sandbox_refuses_what_cloudformation_refuses(stack, aws, control, wait_until):
    from botocore.exceptions import ClientError

    cloudformation = aws("cloudformation")
    body = json.dumps(template(stack))
    parameters = [{"ParameterKey": "Value", "ParameterValue": "one"}]
    control.set_fault("cloudformation", stack, "hang")  # in progress for as long as the test needs
    cloudformation.create_stack(StackName=stack, TemplateBody=body, Parameters=parameters)
    status = lambda: cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]  # noqa: E731
    assert status() == "CREATE_IN_PROGRESS"
    with pytest.raises(ClientError, match="is in CREATE_IN_PROGRESS state and can not be updated"):
        cloudformation.update_stack(StackName=stack, TemplateBody=body, Parameters=parameters)
    with pytest.raises(ClientError, match="CancelUpdateStack cannot be called from current stack status"):
        cloudformation.cancel_update_stack(StackName=stack)
    control.clear_fault("cloudformation", stack)
    wait_until(status, lambda s: s == "CREATE_COMPLETE", timeout=10)
    with pytest.raises(ClientError, match="No updates are to be performed"):
        cloudformation.update_stack(StackName=stack, TemplateBody=body, Parameters=parameters)

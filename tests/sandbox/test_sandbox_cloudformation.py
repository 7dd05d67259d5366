"""deploy.cloudformation over real HTTP: the operator and its triggers against the sandbox, whose stack
operations take STACK_SECONDS (tests/sandbox/conftest.py), fail or hang by fault."""

from __future__ import annotations

import asyncio
import json
import uuid
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.hooks.cloudformation import StackHook
from release_orchestrator.operators.cloudformation import CloudFormationOperator
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


def run(op, context):
    """Run the operator; when it defers, run its trigger to the end as the triggerer would.
    (outputs or None, the trigger or None, the trigger's event or None)."""
    try:
        return op.execute(context), None, None
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    event = asyncio.run(asyncio.wait_for(anext(trigger.run()), timeout=20))
    return None, trigger, event


def test_create_waits_for_the_stack_and_its_outputs_become_variables_then_update_and_no_updates(
    connection, stack, context, xcoms, aws
):
    _, trigger, event = run(operator(connection, stack), context)
    assert isinstance(trigger, CloudFormationStackTrigger)  # the sandbox holds the create in progress: a real wait
    assert isinstance(event, TaskSuccessEvent)
    outputs = xcoms[(trigger.item_id, "return_value")]
    assert (outputs["StackStatus"], outputs["SettingName"]) == ("CREATE_COMPLETE", f"/{stack}/setting")
    assert outputs["TopicArn"] == f"arn:aws:sns:{r.REGION}:{r.ACCOUNT_ID}:{stack}-events"

    _, trigger, event = run(operator(connection, stack, parameter_overrides={"Value": "two"}), context)
    assert isinstance(event, TaskSuccessEvent)
    assert xcoms[(trigger.item_id, "return_value")]["StackStatus"] == "UPDATE_COMPLETE"
    assert aws("ssm").get_parameter(Name=f"/{stack}/setting")["Parameter"]["Value"] == "two"

    outputs, trigger, _ = run(operator(connection, stack, parameter_overrides={"Value": "two"}), context)
    assert trigger is None and outputs["StackStatus"] == "UPDATE_COMPLETE"  # no updates: nothing to wait for


def test_a_failing_create_names_the_resource_then_only_replace_on_failure_recovers(
    connection, stack, context, xcoms, control
):
    control.set_fault("cloudformation", stack, "fail")
    _, trigger, event = run(operator(connection, stack), context)
    assert isinstance(event, TaskFailedEvent)
    reason = xcoms[(trigger.item_id, "failure_reason")]
    assert reason.startswith(f"Stack {stack} is ROLLBACK_COMPLETE (CREATE_UPDATE); first failure: Setting ")
    assert "CREATE_FAILED: Resource handler returned message" in reason

    control.clear_fault("cloudformation", stack)
    with pytest.raises(AirflowException, match="ROLLBACK_COMPLETE and cannot be updated"):
        operator(connection, stack).execute(context)
    _, replaced, event = run(operator(connection, stack, action_mode="REPLACE_ON_FAILURE"), context)
    assert isinstance(event, TaskSuccessEvent) and replaced.item_id != trigger.item_id
    assert xcoms[(replaced.item_id, "return_value")]["StackStatus"] == "CREATE_COMPLETE"


def test_delete_waits_until_the_stack_is_gone_and_a_missing_stack_is_fine(connection, stack, context, xcoms):
    run(operator(connection, stack), context)
    _, trigger, event = run(operator(connection, stack, action_mode="DELETE_ONLY"), context)
    assert isinstance(event, TaskSuccessEvent)
    assert xcoms[(trigger.item_id, "return_value")]["StackStatus"] == "DELETE_COMPLETE"
    outputs, trigger, _ = run(operator(connection, stack, action_mode="DELETE_ONLY"), context)
    assert trigger is None and outputs["StackStatus"] == ""


def test_change_set_created_then_executed(connection, stack, context, xcoms, aws):
    _, trigger, event = run(
        operator(connection, stack, action_mode="CHANGE_SET_REPLACE", change_set_name="go"), context
    )
    assert isinstance(event, TaskSuccessEvent)
    change_set_id = xcoms[(trigger.item_id, "return_value")]["ChangeSetId"]
    assert trigger.item_id == change_set_id
    assert aws("cloudformation").describe_change_set(ChangeSetName=change_set_id)["Status"] == "CREATE_COMPLETE"

    _, trigger, event = run(
        operator(connection, stack, action_mode="CHANGE_SET_EXECUTE", change_set_name="go"), context
    )
    assert isinstance(event, TaskSuccessEvent)
    outputs = xcoms[(trigger.item_id, "return_value")]
    assert (outputs["StackStatus"], outputs["ChangeSetId"]) == ("CREATE_COMPLETE", change_set_id)


def test_marking_the_task_failed_cancels_the_update(connection, stack, context, xcoms, control, aws, wait_until):
    run(operator(connection, stack), context)
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

"""Step Functions hook, operator and trigger against moto (whose executions stay RUNNING until told)."""

from __future__ import annotations

import asyncio
import json
from unittest import mock

import boto3
import pytest
import yaml
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent
from moto.stepfunctions.models import stepfunctions_backends

from release_orchestrator.hooks.stepfunctions import StepFunctionsHook, execution_arn, output_variables
from release_orchestrator.operators.stepfunctions import StepFunctionsOperator
from release_orchestrator.pipeline.files import SpecFileError
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.stepfunctions import STOP_ERROR, StepFunctionsExecutionTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance

REGION = "us-east-1"
ACCOUNT = "123456789012"
DEFINITION = {"StartAt": "Check", "States": {"Check": {"Type": "Pass", "End": True}}}


@pytest.fixture(autouse=True)
def aws(moto_aws):
    poller_module.reset_pollers()


@pytest.fixture
def machine():
    client = boto3.client("stepfunctions", region_name=REGION)
    return client.create_state_machine(
        name="smoke-tests",
        definition=json.dumps(DEFINITION),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/states",
    )["stateMachineArn"]


def operator(machine, **kwargs):
    return StepFunctionsOperator(task_id="smoke", state_machine_arn=machine, **kwargs)


def deferred_on(op, context) -> StepFunctionsExecutionTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    trigger.poll_interval = 0.01
    return trigger


def finish(arn, status, **fields):
    """End a moto execution as Step Functions would."""
    for machine in stepfunctions_backends[ACCOUNT][REGION].state_machines:
        for execution in machine.executions:
            if execution.execution_arn == arn:
                execution.status = status
                for key, value in fields.items():
                    setattr(execution, key, value)


def executions(machine):
    return boto3.client("stepfunctions", region_name=REGION).list_executions(stateMachineArn=machine)["executions"]


# --- hook -------------------------------------------------------------------------------------


def test_hook_names_call_and_resource_in_errors():
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:missing"
    with pytest.raises(
        AirflowException, match=rf"StartExecution on state machine '{missing}' failed: StateMachineDoesNotExist"
    ):
        StepFunctionsHook().start_named_execution(missing, "n", "{}")


def test_execution_arn_and_output_variables():
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:smoke"
    assert execution_arn(machine, "run-1") == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:smoke:run-1"
    assert output_variables('{"url": "https://x", "count": 3, "ok": true, "items": [1], "none": null}') == {
        "url": "https://x",
        "count": "3",
        "ok": "true",
        "items": "[1]",
        "none": "null",
    }
    assert output_variables("[1, 2]") == {} and output_variables('"text"') == {} and output_variables(None) == {}


# --- start ------------------------------------------------------------------------------------


def test_start_request_name_input_and_defer(machine, context, store):
    op = operator(machine, execution_name_prefix="release", input={"commit": "abc", "count": 2}, poll_interval=7)
    with mock.patch.object(op.hook.conn, "start_execution", wraps=op.hook.conn.start_execution) as start:
        trigger = deferred_on(op, context)
    request = start.call_args.kwargs
    assert request["stateMachineArn"] == machine
    assert request["name"] == op.execution_name(context, 0)
    assert request["name"].startswith("release-") and len(request["name"]) == len("release-") + 32
    assert json.loads(request["input"]) == {"commit": "abc", "count": 2}
    assert isinstance(trigger, StepFunctionsExecutionTrigger)
    assert trigger.item_id == store.data["stepfunctions_execution"]["id"] == execution_arn(machine, request["name"])
    assert trigger.result == op.result().to_dict()
    assert context["ti"].xcom["_state_machine_executions_details"]["execution_arn"] == trigger.item_id


def test_input_from_a_file_in_the_spec_folder(machine, context, tmp_path):
    (tmp_path / "input.json").write_text('{"suite": "smoke"}')
    op = operator(machine, input="input.json", spec_folder=str(tmp_path))
    trigger = deferred_on(op, context)
    described = StepFunctionsHook().describe(trigger.item_id)
    assert json.loads(described["input"]) == {"suite": "smoke"}


def test_input_outside_the_spec_folder_or_not_json_starts_nothing(machine, context, tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "secret.json").write_text("{}")
    with pytest.raises(SpecFileError, match="input: '../secret.json' is outside the spec's folder"):
        operator(machine, input="../secret.json", spec_folder=str(tmp_path / "spec")).execute(context)
    with pytest.raises(ValueError, match="input is not JSON"):
        operator(machine, input="{not json").execute(context)
    assert executions(machine) == []


def test_a_retry_that_lost_its_record_gets_the_same_execution(machine, context):
    first = deferred_on(operator(machine, input={"a": 1}), context)
    lost = {**context, "task_state_store": FakeStateStore()}  # the record was never written
    second = deferred_on(operator(machine, input={"a": 1}), lost)
    assert second.item_id == first.item_id
    assert len(executions(machine)) == 1


def test_a_retry_reattaches_to_the_recorded_running_execution(machine, context):
    first = deferred_on(operator(machine), context)
    with mock.patch.object(StepFunctionsHook, "start_named_execution") as start:
        second = deferred_on(operator(machine), context)
    start.assert_not_called()
    assert second.item_id == first.item_id


def test_a_new_try_after_the_execution_finished_starts_another(machine, context, store):
    first = deferred_on(operator(machine), context)
    finish(first.item_id, "FAILED", error="E", cause="C")  # the trigger reported it; the task is cleared
    second = deferred_on(operator(machine), context)
    assert second.item_id != first.item_id and store.data["stepfunctions_execution"]["generation"] == 1


def test_a_lost_record_of_an_execution_that_finished_reports_it(machine, context):
    first = deferred_on(operator(machine, input={"a": 1}), context)
    finish(first.item_id, "SUCCEEDED", output='{"version": "1.2.3"}')
    lost = {**context, "task_state_store": FakeStateStore()}
    outputs = operator(machine, input={"a": 1}).execute(lost)  # ExecutionAlreadyExists: the same one
    assert outputs["ExecutionArn"] == first.item_id and outputs["version"] == "1.2.3"
    with pytest.raises(AirflowException, match="exists with another input"):
        operator(machine, input={"a": 2}).execute({**context, "task_state_store": FakeStateStore()})


def test_without_deferring_it_waits_in_the_worker_and_returns_the_outputs(machine, context):
    op = operator(machine, deferrable=False)

    def waited(executionArn, WaiterConfig):  # noqa: N803 - the waiter's own argument names
        finish(executionArn, "SUCCEEDED", output='{"ok": true}')

    with mock.patch.object(StepFunctionsHook, "get_waiter") as get_waiter:
        get_waiter.return_value.wait.side_effect = waited
        outputs = op.execute(context)
    get_waiter.assert_called_once_with("execution_finished")
    assert (outputs["Status"], outputs["ok"]) == ("SUCCEEDED", "true")


def test_on_kill_stops_the_execution(machine, context):
    op = operator(machine)
    trigger = deferred_on(op, context)
    op.on_kill()
    described = StepFunctionsHook().describe(trigger.item_id)
    assert described["status"] == "ABORTED"


# --- trigger ----------------------------------------------------------------------------------


def test_trigger_serialize_round_trips():
    trigger = StepFunctionsExecutionTrigger(execution_arn="arn:x", aws_conn_id="prod", region_name="eu-west-1")
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.triggers.stepfunctions.StepFunctionsExecutionTrigger"
    assert StepFunctionsExecutionTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_trigger_ends_the_task_with_the_outputs(machine, context, task_xcoms):
    trigger = deferred_on(operator(machine), context)
    finish(
        trigger.item_id, "SUCCEEDED", output=json.dumps({"url": "https://smoke", "checks": {"ok": 3}, "Status": "x"})
    )
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskSuccessEvent)
    assert task_xcoms[(trigger.item_id, "return_value")] == {
        "url": "https://smoke",
        "checks": '{"ok": 3}',
        "ExecutionArn": trigger.item_id,
        "StateMachineArn": machine,
        "Status": "SUCCEEDED",  # the action's own output wins over the execution's key
    }


@pytest.mark.parametrize("status", ["FAILED", "TIMED_OUT", "ABORTED"])
def test_trigger_fails_the_task_with_error_and_cause(machine, context, task_xcoms, status):
    trigger = deferred_on(operator(machine), context)
    finish(trigger.item_id, status, error="SmokeTestFailed", cause="2 of 3 checks failed")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert task_xcoms[(trigger.item_id, "failure_reason")] == (
        f"Execution {trigger.item_id} of state machine {machine} {status}: SmokeTestFailed: 2 of 3 checks failed"
    )


def test_trigger_on_kill_stops_when_marked_failed():
    trigger = StepFunctionsExecutionTrigger(execution_arn="arn:x")
    trigger._task_instance = FakeTaskInstance()
    with (
        mock.patch.object(StepFunctionsExecutionTrigger, "_task_state", return_value="failed"),
        mock.patch.object(StepFunctionsHook, "stop") as stop,
    ):
        asyncio.run(trigger.on_kill())
    stop.assert_called_once_with("arn:x", STOP_ERROR, mock.ANY)


# --- validation -------------------------------------------------------------------------------


def spec_errors(configuration):
    spec = {
        "pipeline": {
            "name": "webapp",
            "variables": [{"name": "MachineArn", "default": "x"}],
            "stages": [
                {
                    "name": "Test",
                    "actions": [{"name": "Smoke", "type": "invoke.stepfunctions", "configuration": configuration}],
                }
            ],
        }
    }
    _, errors = parse_spec_text(yaml.safe_dump(spec, sort_keys=False), "x.yaml")
    return [(e.stage, e.action, e.field, e.message) for e in errors]


MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:smoke"


@pytest.mark.parametrize(
    "configuration, field, message",
    [
        ({}, "configuration.state_machine_arn", "missing required key"),
        ({"state_machine_arn": "smoke"}, "configuration.state_machine_arn", "expected arn:aws:states"),
        (
            {"state_machine_arn": MACHINE, "execution_name_prefix": "has space"},
            "configuration.execution_name_prefix",
            "at most 47",
        ),
        ({"state_machine_arn": MACHINE, "input": '{"a": '}, "configuration.input", "inline JSON that does not parse"),
        ({"state_machine_arn": MACHINE, "input": "/etc/passwd"}, "configuration.input", "absolute path"),
        ({"state_machine_arn": MACHINE, "input": 3}, "configuration.input", "expected a string or a mapping"),
    ],
)
def test_bad_configurations_name_stage_action_and_field(configuration, field, message):
    errors = spec_errors(configuration)
    assert any((s, a, f) == ("Test", "Smoke", field) and message in m for s, a, f, m in errors), errors


def test_good_configurations_validate():
    assert spec_errors({"state_machine_arn": MACHINE, "input": {"commit": "#{codepipeline.PipelineExecutionId}"}}) == []
    assert spec_errors({"state_machine_arn": "#{variables.MachineArn}", "execution_name_prefix": "release_1"}) == []

"""invoke.stepfunctions over real HTTP: the operator starts an execution of a seeded state machine, its
trigger waits on the batched poller while the sandbox runs it, and ends the task with the outcome."""

from __future__ import annotations

import asyncio
import json

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.operators.stepfunctions import StepFunctionsOperator
from release_orchestrator.triggers import poller as poller_module


@pytest.fixture(autouse=True)
def fresh_pollers():
    poller_module.reset_pollers()


def start(sandbox_conn, context, machine: str, **kwargs):
    """Run the operator up to its deferral; the trigger it hands over, polling every 0.2 s."""
    op = StepFunctionsOperator(task_id="smoke", state_machine_arn=machine, aws_conn_id=sandbox_conn, **kwargs)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    trigger.poll_interval = 0.2
    return op, trigger


def test_execution_succeeds_and_its_output_becomes_variables(sandbox_conn, task_context, task_xcoms, aws):
    _, trigger = start(
        sandbox_conn, task_context, r.SMOKE_STATE_MACHINE_ARN, execution_name_prefix="release", input={"commit": "abc"}
    )
    assert aws("stepfunctions").describe_execution(executionArn=trigger.item_id)["status"] == "RUNNING"
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskSuccessEvent)
    assert task_xcoms[(trigger.item_id, "return_value")] == {
        "commit": "abc",
        "report": json.dumps({"passed": 3, "failed": 0}),
        "ExecutionArn": trigger.item_id,
        "StateMachineArn": r.SMOKE_STATE_MACHINE_ARN,
        "Status": "SUCCEEDED",
    }
    assert trigger.item_id.split(":")[-1].startswith("release-")


def test_fail_state_fails_the_action_with_its_error_and_cause(sandbox_conn, task_context, task_xcoms):
    _, trigger = start(sandbox_conn, task_context, r.FAILING_STATE_MACHINE_ARN)
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert task_xcoms[(trigger.item_id, "failure_reason")] == (
        f"Execution {trigger.item_id} of state machine {r.FAILING_STATE_MACHINE_ARN} FAILED: "
        f"{r.FAILING_STATE_MACHINE_ERROR}: {r.FAILING_STATE_MACHINE_CAUSE}"
    )


def test_stop_aborts_the_execution(sandbox_conn, task_context, task_xcoms, aws):
    op, trigger = start(sandbox_conn, task_context, r.SMOKE_STATE_MACHINE_ARN)
    op.on_kill()  # the task was killed while its worker ran it
    execution = aws("stepfunctions").describe_execution(executionArn=trigger.item_id)
    assert (execution["status"], execution["error"]) == ("ABORTED", "Airflow.TaskAbandoned")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert " ABORTED: Airflow.TaskAbandoned: " in task_xcoms[(trigger.item_id, "failure_reason")]

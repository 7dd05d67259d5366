"""compute.commands against the sandbox over HTTP: the operator starts the build of its commands and defers, its
trigger (run here with asyncio) ends the task: an exported variable becomes an output, a failing command fails it."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.operators.commands import CommandsOperator
from tests.unit.fakes import FakeTaskInstance, task_context


def run(sandbox_conn, commands, output_variables=None):
    ti = FakeTaskInstance()
    ti.run_id = f"manual__{uuid.uuid4()}"  # a run of its own: the build's idempotency token differs
    context = task_context(ti)
    op = CommandsOperator(
        task_id="commands",
        aws_conn_id=sandbox_conn,
        project_name=r.COMMANDS_PROJECT,
        commands=commands,
        output_variables=output_variables,
        poll_interval=0.2,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    return trigger, asyncio.run(anext(trigger.run()))


def test_exported_variable_becomes_an_output(sandbox_conn, task_xcoms):
    trigger, event = run(sandbox_conn, ["export GREETING=hello", 'export TARGET="$GREETING world"'], ["TARGET"])
    assert isinstance(event, TaskSuccessEvent), task_xcoms
    outputs = task_xcoms[(trigger.build_id, "return_value")]
    assert outputs["TARGET"] == "hello world" and "GREETING" not in outputs
    assert outputs["BuildId"] == trigger.build_id and outputs["BuildStatus"] == "SUCCEEDED"


def test_a_failing_command_fails_the_action(sandbox_conn, task_xcoms):
    trigger, event = run(sandbox_conn, ["echo migrating", "exit 2", "echo never"])
    assert isinstance(event, TaskFailedEvent)
    reason = task_xcoms[(trigger.build_id, "failure_reason")]
    assert "BUILD" in reason and "Error while executing command: exit 2. Reason: exit status 2" in reason

"""compute.commands against the sandbox over HTTP: the operator starts the build of its commands and defers, its
trigger (run here with asyncio) ends the task: an exported variable becomes an output, a failing command fails it,
and killing the task or marking it failed stops the build."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.operators.commands import CommandsOperator
from tests.unit.fakes import FakeTaskInstance, task_context


def start(sandbox_conn, commands, output_variables=None):
    """Run the operator up to its deferral: the operator and the trigger it hands over."""
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
    return op, deferred.value.trigger


def run(sandbox_conn, commands, output_variables=None):
    _, trigger = start(sandbox_conn, commands, output_variables)
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


def test_killing_the_task_stops_the_build_of_its_commands(sandbox_conn, control, aws, task_xcoms):
    control.set_fault("codebuild", r.COMMANDS_PROJECT, "hang")  # the build runs until something stops it
    op, trigger = start(sandbox_conn, ["./migrate"])
    op.on_kill()  # the task was killed while its worker ran it
    build = aws("codebuild").batch_get_builds(ids=[trigger.build_id])["builds"][0]
    assert (build["buildStatus"], build["currentPhase"]) == ("STOPPED", "COMPLETED")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert "STOPPED" in task_xcoms[(trigger.build_id, "failure_reason")]


def test_marking_the_deferred_task_failed_stops_the_build(sandbox_conn, control, aws, monkeypatch):
    control.set_fault("codebuild", r.COMMANDS_PROJECT, "hang")
    _, trigger = start(sandbox_conn, ["./migrate"])
    codebuild = aws("codebuild")
    assert codebuild.batch_get_builds(ids=[trigger.build_id])["builds"][0]["buildStatus"] == "IN_PROGRESS"
    trigger.task_instance = FakeTaskInstance()
    # Airflow cancels the trigger of a task marked failed; the task's state says it was abandoned.
    monkeypatch.setattr(type(trigger), "_task_state", staticmethod(lambda ti: "failed"))
    asyncio.run(trigger.on_kill())
    assert codebuild.batch_get_builds(ids=[trigger.build_id])["builds"][0]["buildStatus"] == "STOPPED"

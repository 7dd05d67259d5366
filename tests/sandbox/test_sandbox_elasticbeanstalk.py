"""deploy.elasticbeanstalk over real HTTP: the operator creates an application version from a bundle in
S3 and updates the seeded environment; its trigger waits on the batched poller while the sandbox updates
it, and ends the task with the outcome."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.operators.elasticbeanstalk import ElasticBeanstalkOperator
from release_orchestrator.triggers import poller as poller_module

TARGET = f"{r.EB_APPLICATION}/{r.EB_ENVIRONMENT}"


@pytest.fixture(autouse=True)
def fresh_pollers():
    poller_module.reset_pollers()


@pytest.fixture
def bundle(aws) -> str:
    key = f"webapp-eb/{uuid.uuid4().hex}.zip"
    aws("s3").put_object(Bucket=r.ARTIFACT_BUCKET, Key=key, Body=b"PK\x05\x06" + b"\x00" * 18)  # an empty zip
    return f"s3://{r.ARTIFACT_BUCKET}/{key}"


def environment(aws) -> dict:
    return aws("elasticbeanstalk").describe_environments(
        ApplicationName=r.EB_APPLICATION, EnvironmentNames=[r.EB_ENVIRONMENT]
    )["Environments"][0]


def start(sandbox_conn, context, source: str):
    """Run the operator up to its deferral; the operator and its trigger, polling every 0.2 s."""
    op = ElasticBeanstalkOperator(
        task_id="deploy",
        application_name=r.EB_APPLICATION,
        environment_name=r.EB_ENVIRONMENT,
        source=source,
        aws_conn_id=sandbox_conn,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    trigger.poll_interval = 0.2
    return op, trigger


def test_deploy_succeeds_with_the_new_version(sandbox_conn, task_context, task_xcoms, aws, bundle):
    op, trigger = start(sandbox_conn, task_context, bundle)
    label = op.version_label(task_context, 0)
    assert environment(aws)["Status"] == "Updating"
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskSuccessEvent)
    outputs = task_xcoms[(trigger.item_id, "return_value")]
    assert (outputs["VersionLabel"], outputs["EnvironmentName"]) == (label, r.EB_ENVIRONMENT)
    assert outputs["EnvironmentUrl"] == f"http://{r.EB_ENVIRONMENT}.{r.REGION}.elasticbeanstalk.com"
    now = environment(aws)
    assert (now["Status"], now["VersionLabel"], now["Health"]) == ("Ready", label, "Green")
    (version,) = aws("elasticbeanstalk").describe_application_versions(
        ApplicationName=r.EB_APPLICATION, VersionLabels=[label]
    )["ApplicationVersions"]
    assert f"s3://{version['SourceBundle']['S3Bucket']}/{version['SourceBundle']['S3Key']}" == bundle


def test_failing_deploy_fails_with_the_event_message(sandbox_conn, task_context, task_xcoms, aws, control, bundle):
    control.set_fault("elasticbeanstalk", TARGET, "fail")
    op, trigger = start(sandbox_conn, task_context, bundle)
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    reason = task_xcoms[(trigger.item_id, "failure_reason")]
    assert reason.startswith(f"Deploying version {op.version_label(task_context, 0)} to environment {TARGET} failed")
    assert "environment Ready, health Red" in reason and "ERROR: Failed to deploy application." in reason


def test_stop_aborts_the_update(sandbox_conn, task_context, task_xcoms, aws, control, bundle):
    control.set_fault("elasticbeanstalk", TARGET, "hang")
    before = environment(aws)["VersionLabel"]
    op, trigger = start(sandbox_conn, task_context, bundle)
    op.on_kill()  # the task was killed while its worker ran it
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    assert f"back on version {before}" in task_xcoms[(trigger.item_id, "failure_reason")]
    now = environment(aws)
    assert (now["Status"], now["VersionLabel"]) == ("Ready", before)

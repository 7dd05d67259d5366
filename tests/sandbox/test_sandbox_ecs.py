"""deploy.ecs against the sandbox over HTTP: the operator starts the rolling deployment and defers, its trigger
(run here with asyncio, as the triggerer runs it) ends the task. Success, the circuit breaker's failure, stop."""

from __future__ import annotations

import asyncio
import uuid
from unittest import mock

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from include.sandbox import resources as r
from release_orchestrator.operators.ecs import EcsDeployOperator
from release_orchestrator.triggers.ecs import EcsDeploymentTrigger
from tests.unit.fakes import FakeTaskInstance, task_context

IMAGE = f"{r.ACCOUNT_ID}.dkr.ecr.{r.REGION}.amazonaws.com/{r.ECR_REPOSITORY}"
SERVICE = f"{r.ECS_CLUSTER}/{r.ECS_ROLLING_SERVICE}"


@pytest.fixture
def ecs(aws):
    return aws("ecs")


def service(ecs) -> dict:
    return ecs.describe_services(cluster=r.ECS_CLUSTER, services=[r.ECS_ROLLING_SERVICE])["services"][0]


def steady(ecs, wait_until) -> dict:
    """The service once its one deployment has COMPLETED."""
    return wait_until(
        lambda: service(ecs),
        lambda s: [d["rolloutState"] for d in s["deployments"]] == ["COMPLETED"],
    )


def start(sandbox_conn, tag: str) -> EcsDeploymentTrigger:
    """Run the operator until it defers; its trigger, polling often."""
    ti = FakeTaskInstance()
    ti.run_id = f"manual__{uuid.uuid4()}"
    context = task_context(ti)
    op = EcsDeployOperator(
        task_id="deploy",
        aws_conn_id=sandbox_conn,
        cluster_name=r.ECS_CLUSTER,
        service_name=r.ECS_ROLLING_SERVICE,
        image_definitions=[{"name": r.ECS_ROLLING_CONTAINER, "imageUri": f"{IMAGE}:{tag}"}],
        poll_interval=0.2,
    )
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value.trigger


def image_of(ecs, task_definition: str) -> str:
    [container] = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]["containerDefinitions"]
    return container["image"]


def test_deploys_and_the_service_runs_the_new_image(ecs, sandbox_conn, task_xcoms, wait_until):
    steady(ecs, wait_until)
    trigger = start(sandbox_conn, "v2")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskSuccessEvent), task_xcoms
    outputs = task_xcoms[(trigger.item_id, "return_value")]
    now = service(ecs)
    assert (outputs["ClusterName"], outputs["ServiceName"]) == (r.ECS_CLUSTER, r.ECS_ROLLING_SERVICE)
    assert outputs["TaskDefinitionArn"] == now["taskDefinition"] and image_of(ecs, now["taskDefinition"]).endswith(
        ":v2"
    )
    [deployment] = now["deployments"]
    assert (deployment["id"], deployment["rolloutState"]) == (outputs["DeploymentId"], "COMPLETED")
    assert deployment["runningCount"] == deployment["desiredCount"] == 2


def test_circuit_breaker_failure_fails_the_action_with_the_reason(ecs, control, sandbox_conn, task_xcoms, wait_until):
    before = steady(ecs, wait_until)["taskDefinition"]
    control.set_fault("ecs", SERVICE, "fail")
    trigger = start(sandbox_conn, "broken")
    event = asyncio.run(anext(trigger.run()))
    assert isinstance(event, TaskFailedEvent)
    reason = task_xcoms[(trigger.item_id, "failure_reason")]
    assert f"of service {r.ECS_ROLLING_SERVICE} in cluster {r.ECS_CLUSTER} FAILED" in reason
    assert "ECS deployment circuit breaker: tasks failed to start." in reason
    assert "the deployment circuit breaker rolls the service back to its last completed deployment" in reason
    assert f"(task definition {before})" in reason
    rollback = service(ecs)["deployments"][0]  # ECS rolls it back
    assert (rollback["status"], rollback["taskDefinition"]) == ("PRIMARY", before)


def test_stop_rolls_the_service_back(ecs, control, sandbox_conn, task_xcoms):
    before = service(ecs)["taskDefinition"]
    control.set_fault("ecs", SERVICE, "hang")
    trigger = start(sandbox_conn, "stuck")
    trigger._task_instance = FakeTaskInstance()

    async def wait_then_mark_failed():
        waiting = asyncio.ensure_future(anext(trigger.run()))
        deadline = asyncio.get_running_loop().time() + 10
        while trigger.poller().stats["api_calls"] < 2:  # looked at twice: it stays IN_PROGRESS
            assert asyncio.get_running_loop().time() < deadline and not waiting.done()
            await asyncio.sleep(0.05)
        assert not waiting.done()
        with mock.patch.object(EcsDeploymentTrigger, "_task_state", return_value="failed"):
            await trigger.on_kill()
        waiting.cancel()

    asyncio.run(wait_then_mark_failed())
    rollback = service(ecs)["deployments"][0]  # UpdateService back to what it ran before
    assert (rollback["status"], rollback["taskDefinition"]) == ("PRIMARY", before)

"""deploy.ecs: hook, operator, trigger and spec rules against moto.

moto's UpdateService starts no deployment (its deployments never change), so a fixture makes it start one
as ECS does: a new PRIMARY deployment of the new task definition, IN_PROGRESS; tests move its rolloutState.
"""

from __future__ import annotations

import asyncio
import json
import time
from unittest import mock

import boto3
import pytest
import yaml
from airflow.providers.common.compat.sdk import AirflowException, TaskDeferred
from botocore.client import BaseClient
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends

from release_orchestrator.hooks.ecs import EcsDeployHook, deployment_item_id
from release_orchestrator.operators.ecs import EcsDeployOperator
from release_orchestrator.pipeline.files import SpecFileError
from release_orchestrator.pipeline.loader import parse_spec_text
from release_orchestrator.triggers import poller as poller_module
from release_orchestrator.triggers.ecs import EcsDeploymentTrigger
from tests.unit.fakes import FakeStateStore, FakeTaskInstance, task_context

REGION = "us-east-1"
ACCOUNT = "123456789012"
CLUSTER, SERVICE = "webapp", "webapp-worker"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/webapp"


class FakeTI(FakeTaskInstance):
    task_id = "Deploy.Worker"


@pytest.fixture
def aws(moto_aws, monkeypatch):
    """moto, with an UpdateService that starts a deployment; a fresh poller registry."""
    poller_module.reset_pollers()
    update = EC2ContainerServiceBackend.update_service

    def update_and_deploy(self, properties):
        given = properties.get("task_definition")
        service = update(self, properties)
        if given:
            arn = self.describe_task_definition(given).arn
            service.task_definition = arn
            for deployment in service.deployments:
                deployment["status"] = "ACTIVE"
            new_id = f"ecs-svc/{len(service.deployments) + 1000}"
            service.deployments.insert(
                0,
                {"id": new_id, "status": "PRIMARY", "taskDefinition": arn, "desiredCount": 2, "failedTasks": 0}
                | {"rolloutState": "IN_PROGRESS", "rolloutStateReason": f"ECS deployment {new_id} in progress."},
            )
        return service

    monkeypatch.setattr(EC2ContainerServiceBackend, "update_service", update_and_deploy)


def register(family="webapp-worker", containers=("worker", "sidecar")):
    ecs = boto3.client("ecs", region_name=REGION)
    definitions = [{"name": name, "image": f"{IMAGE}:{name}-1", "memory": 256} for name in containers]
    return ecs.register_task_definition(
        family=family,
        containerDefinitions=definitions,
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/release-service-role",
    )["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def service(aws):
    """An ECS-controlled service on webapp-worker:1; returns that task definition's ARN."""
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName=CLUSTER)
    arn = register()
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn, desiredCount=2)
    return arn


@pytest.fixture
def store():
    return FakeStateStore()


@pytest.fixture
def context(store):
    return task_context(FakeTI(), store)


def operator(**kwargs):
    kwargs.setdefault("task_id", "deploy")
    kwargs.setdefault("cluster_name", CLUSTER)
    kwargs.setdefault("service_name", SERVICE)
    kwargs.setdefault("image_definitions", [{"name": "worker", "imageUri": f"{IMAGE}:v2"}])
    return EcsDeployOperator(**kwargs)


def deferred_on(op, context) -> EcsDeploymentTrigger:
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    return deferred.value.trigger


def moto_service():
    return ecs_backends[ACCOUNT][REGION].services[f"{CLUSTER}:{SERVICE}"]


def set_rollout(state, reason=""):
    deployment = moto_service().deployments[0]
    deployment["rolloutState"] = state
    deployment["rolloutStateReason"] = reason


def revisions():
    ecs = boto3.client("ecs", region_name=REGION)
    return ecs.list_task_definitions(familyPrefix="webapp-worker")["taskDefinitionArns"]


def describe(task_definition):
    return boto3.client("ecs", region_name=REGION).describe_task_definition(taskDefinition=task_definition)[
        "taskDefinition"
    ]


# --- operator ---------------------------------------------------------------------------------


def test_start_registers_a_revision_with_the_new_image_and_updates_the_service(service, context, store):
    before = time.time()
    trigger = deferred_on(operator(deployment_timeout="30"), context)
    new_arn = moto_service().task_definition
    assert new_arn.endswith("webapp-worker:2")
    images = {c["name"]: c["image"] for c in describe(new_arn)["containerDefinitions"]}
    assert images == {"worker": f"{IMAGE}:v2", "sidecar": f"{IMAGE}:sidecar-1"}  # only the named one changes
    assert describe(new_arn)["executionRoleArn"].endswith("role/release-service-role")
    deployment_id = moto_service().deployments[0]["id"]
    assert trigger.item_id == deployment_item_id(CLUSTER, SERVICE, deployment_id)
    # The record says what to reattach to and what a stop rolls back to; the deadline is the timeout's.
    entry = store.data["ecs_deployment"]
    assert (entry["id"], entry["previous"], entry["taskDefinition"]) == (trigger.item_id, service, new_arn)
    assert before + 30 * 60 <= trigger.deadline == entry["deadline"] <= time.time() + 30 * 60
    assert trigger.result["previous_task_definition"] == service


def test_unknown_container_is_an_error_naming_it_and_the_task_definition(service, context):
    op = operator(image_definitions=[{"name": "web", "imageUri": f"{IMAGE}:v2"}])
    with pytest.raises(ValueError, match=r"container 'web', which task definition webapp-worker:1 does not have"):
        op.execute(context)
    assert len(revisions()) == 1 and moto_service().task_definition == service  # nothing changed
    with pytest.raises(ValueError, match=r"image_definitions\[0\]: expected \{name, imageUri\}"):
        operator(image_definitions=[{"name": "worker"}]).execute(context)


def test_code_deploy_controlled_service_points_to_deploy_codedeploy(aws, context):
    ecs = boto3.client("ecs", region_name=REGION)
    ecs.create_cluster(clusterName=CLUSTER)
    arn = register()
    ecs.create_service(
        cluster=CLUSTER,
        serviceName=SERVICE,
        taskDefinition=arn,
        desiredCount=1,
        deploymentController={"type": "CODE_DEPLOY"},
    )
    with pytest.raises(
        AirflowException, match="deployment controller CODE_DEPLOY.*use deploy.codedeploy with platform ecs"
    ):
        operator().execute(context)


def test_missing_service_names_the_call_and_the_service(aws, context):
    boto3.client("ecs", region_name=REGION).create_cluster(clusterName=CLUSTER)
    with pytest.raises(
        LookupError, match=f"DescribeServices on service '{SERVICE}' in cluster '{CLUSTER}' failed: MISSING"
    ):
        operator().execute(context)


def test_image_definitions_from_a_file_in_the_spec_folder(service, context, tmp_path):
    (tmp_path / "imagedefinitions.json").write_text(json.dumps([{"name": "sidecar", "imageUri": f"{IMAGE}:s2"}]))
    deferred_on(operator(image_definitions="imagedefinitions.json", spec_folder=str(tmp_path)), context)
    images = {c["name"]: c["image"] for c in describe(moto_service().task_definition)["containerDefinitions"]}
    assert images == {"worker": f"{IMAGE}:worker-1", "sidecar": f"{IMAGE}:s2"}
    outside = tmp_path.parent / "elsewhere.json"
    outside.write_text("[]")
    with pytest.raises(SpecFileError, match="image_definitions: .* outside the spec's folder"):
        operator(image_definitions=str(outside), spec_folder=str(tmp_path)).execute(context)


def test_retry_reattaches_to_the_deployment_in_progress(service, context, store):
    first = deferred_on(operator(), context)
    second = deferred_on(operator(), context)
    assert second.item_id == first.item_id and second.deadline == first.deadline
    # A try that crashed right after UpdateService (recorded: the revision, no deployment yet) finds it by that.
    store.data["ecs_deployment"]["id"] = ""
    third = deferred_on(operator(), context)
    assert third.item_id == first.item_id and store.data["ecs_deployment"]["id"] == first.item_id
    assert len(revisions()) == 2  # no second revision, no second UpdateService


def test_a_revision_registered_by_a_try_that_crashed_before_update_service_is_deployed(service, context, store):
    registered = register()  # webapp-worker:2, as the crashed try registered it
    store.set("ecs_deployment", {"id": "", "generation": 0, "reported": False, "taskDefinition": registered})
    trigger = deferred_on(operator(), context)
    assert len(revisions()) == 2 and moto_service().task_definition == registered
    assert trigger.item_id.endswith(moto_service().deployments[0]["id"])


def test_a_finished_deployment_is_not_reattached(service, context):
    first = deferred_on(operator(), context)
    set_rollout("COMPLETED")
    second = deferred_on(operator(image_definitions=[{"name": "worker", "imageUri": f"{IMAGE}:v3"}]), context)
    assert second.item_id != first.item_id and len(revisions()) == 3


# --- hook and trigger -------------------------------------------------------------------------


def test_deployments_are_read_ten_services_of_one_cluster_per_call(aws, monkeypatch):
    ecs = boto3.client("ecs", region_name=REGION)
    arn = register()
    items = []
    for cluster, count in (("a", 11), ("b", 1)):
        ecs.create_cluster(clusterName=cluster)
        for i in range(count):
            created = ecs.create_service(cluster=cluster, serviceName=f"s{i}", taskDefinition=arn, desiredCount=1)
            items.append(deployment_item_id(cluster, f"s{i}", created["service"]["deployments"][0]["id"]))
    items.append(deployment_item_id("a", "s0", "ecs-svc/gone"))
    calls = []
    send = BaseClient._make_api_call

    def recording(client, operation, params):
        if operation == "DescribeServices":
            calls.append((params["cluster"], len(params["services"])))
        return send(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)
    found = EcsDeployHook().deployments(items)
    assert sorted(calls) == [("a", 1), ("a", 10), ("b", 1)]
    assert [i["rolloutState"] for i in found] == ["IN_PROGRESS"] * 12 + ["REPLACED"]


def run_trigger(trigger):
    trigger.poll_interval = 0.01
    return asyncio.run(anext(trigger.run()))


def test_trigger_ends_the_task_with_the_outputs(service, context, task_xcoms):
    from airflow.triggers.base import TaskSuccessEvent

    trigger = deferred_on(operator(), context)
    set_rollout("COMPLETED")
    assert isinstance(run_trigger(trigger), TaskSuccessEvent)
    outputs = task_xcoms[(trigger.item_id, "return_value")]
    assert outputs == {
        "ClusterName": CLUSTER,
        "ServiceName": SERVICE,
        "TaskDefinitionArn": moto_service().task_definition,
        "DeploymentId": moto_service().deployments[0]["id"],
        "ConsoleUrl": f"https://console.aws.amazon.com/ecs/v2/clusters/{CLUSTER}/services/{SERVICE}/deployments"
        f"?region={REGION}",
    }


def test_trigger_fails_the_task_with_the_circuit_breakers_reason(service, context, task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    trigger = deferred_on(operator(), context)
    set_rollout("FAILED", "ECS deployment circuit breaker: tasks failed to start.")
    assert isinstance(run_trigger(trigger), TaskFailedEvent)
    reason = task_xcoms[(trigger.item_id, "failure_reason")]
    deployment_id = moto_service().deployments[0]["id"]
    assert reason.startswith(f"Deployment {deployment_id} of service {SERVICE} in cluster {CLUSTER} FAILED; ")
    assert "ECS deployment circuit breaker: tasks failed to start." in reason
    assert "no rollback" in reason  # moto's service has no circuit breaker configuration


def test_trigger_past_the_deployment_timeout_rolls_back_and_fails(service, context, task_xcoms):
    from airflow.triggers.base import TaskFailedEvent

    trigger = deferred_on(operator(), context)
    trigger.deadline = time.time() + 0.2
    assert isinstance(run_trigger(trigger), TaskFailedEvent)
    reason = task_xcoms[(trigger.item_id, "failure_reason")]
    assert "did not complete in time (deployment_timeout); rolled back to task definition" in reason
    assert moto_service().task_definition == service


def test_a_kill_or_mark_failed_rolls_the_service_back(service, context):
    op = operator()
    trigger = deferred_on(op, context)
    trigger._task_instance = FakeTI()
    with mock.patch.object(EcsDeploymentTrigger, "_task_state", return_value="failed"):
        asyncio.run(trigger.on_kill())  # marked failed while deferred: in the triggerer
    assert moto_service().task_definition == service
    # A new try deploys anew: its deployment, replaced by the rollback, is not reattached to ...
    again = deferred_on(op, context)
    assert again.item_id != trigger.item_id and len(revisions()) == 3
    op.on_kill()  # ... and this one is killed in the worker
    assert moto_service().task_definition == service


def test_trigger_serialize_round_trips():
    trigger = EcsDeploymentTrigger(deployment="c|s|ecs-svc/1", region_name="eu-west-1", deadline=12.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "release_orchestrator.triggers.ecs.EcsDeploymentTrigger"
    assert EcsDeploymentTrigger(**kwargs).serialize() == (classpath, kwargs)


def test_a_replaced_deployment_fails_naming_the_one_now_running(service, context, task_xcoms):
    trigger = deferred_on(operator(), context)
    moto_service().deployments[0]["id"] = "ecs-svc/someone-else"
    run_trigger(trigger)
    assert "was replaced before it finished" in task_xcoms[(trigger.item_id, "failure_reason")]
    assert "ecs-svc/someone-else" in task_xcoms[(trigger.item_id, "failure_reason")]


# --- spec rules -------------------------------------------------------------------------------


def spec_errors(configuration: dict, action_type: str = "deploy.ecs"):
    spec = {
        "pipeline": {
            "name": "p",
            "stages": [
                {"name": "Deploy", "actions": [{"name": "Worker", "type": action_type, "configuration": configuration}]}
            ],
        }
    }
    _, errors = parse_spec_text(yaml.safe_dump(spec), "p.yaml")
    return {(e.stage, e.action, e.field): e.message for e in errors}


def test_spec_rules_name_the_stage_action_and_field():
    errors = spec_errors(
        {
            "cluster_name": CLUSTER,
            "service_name": SERVICE,
            "image_definitions": [{"name": "worker", "image": "x"}, {"name": "worker", "imageUri": "y"}],
            "deployment_timeout": 90,
        }
    )
    assert errors[("Deploy", "Worker", "configuration.image_definitions[0].image")].startswith("unknown key")
    assert errors[("Deploy", "Worker", "configuration.image_definitions[0].imageUri")] == "missing required key"
    assert "named twice" in errors[("Deploy", "Worker", "configuration.image_definitions[1].name")]
    assert ("Deploy", "Worker", "configuration.deployment_timeout") in errors
    ok = {
        "cluster_name": "c",
        "service_name": "s",
        "image_definitions": [{"name": "w", "imageUri": "i:#{codepipeline.PipelineExecutionId}"}],
    }
    assert spec_errors(ok) == {}


def test_failure_says_whether_the_circuit_breaker_rolls_back():
    from release_orchestrator.results.ecs import EcsDeploymentResult

    result = EcsDeploymentResult(cluster_name=CLUSTER, service_name=SERVICE)
    failed = {
        "id": "ecs-svc/1",
        "rolloutState": "FAILED",
        "rolloutStateReason": "tasks failed to start.",
        "failedTasks": 2,
    }
    item = {
        "rolloutState": "FAILED",
        "deployment": failed,
        "primary": {"id": "ecs-svc/2", "taskDefinition": "td:1"},
        "service": {"deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": True, "rollback": True}}},
    }
    assert result.failure_message(item, "ecs-svc/1") == (
        f"Deployment ecs-svc/1 of service {SERVICE} in cluster {CLUSTER} FAILED; tasks failed to start.; "
        "2 tasks failed; the deployment circuit breaker rolls the service back to its last completed deployment "
        "(ECS's own): now deployment ecs-svc/2 (task definition td:1)"
    )
    item["primary"] = failed  # the rollback has not started yet
    assert result.failure_message(item, "ecs-svc/1").endswith("to its last completed deployment (ECS's own)")

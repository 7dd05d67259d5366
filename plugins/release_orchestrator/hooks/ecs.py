"""ECS: the calls of a rolling deployment (deploy.ecs), on the amazon provider's EcsHook."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from airflow.providers.amazon.aws.hooks.ecs import EcsHook

from release_orchestrator.hooks.base import aws_call

# A deployment's rolloutState. FAILED is set by the deployment circuit breaker; without it a failing
# deployment stays IN_PROGRESS (the action's deployment_timeout ends the wait then).
ROLLOUT_COMPLETED = "COMPLETED"
ROLLOUT_FAILED = "FAILED"
ROLLOUT_IN_PROGRESS = "IN_PROGRESS"
# Not an ECS state: another deployment replaced this one before it finished (it is no longer the service's
# PRIMARY deployment, or no longer listed at all).
ROLLOUT_REPLACED = "REPLACED"
ROLLOUT_TERMINAL_STATES = frozenset({ROLLOUT_COMPLETED, ROLLOUT_FAILED, ROLLOUT_REPLACED})

# DescribeServices takes at most 10 services, all of one cluster (API reference).
DESCRIBE_SERVICES_MAX = 10

# Fields of DescribeTaskDefinition's answer that RegisterTaskDefinition does not take.
TASK_DEFINITION_READ_ONLY = (
    "taskDefinitionArn",
    "revision",
    "status",
    "requiresAttributes",
    "compatibilities",
    "registeredAt",
    "registeredBy",
    "deregisteredAt",
)

ITEM_SEPARATOR = "|"


def deployment_item_id(cluster: str, service: str, deployment_id: str) -> str:
    """The id the shared poller waits on: a deployment is only found through its cluster and service."""
    return ITEM_SEPARATOR.join((cluster, service, deployment_id))


def split_item_id(item_id: str) -> tuple[str, str, str]:
    cluster, service, deployment_id = item_id.split(ITEM_SEPARATOR, 2)
    return cluster, service, deployment_id


def short_name(name_or_arn: str) -> str:
    """A cluster's or service's name from its name or ARN (`.../cluster/service` or `.../service`)."""
    return str(name_or_arn).rsplit("/", 1)[-1]


class EcsDeployHook(EcsHook):
    """The provider's EcsHook with the calls of a rolling service deployment."""

    def describe_service(self, cluster: str, service: str) -> dict[str, Any]:
        """The service; LookupError naming it when ECS does not know it."""
        resource = f"service '{service}' in cluster '{cluster}'"
        with aws_call("DescribeServices", resource):
            answer = self.conn.describe_services(cluster=cluster, services=[service])
        if not answer.get("services"):
            reason = ", ".join(f.get("reason", "?") for f in answer.get("failures", [])) or "not found"
            raise LookupError(f"DescribeServices on {resource} failed: {reason}")
        return answer["services"][0]

    def describe_task_definition(self, task_definition: str) -> dict[str, Any]:
        with aws_call("DescribeTaskDefinition", f"task definition '{task_definition}'"):
            return self.conn.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]

    def register_task_definition(self, task_definition: dict[str, Any]) -> str:
        """Register a revision from a DescribeTaskDefinition answer (read-only fields dropped); its ARN."""
        arguments = {k: v for k, v in task_definition.items() if k not in TASK_DEFINITION_READ_ONLY}
        with aws_call("RegisterTaskDefinition", f"family '{arguments.get('family')}'"):
            return self.conn.register_task_definition(**arguments)["taskDefinition"]["taskDefinitionArn"]

    def update_service(self, cluster: str, service: str, task_definition: str) -> dict[str, Any]:
        with aws_call("UpdateService", f"service '{service}' in cluster '{cluster}'"):
            return self.conn.update_service(cluster=cluster, service=service, taskDefinition=task_definition)["service"]

    def deployments(self, item_ids: list[str]) -> list[dict[str, Any]]:
        """The deployments of ``item_ids`` (see deployment_item_id), with DescribeServices calls of up to 10
        services per cluster. Each item: ``id``, ``rolloutState`` (REPLACED when another deployment replaced
        it unfinished), ``deployment`` and ``service`` (without its deployments). A service ECS does not
        know gives no item."""
        by_cluster: dict[str, set[str]] = defaultdict(set)
        for item_id in item_ids:
            cluster, service, _ = split_item_id(item_id)
            by_cluster[cluster].add(service)
        services: dict[tuple[str, str], dict[str, Any]] = {}
        for cluster, names in by_cluster.items():
            names = sorted(names)
            for start in range(0, len(names), DESCRIBE_SERVICES_MAX):
                chunk = names[start : start + DESCRIBE_SERVICES_MAX]
                with aws_call("DescribeServices", f"services {', '.join(chunk)} in cluster '{cluster}'"):
                    answer = self.conn.describe_services(cluster=cluster, services=chunk)
                for found in answer.get("services", []):
                    services[(cluster, found["serviceName"])] = found
        items = []
        for item_id in item_ids:
            cluster, service_name, deployment_id = split_item_id(item_id)
            service = services.get((cluster, short_name(service_name)))
            if service is None:
                continue
            deployments = service.get("deployments") or []
            deployment = next((d for d in deployments if d.get("id") == deployment_id), None)
            state = deployment.get("rolloutState") if deployment else ROLLOUT_REPLACED
            if state == ROLLOUT_IN_PROGRESS and deployment.get("status") != "PRIMARY":
                state = ROLLOUT_REPLACED  # ECS drains it: it will never complete
            items.append(
                {
                    "id": item_id,
                    "rolloutState": state,
                    "deployment": deployment or {"id": deployment_id},
                    "primary": next((d for d in deployments if d.get("status") == "PRIMARY"), None),
                    "service": {k: v for k, v in service.items() if k not in ("deployments", "events", "tags")},
                    "events": (service.get("events") or [])[:5],
                }
            )
        return items

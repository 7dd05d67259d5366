"""What a finished ECS rolling deployment means for ``deploy.ecs``: its outputs, or why it failed.

`EcsDeploymentResult` is plain data (it travels in the trigger's kwargs). It also knows how to roll
the service back to the task definition it ran before the action (stop on kill, deployment timeout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from release_orchestrator.hooks.ecs import (
    ROLLOUT_COMPLETED,
    ROLLOUT_REPLACED,
    EcsDeployHook,
    split_item_id,
)
from release_orchestrator.links import EcsServiceDeploymentsLink
from release_orchestrator.results import ActionFailed, AwsResult


@dataclass
class EcsDeploymentResult(AwsResult):
    """Outputs or failure of a deployment of ``service_name`` in ``cluster_name``; ``previous_task_definition``
    is what the service ran before, where a stop rolls it back to."""

    cluster_name: str
    service_name: str
    previous_task_definition: str | None = None

    @cached_property
    def hook(self) -> EcsDeployHook:
        return self.shared_hook(EcsDeployHook)

    @property
    def service(self) -> str:
        return f"service {self.service_name} in cluster {self.cluster_name}"

    def console_url(self) -> str:
        return EcsServiceDeploymentsLink().format_link(
            region_name=self.hook.conn_region_name,
            aws_domain=EcsServiceDeploymentsLink.get_aws_domain(self.hook.conn_partition),
            cluster_name=self.cluster_name,
            service_name=self.service_name,
        )

    def conclude(self, item: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed unless the deployment COMPLETED."""
        deployment = item.get("deployment") or {}
        deployment_id = deployment.get("id") or split_item_id(item["id"])[2]
        if item.get("rolloutState") != ROLLOUT_COMPLETED:
            raise ActionFailed(self.failure_message(item, deployment_id))
        log.info("Deployment %s of %s completed", deployment_id, self.service)
        return {
            "ClusterName": self.cluster_name,
            "ServiceName": self.service_name,
            "TaskDefinitionArn": deployment.get("taskDefinition", ""),
            "DeploymentId": deployment_id,
            "ConsoleUrl": self.console_url(),
        }

    def failure_message(self, item: dict[str, Any], deployment_id: str) -> str:
        state = item.get("rolloutState")
        primary = item.get("primary") or {}
        now_on = f"deployment {primary.get('id')} (task definition {primary.get('taskDefinition')})"
        if state == ROLLOUT_REPLACED:
            return (
                f"Deployment {deployment_id} of {self.service} was replaced before it finished (the service "
                f"was updated meanwhile); the service is on {now_on}"
            )
        deployment = item.get("deployment") or {}
        parts = [f"Deployment {deployment_id} of {self.service} {state}"]
        if deployment.get("rolloutStateReason"):
            parts.append(deployment["rolloutStateReason"])
        if deployment.get("failedTasks"):
            parts.append(f"{deployment['failedTasks']} tasks failed")
        breaker = (item.get("service", {}).get("deploymentConfiguration") or {}).get("deploymentCircuitBreaker") or {}
        if breaker.get("rollback"):
            note = "the deployment circuit breaker rolls the service back to its last completed deployment (ECS's own)"
            if primary.get("id") not in (None, deployment_id):
                note += f": now {now_on}"
            parts.append(note)
        else:
            parts.append("no rollback (the service's circuit breaker does not roll back)")
        return "; ".join(parts)

    def roll_back(self, log: logging.Logger | Any) -> str:
        """Update the service back to the task definition it ran before the action; what was done."""
        previous = self.previous_task_definition
        if not previous:
            return "the task definition it ran before is not known: not rolled back"
        log.info("Rolling %s back to task definition %s", self.service, previous)
        service = self.hook.update_service(self.cluster_name, self.service_name, previous)
        new = next((d for d in service.get("deployments") or [] if d.get("status") == "PRIMARY"), {})
        return f"rolled back to task definition {previous} (deployment {new.get('id', '?')})"

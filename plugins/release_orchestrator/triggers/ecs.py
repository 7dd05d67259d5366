"""Deferred wait for an ECS rolling deployment."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from release_orchestrator.hooks.ecs import (
    DESCRIBE_SERVICES_MAX,
    ROLLOUT_COMPLETED,
    ROLLOUT_TERMINAL_STATES,
    EcsDeployHook,
    split_item_id,
)
from release_orchestrator.results import ActionFailed
from release_orchestrator.results.ecs import EcsDeploymentResult
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

ECS_DEPLOYMENTS = BatchSpec(
    service="ecs",
    batch_call="DescribeServices",
    id_key="id",
    status_key="rolloutState",
    max_batch=DESCRIBE_SERVICES_MAX,  # the hook splits by cluster, so a batch may take a call per cluster
    terminal_states=ROLLOUT_TERMINAL_STATES,
)


class EcsDeploymentTrigger(BatchPolledTrigger):
    """Ends the task once the service's deployment has COMPLETED (outputs) or FAILED (the reason); past
    ``deadline`` (epoch seconds: the action's deployment_timeout) it rolls the service back and fails.

    Without ``result`` (an earlier version's trigger) it fires an event to resume the task instead.

    :param deployment: the deployment, as ``cluster|service|deployment id`` (hooks.ecs.deployment_item_id).
    :param deadline: when the deployment has taken too long (epoch seconds), or None.
    :param result: the action's ``EcsDeploymentResult`` as a dict.
    """

    spec = ECS_DEPLOYMENTS
    hook_class = EcsDeployHook
    id_field = "deployment"
    result_class = EcsDeploymentResult

    @staticmethod
    def batch_get(hook: EcsDeployHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.deployments(ids)

    def __init__(
        self,
        deployment: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 15,
        deadline: float | None = None,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        result: dict[str, Any] | None = None,
        failure_notices: list[dict[str, Any]] | None = None,
        success_notices: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            item_id=deployment,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            verify=verify,
            botocore_config=botocore_config,
            result=result,
            failure_notices=failure_notices,
            success_notices=success_notices,
        )
        self.deadline = deadline

    def extra_kwargs(self) -> dict[str, Any]:
        return {"deadline": self.deadline}

    async def wait_until_done(self) -> dict[str, Any]:
        waiting = super().wait_until_done()
        if self.deadline is None:
            return await waiting
        try:
            return await asyncio.wait_for(waiting, timeout=max(0.0, self.deadline - time.time()))
        except asyncio.TimeoutError:
            pass
        cluster, service, deployment_id = split_item_id(self.item_id)
        message = f"Deployment {deployment_id} of service {service} in cluster {cluster} did not complete in time"
        if self.result is not None:
            result = EcsDeploymentResult.from_dict(self.result)
            result.hooks = self.hooks()
            try:
                done = await asyncio.to_thread(result.roll_back, self.log)
            except Exception as err:  # noqa: BLE001 - the action fails all the same; say why nothing was undone
                done = f"rolling back failed: {err}"
            message += f" (deployment_timeout); {done}"
        raise ActionFailed(message)

    def outcome(self, status: str | None) -> str:
        return "success" if status == ROLLOUT_COMPLETED else "failed"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        deployment = item.get("deployment") or {}
        keep = ("id", "status", "taskDefinition", "rolloutState", "rolloutStateReason", "failedTasks")
        return {
            "rolloutState": item.get("rolloutState"),
            "deployment": {k: deployment[k] for k in keep if k in deployment},
        }

    def stop(self) -> None:
        if self.result is None:
            self.log.warning("No record of the task definition the service ran before: not rolling it back")
            return
        self.log.info("Stopping the deployment: %s", EcsDeploymentResult.from_dict(self.result).roll_back(self.log))

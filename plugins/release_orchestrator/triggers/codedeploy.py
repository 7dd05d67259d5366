"""Deferred wait for a CodeDeploy deployment."""

from __future__ import annotations

import asyncio
from typing import Any

from release_orchestrator.hooks.codedeploy import (
    BATCH_GET_DEPLOYMENTS_MAX,
    DEPLOYMENT_READY,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_TERMINAL_STATES,
    CodeDeployHook,
)
from release_orchestrator.results.codedeploy import DeploymentResult, continue_if_ready
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

CODEDEPLOY_DEPLOYMENTS = BatchSpec(
    service="codedeploy",
    batch_call="BatchGetDeployments",
    id_key="deploymentId",
    status_key="status",
    max_batch=BATCH_GET_DEPLOYMENTS_MAX,
    terminal_states=DEPLOYMENT_TERMINAL_STATES,
)


class CodeDeployDeploymentTrigger(BatchPolledTrigger):
    """Ends the task once the deployment has finished (outputs, or failed with the reason), continuing
    it at Ready on the way when ``continue_at_ready``.

    Without ``result`` (an earlier version's trigger) it fires an event to resume the task instead:
    ``status`` ("success", "ready" when ``stop_at_ready``, "failed", or "error" when waiting itself
    failed), ``deployment_id``, ``item_status`` (the deployment's status) and ``item``.

    :param deployment_id: the deployment to wait for.
    :param continue_at_ready: ContinueDeployment when it waits at Ready (``on_ready: continue``).
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the deployment's region (default: the connection's).
    :param poll_interval: seconds between two looks at the deployment.
    :param result: the action's ``DeploymentResult`` as a dict: how the finished deployment becomes outputs.
    :param stop_at_ready: an earlier version's trigger: fire at Ready so the worker continues it.
    """

    spec = CODEDEPLOY_DEPLOYMENTS
    hook_class = CodeDeployHook
    id_field = "deployment_id"
    result_class = DeploymentResult

    @staticmethod
    def batch_get(hook: CodeDeployHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.batch_get_deployments(ids)

    def __init__(
        self,
        deployment_id: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 15,
        continue_at_ready: bool = False,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        result: dict[str, Any] | None = None,
        failure_notices: list[dict[str, Any]] | None = None,
        success_notices: list[dict[str, Any]] | None = None,
        stop_at_ready: bool = False,
    ) -> None:
        super().__init__(
            item_id=deployment_id,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            verify=verify,
            botocore_config=botocore_config,
            result=result,
            failure_notices=failure_notices,
            success_notices=success_notices,
        )
        self.continue_at_ready = bool(continue_at_ready)
        self.stop_at_ready = bool(stop_at_ready)

    @property
    def deployment_id(self) -> str:
        return self.item_id

    def extra_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"continue_at_ready": self.continue_at_ready}
        if self.stop_at_ready:
            kwargs["stop_at_ready"] = True
        return kwargs

    def stop_states(self) -> frozenset[str]:
        return frozenset({DEPLOYMENT_READY}) if self.stop_at_ready else frozenset()

    async def wait_until_done(self) -> dict[str, Any]:
        poller = self.poller()
        if self.continue_at_ready:
            deployment = await poller.wait(self.item_id, interval=self.poll_interval, stop_states={DEPLOYMENT_READY})
            if deployment["status"] == DEPLOYMENT_READY:
                hook = self.hook()
                deployment = await asyncio.to_thread(continue_if_ready, hook, deployment, self.log)
            if deployment["status"] in DEPLOYMENT_TERMINAL_STATES:
                return deployment
        return await poller.wait(self.item_id, interval=self.poll_interval)

    def outcome(self, status: str | None) -> str:
        if status == DEPLOYMENT_SUCCEEDED:
            return "success"
        if status == DEPLOYMENT_READY:
            return "ready"
        return "failed"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        keep = (
            "deploymentId",
            "applicationName",
            "deploymentGroupName",
            "status",
            "errorInformation",
            "rollbackInfo",
            "deploymentOverview",
            "computePlatform",
        )
        return {key: item[key] for key in keep if key in item}

    def stop(self) -> None:
        self.hook().stop_deployment(self.deployment_id, auto_rollback=True)

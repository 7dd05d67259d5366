"""Deferred wait for a CodeDeploy deployment."""

from __future__ import annotations

from typing import Any

from release_orchestrator.hooks.codedeploy import (
    BATCH_GET_DEPLOYMENTS_MAX,
    DEPLOYMENT_READY,
    DEPLOYMENT_SUCCEEDED,
    DEPLOYMENT_TERMINAL_STATES,
    CodeDeployHook,
)
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

CODEDEPLOY_DEPLOYMENTS = BatchSpec(
    service="codedeploy",
    batch_call="batch_get_deployments",
    ids_param="deploymentIds",
    items_key="deploymentsInfo",
    id_key="deploymentId",
    status_key="status",
    max_batch=BATCH_GET_DEPLOYMENTS_MAX,
    terminal_states=DEPLOYMENT_TERMINAL_STATES,
)


class CodeDeployDeploymentTrigger(BatchPolledTrigger):
    """Fires once the deployment has finished, or reached Ready when ``stop_at_ready``.

    The event: ``status`` ("success", "ready", "failed", or "error" when waiting itself failed),
    ``deployment_id``, ``item_status`` (the deployment's status) and ``item`` (its status fields).

    :param deployment_id: the deployment to wait for.
    :param stop_at_ready: also fire when the deployment waits at Ready for ContinueDeployment.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the deployment's region (default: the connection's).
    :param poll_interval: seconds between two looks at the deployment.
    """

    spec = CODEDEPLOY_DEPLOYMENTS
    hook_class = CodeDeployHook
    id_field = "deployment_id"

    def __init__(
        self,
        deployment_id: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 15,
        stop_at_ready: bool = False,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
    ) -> None:
        super().__init__(
            item_id=deployment_id,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            verify=verify,
            botocore_config=botocore_config,
        )
        self.stop_at_ready = bool(stop_at_ready)

    @property
    def deployment_id(self) -> str:
        return self.item_id

    def extra_kwargs(self) -> dict[str, Any]:
        return {"stop_at_ready": self.stop_at_ready}

    def stop_states(self) -> frozenset[str]:
        return frozenset({DEPLOYMENT_READY}) if self.stop_at_ready else frozenset()

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

"""CodeDeploy: what the amazon provider does not have."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from release_orchestrator.hooks.base import WAITERS_DIR, aws_call

DEPLOYMENT_SUCCEEDED = "Succeeded"
DEPLOYMENT_READY = "Ready"
DEPLOYMENT_STOPPED = "Stopped"
DEPLOYMENT_FAILED_STATES = frozenset({"Failed", "Stopped"})
DEPLOYMENT_TERMINAL_STATES = DEPLOYMENT_FAILED_STATES | {DEPLOYMENT_SUCCEEDED}
DEPLOYMENT_ACTIVE_STATES = ("Created", "Queued", "InProgress", "Baking", "Ready")
# deploymentInfo.creator of deployments made by CreateDeployment (others: codeDeployRollback, autoscaling, ...).
DEPLOYMENT_CREATOR_USER = "user"

# BatchGetDeployments and BatchGetDeploymentTargets take at most 25 ids (API reference).
BATCH_GET_DEPLOYMENTS_MAX = 25


class CodeDeployHook(AwsBaseHook):
    """Interact with AWS CodeDeploy through boto3's ``codedeploy`` client."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "codedeploy"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path | None:
        # Custom waiters live next to this plugin, not next to the provider's hooks.
        path = WAITERS_DIR / "codedeploy.json"
        return path if path.exists() else None

    def create_deployment(self, application_name: str, deployment_group_name: str, **kwargs: Any) -> str:
        with aws_call("CreateDeployment", f"deployment group '{application_name}/{deployment_group_name}'"):
            return self.conn.create_deployment(
                applicationName=application_name, deploymentGroupName=deployment_group_name, **kwargs
            )["deploymentId"]

    def get_deployment(self, deployment_id: str) -> dict[str, Any]:
        with aws_call("GetDeployment", f"deployment '{deployment_id}'"):
            return self.conn.get_deployment(deploymentId=deployment_id)["deploymentInfo"]

    def batch_get_deployments(self, deployment_ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(deployment_ids), BATCH_GET_DEPLOYMENTS_MAX):
            chunk = deployment_ids[start : start + BATCH_GET_DEPLOYMENTS_MAX]
            with aws_call("BatchGetDeployments", f"deployments {', '.join(chunk)}"):
                found.extend(self.conn.batch_get_deployments(deploymentIds=chunk)["deploymentsInfo"])
        return found

    def continue_deployment(self, deployment_id: str) -> None:
        """Let a deployment waiting at Ready shift traffic (ContinueDeployment READY_WAIT)."""
        with aws_call("ContinueDeployment", f"deployment '{deployment_id}'"):
            self.conn.continue_deployment(deploymentId=deployment_id, deploymentWaitType="READY_WAIT")

    def stop_deployment(self, deployment_id: str, auto_rollback: bool = True) -> dict[str, Any]:
        with aws_call("StopDeployment", f"deployment '{deployment_id}'"):
            return self.conn.stop_deployment(deploymentId=deployment_id, autoRollbackEnabled=auto_rollback)

    def find_active_deployment(self, application_name: str, deployment_group_name: str, marker: str) -> str | None:
        """The id of an active deployment of the group whose description contains ``marker``."""
        resource = f"deployment group '{application_name}/{deployment_group_name}'"
        with aws_call("ListDeployments", resource):
            pages = self.conn.get_paginator("list_deployments").paginate(
                applicationName=application_name,
                deploymentGroupName=deployment_group_name,
                includeOnlyStatuses=list(DEPLOYMENT_ACTIVE_STATES),
            )
            ids = [deployment_id for page in pages for deployment_id in page.get("deployments", [])]
        for info in self.batch_get_deployments(ids):
            # Only a deployment created by a CreateDeployment call: a rollback deployment CodeDeploy
            # makes of a failed one may carry its description, and must never be taken for it.
            if info.get("creator", DEPLOYMENT_CREATOR_USER) != DEPLOYMENT_CREATOR_USER:
                continue
            if marker in (info.get("description") or ""):
                return info["deploymentId"]
        return None

    def get_deployment_targets(self, deployment_id: str) -> list[dict[str, Any]]:
        """The deployment's targets with their lifecycle events (ListDeploymentTargets + BatchGet)."""
        resource = f"deployment '{deployment_id}'"
        with aws_call("ListDeploymentTargets", resource):
            pages = self.conn.get_paginator("list_deployment_targets").paginate(deploymentId=deployment_id)
            target_ids = [target_id for page in pages for target_id in page.get("targetIds", [])]
        targets: list[dict[str, Any]] = []
        for start in range(0, len(target_ids), BATCH_GET_DEPLOYMENTS_MAX):
            chunk = target_ids[start : start + BATCH_GET_DEPLOYMENTS_MAX]
            with aws_call("BatchGetDeploymentTargets", resource):
                page = self.conn.batch_get_deployment_targets(deploymentId=deployment_id, targetIds=chunk)
            targets.extend(page.get("deploymentTargets", []))
        return targets

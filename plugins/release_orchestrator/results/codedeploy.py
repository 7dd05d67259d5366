"""What a finished CodeDeploy deployment means for ``deploy.codedeploy``, and continuing one at Ready.

`DeploymentResult` is plain data (it travels in the trigger's kwargs) and turns a finished deployment
into the action's outputs or an `ActionFailed` naming the failed lifecycle event (its log tail goes
to the task log), the error and the rollback.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException

from release_orchestrator.hooks.codedeploy import DEPLOYMENT_READY, DEPLOYMENT_SUCCEEDED, CodeDeployHook
from release_orchestrator.links import CodeDeployDeploymentLink
from release_orchestrator.results import ActionFailed, AwsResult


def appspec_of(deployment: dict[str, Any]) -> dict[str, Any]:
    """The AppSpec a deployment was created with, when it is inline JSON."""
    content = ((deployment.get("revision") or {}).get("appSpecContent") or {}).get("content")
    try:
        return json.loads(content) if content else {}
    except ValueError:
        return {}


def resource_properties(appspec: dict[str, Any]) -> dict[str, Any]:
    for resource in appspec.get("Resources") or []:
        for body in resource.values():
            return body.get("Properties") or {}
    return {}


def continue_if_ready(hook: CodeDeployHook, deployment: dict[str, Any], log: Any) -> dict[str, Any]:
    """ContinueDeployment when the deployment still waits at Ready; returns the deployment as it is now.

    One that left Ready meanwhile (continued by someone else, stopped, timed out) is left alone.
    """
    deployment_id = deployment["deploymentId"]
    if deployment["status"] != DEPLOYMENT_READY:
        log.info("Deployment %s no longer waits at Ready (%s): not continuing it", deployment_id, deployment["status"])
        return deployment
    log.info("Deployment %s is Ready: continuing it", deployment_id)
    try:
        hook.continue_deployment(deployment_id)
    except AirflowException:
        current = hook.get_deployment(deployment_id)
        if current["status"] == DEPLOYMENT_READY:
            raise
        log.info("Deployment %s left Ready meanwhile (%s)", deployment_id, current["status"])
        return current
    return deployment


@dataclass
class DeploymentResult(AwsResult):
    """Outputs or failure of a finished deployment to ``application/group`` on ``platform``."""

    application_name: str
    deployment_group_name: str
    platform: str = "server"

    @cached_property
    def hook(self) -> CodeDeployHook:
        return self.shared_hook(CodeDeployHook)

    @property
    def group(self) -> str:
        return f"{self.application_name}/{self.deployment_group_name}"

    def conclude(self, deployment: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed when the deployment did not succeed."""
        if deployment["status"] != DEPLOYMENT_SUCCEEDED:
            raise ActionFailed(self.failure_message(deployment, log))
        log.info("Deployment %s succeeded", deployment["deploymentId"])
        return self.outputs(deployment)

    def outputs(self, deployment: dict[str, Any]) -> dict[str, Any]:
        outputs: dict[str, Any] = {
            "DeploymentId": deployment["deploymentId"],
            "DeploymentStatus": deployment["status"],
            "ConsoleUrl": CodeDeployDeploymentLink().format_link(
                region_name=self.hook.conn_region_name,
                aws_domain=CodeDeployDeploymentLink.get_aws_domain(self.hook.conn_partition),
                deployment_id=deployment["deploymentId"],
            ),
        }
        properties = resource_properties(appspec_of(deployment))
        if self.platform == "ecs":
            outputs["TaskDefinitionArn"] = properties.get("TaskDefinition", "")
        elif self.platform == "lambda":
            outputs["LambdaVersion"] = properties.get("TargetVersion", "")
        return outputs

    def failure_message(self, deployment: dict[str, Any], log: Any) -> str:
        deployment_id = deployment["deploymentId"]
        parts = [f"Deployment {deployment_id} of {self.group} {deployment['status']}"]
        failed_event = self.failed_lifecycle_event(deployment_id, log)
        if failed_event:
            parts.append(failed_event)
        error = deployment.get("errorInformation") or {}
        if error:
            parts.append(f"{error.get('code', 'ERROR')}: {error.get('message', '')}".strip())
        rollback = deployment.get("rollbackInfo") or {}
        if rollback.get("rollbackDeploymentId"):
            note = f"rolled back by deployment {rollback['rollbackDeploymentId']}"
            if rollback.get("rollbackMessage"):
                note += f" ({rollback['rollbackMessage']})"
            parts.append(note)
        else:
            parts.append("no rollback")
        return "; ".join(parts)

    def failed_lifecycle_event(self, deployment_id: str, log: Any) -> str | None:
        """The first failed lifecycle event of the deployment's targets; its log tail goes to the task log."""
        try:
            targets = self.hook.get_deployment_targets(deployment_id)
        except Exception as err:
            log.info("Deployment targets cannot be read: %s", err)
            return None
        for target in targets:
            for kind in ("instanceTarget", "ecsTarget", "lambdaTarget", "cloudFormationTarget"):
                details = target.get(kind)
                if not details:
                    continue
                for event in details.get("lifecycleEvents") or []:
                    if event.get("status") != "Failed":
                        continue
                    diagnostics = event.get("diagnostics") or {}
                    if diagnostics.get("logTail"):
                        log.error(
                            "Log tail of %s on %s:\n%s",
                            event.get("lifecycleEventName"),
                            details.get("targetId"),
                            diagnostics["logTail"],
                        )
                    text = f"lifecycle event {event.get('lifecycleEventName')} failed on {details.get('targetId')}"
                    detail = ": ".join(filter(None, (diagnostics.get("errorCode"), diagnostics.get("message"))))
                    if diagnostics.get("scriptName"):
                        detail += f" (script {diagnostics['scriptName']})"
                    return f"{text}: {detail}" if detail else text
        return None

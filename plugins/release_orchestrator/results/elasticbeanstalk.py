"""What a settled Elastic Beanstalk environment means for ``deploy.elasticbeanstalk``.

`EnvironmentResult` is plain data (it travels in the trigger's kwargs): the deployment succeeded when the
environment is Ready on the version this action deployed with health not Red; otherwise it failed, and
the message names the environment's version and health and quotes its latest error events.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from release_orchestrator.hooks.elasticbeanstalk import ENVIRONMENT_READY, HEALTH_RED, ElasticBeanstalkHook
from release_orchestrator.links import ElasticBeanstalkEnvironmentLink
from release_orchestrator.results import ActionFailed, AwsResult


@dataclass
class EnvironmentResult(AwsResult):
    """Outputs or failure of deploying ``version_label`` to ``application_name/environment_name``."""

    application_name: str
    environment_name: str
    version_label: str
    since: str | None = None  # ISO time just before UpdateEnvironment: error events from then on

    @cached_property
    def hook(self) -> ElasticBeanstalkHook:
        return self.shared_hook(ElasticBeanstalkHook)

    def deployed(self, environment: dict[str, Any]) -> bool:
        return (
            environment.get("Status") == ENVIRONMENT_READY
            and environment.get("VersionLabel") == self.version_label
            and environment.get("Health") != HEALTH_RED
        )

    def conclude(self, environment: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed when the environment is not Ready on this version."""
        if not self.deployed(environment):
            raise ActionFailed(self.failure_message(environment, log))
        log.info("Environment %s runs version %s", self.environment_name, self.version_label)
        return self.outputs(environment)

    def outputs(self, environment: dict[str, Any]) -> dict[str, Any]:
        cname = environment.get("CNAME")
        return {
            "ApplicationName": self.application_name,
            "EnvironmentName": self.environment_name,
            "EnvironmentId": environment.get("EnvironmentId", ""),
            "VersionLabel": self.version_label,
            "EnvironmentUrl": f"http://{cname}" if cname else environment.get("EndpointURL", ""),
            "ConsoleUrl": ElasticBeanstalkEnvironmentLink().format_link(
                region_name=self.hook.conn_region_name,
                aws_domain=ElasticBeanstalkEnvironmentLink.get_aws_domain(self.hook.conn_partition),
                environment_id=environment.get("EnvironmentId"),
            ),
        }

    def failure_message(self, environment: dict[str, Any], log: Any) -> str:
        where = f"{self.application_name}/{self.environment_name}"
        running = environment.get("VersionLabel")
        parts = [f"Deploying version {self.version_label} to environment {where} failed"]
        state = f"environment {environment.get('Status')}, health {environment.get('Health', 'unknown')}"
        if running != self.version_label:
            state += f", back on version {running}" if running else ", on no version"
        parts.append(state)
        events = self.error_events(environment.get("EnvironmentId"), log)
        if events:
            parts.append("events: " + " | ".join(events))
        return "; ".join(parts)

    def error_events(self, environment_id: str | None, log: Any) -> list[str]:
        """The latest error events of the environment since the update, oldest first."""
        if not environment_id:
            return []
        since = datetime.fromisoformat(self.since) if self.since else None
        try:
            events = self.hook.error_events(environment_id, since)
        except Exception as err:
            log.info("The environment's events cannot be read: %s", err)
            return []
        return [f"{e.get('Severity')}: {e.get('Message')}" for e in reversed(events)]

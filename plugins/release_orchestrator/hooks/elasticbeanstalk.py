"""Elastic Beanstalk: the amazon provider has no hook for it."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from release_orchestrator.hooks.base import WAITERS_DIR, aws_call

ENVIRONMENT_READY = "Ready"
ENVIRONMENT_TERMINATED = "Terminated"
# Statuses an environment settles in; others (Launching, Updating, Aborting, ...) are on the way.
ENVIRONMENT_SETTLED_STATES = frozenset({ENVIRONMENT_READY, ENVIRONMENT_TERMINATED})
HEALTH_RED = "Red"

# DescribeEnvironments names many environments a call; the poller asks about at most this many ids at once.
DESCRIBE_ENVIRONMENTS_MAX = 100


class ElasticBeanstalkHook(AwsBaseHook):
    """Interact with AWS Elastic Beanstalk through boto3's ``elasticbeanstalk`` client."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "elasticbeanstalk"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path | None:
        path = WAITERS_DIR / "elasticbeanstalk.json"
        return path if path.exists() else None

    def application_version(self, application_name: str, version_label: str) -> dict[str, Any] | None:
        with aws_call("DescribeApplicationVersions", f"application '{application_name}'"):
            versions = self.conn.describe_application_versions(
                ApplicationName=application_name, VersionLabels=[version_label]
            )["ApplicationVersions"]
        return versions[0] if versions else None

    def create_application_version(
        self, application_name: str, version_label: str, bucket: str, key: str, description: str
    ) -> dict[str, Any]:
        with aws_call("CreateApplicationVersion", f"application '{application_name}'"):
            return self.conn.create_application_version(
                ApplicationName=application_name,
                VersionLabel=version_label,
                Description=description[:200],
                SourceBundle={"S3Bucket": bucket, "S3Key": key},
                Process=False,
            )["ApplicationVersion"]

    def environment(self, application_name: str, environment_name: str) -> dict[str, Any] | None:
        """The environment (not a terminated one), or None."""
        with aws_call("DescribeEnvironments", f"environment '{application_name}/{environment_name}'"):
            found = self.conn.describe_environments(
                ApplicationName=application_name, EnvironmentNames=[environment_name], IncludeDeleted=False
            )["Environments"]
        return found[0] if found else None

    def environments_by_id(self, environment_ids: list[str]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(environment_ids), DESCRIBE_ENVIRONMENTS_MAX):
            chunk = environment_ids[start : start + DESCRIBE_ENVIRONMENTS_MAX]
            with aws_call("DescribeEnvironments", f"environments {', '.join(chunk)}"):
                found.extend(self.conn.describe_environments(EnvironmentIds=chunk)["Environments"])
        return found

    def update_environment(self, application_name: str, environment_name: str, version_label: str) -> dict[str, Any]:
        with aws_call("UpdateEnvironment", f"environment '{application_name}/{environment_name}'"):
            return self.conn.update_environment(
                ApplicationName=application_name, EnvironmentName=environment_name, VersionLabel=version_label
            )

    def abort_environment_update(self, environment_id: str) -> None:
        with aws_call("AbortEnvironmentUpdate", f"environment '{environment_id}'"):
            self.conn.abort_environment_update(EnvironmentId=environment_id)

    def error_events(self, environment_id: str, since: datetime | None, limit: int = 5) -> list[dict[str, Any]]:
        """The environment's latest ERROR and FATAL events since ``since``, newest first."""
        kwargs: dict[str, Any] = {"EnvironmentId": environment_id, "Severity": "ERROR", "MaxRecords": 100}
        if since is not None:
            kwargs["StartTime"] = since
        with aws_call("DescribeEvents", f"environment '{environment_id}'"):
            events = self.conn.describe_events(**kwargs)["Events"]
        return [e for e in events if e.get("Severity") in ("ERROR", "FATAL")][:limit]

"""CodeBuild: what the amazon provider does not have."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from release_orchestrator.hooks.base import WAITERS_DIR, aws_call

# BuildStatus values; everything but IN_PROGRESS is final.
BUILD_SUCCEEDED = "SUCCEEDED"
BUILD_STOPPED = "STOPPED"
BUILD_IN_PROGRESS = "IN_PROGRESS"
BUILD_FAILED_STATES = frozenset({"FAILED", "FAULT", "TIMED_OUT", "STOPPED"})
BUILD_TERMINAL_STATES = BUILD_FAILED_STATES | {BUILD_SUCCEEDED}

# BatchGetBuilds takes at most this many ids (botocore's service model: BuildIds max 100).
BATCH_GET_BUILDS_MAX = 100


class CodeBuildHook(AwsBaseHook):
    """Interact with AWS CodeBuild through boto3's ``codebuild`` client."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["client_type"] = "codebuild"
        super().__init__(*args, **kwargs)

    @cached_property
    def waiter_path(self) -> Path | None:
        # Custom waiters live next to this plugin, not next to the provider's hooks.
        path = WAITERS_DIR / "codebuild.json"
        return path if path.exists() else None

    def start_build(self, project_name: str, **overrides: Any) -> dict[str, Any]:
        """Start a build of ``project_name``; ``overrides`` are StartBuild's own keyword arguments."""
        with aws_call("StartBuild", f"project '{project_name}'"):
            return self.conn.start_build(projectName=project_name, **overrides)["build"]

    def batch_get_builds(self, build_ids: list[str]) -> list[dict[str, Any]]:
        if not build_ids:
            return []
        found: list[dict[str, Any]] = []
        for start in range(0, len(build_ids), BATCH_GET_BUILDS_MAX):
            chunk = build_ids[start : start + BATCH_GET_BUILDS_MAX]
            with aws_call("BatchGetBuilds", f"builds {', '.join(chunk)}"):
                found.extend(self.conn.batch_get_builds(ids=chunk)["builds"])
        return found

    def get_build(self, build_id: str) -> dict[str, Any]:
        builds = self.batch_get_builds([build_id])
        if not builds:
            raise LookupError(f"BatchGetBuilds on build '{build_id}' failed: build not found")
        return builds[0]

    def stop_build(self, build_id: str) -> dict[str, Any]:
        with aws_call("StopBuild", f"build '{build_id}'"):
            return self.conn.stop_build(id=build_id)["build"]

    def get_test_cases(self, report_arn: str) -> list[dict[str, Any]]:
        """Every test case of a report (DescribeTestCases, all pages)."""
        with aws_call("DescribeTestCases", f"report '{report_arn}'"):
            pages = self.conn.get_paginator("describe_test_cases").paginate(reportArn=report_arn)
            return [case for page in pages for case in page.get("testCases", [])]

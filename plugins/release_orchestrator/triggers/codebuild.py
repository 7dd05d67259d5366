"""Deferred wait for a CodeBuild build."""

from __future__ import annotations

from typing import Any

from release_orchestrator.hooks.codebuild import (
    BATCH_GET_BUILDS_MAX,
    BUILD_SUCCEEDED,
    BUILD_TERMINAL_STATES,
    CodeBuildHook,
)
from release_orchestrator.results.codebuild import BuildResult
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

CODEBUILD_BUILDS = BatchSpec(
    service="codebuild",
    batch_call="BatchGetBuilds",
    id_key="id",
    status_key="buildStatus",
    max_batch=BATCH_GET_BUILDS_MAX,
    terminal_states=BUILD_TERMINAL_STATES,
)


class CodeBuildBuildTrigger(BatchPolledTrigger):
    """Ends the task once the build has finished: with the action's outputs, or failed with the reason.

    Without ``result`` (an earlier version's trigger) it fires an event to resume the task instead:
    ``status`` ("success" or "failed", "error" when waiting itself failed), ``build_id``,
    ``item_status`` (the buildStatus) and ``item``, the build's status fields (no environment
    variables, so nothing secret passes through the triggerer's logs).

    :param build_id: the build to wait for.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the build's region (default: the connection's).
    :param poll_interval: seconds between two looks at the build.
    :param result: the action's ``BuildResult`` as a dict: how the finished build becomes outputs.
    """

    spec = CODEBUILD_BUILDS
    hook_class = CodeBuildHook
    id_field = "build_id"
    result_class = BuildResult

    @staticmethod
    def batch_get(hook: CodeBuildHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.batch_get_builds(ids)

    def __init__(
        self,
        build_id: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        poll_interval: float = 30,
        verify: bool | str | None = None,
        botocore_config: dict | None = None,
        result: dict[str, Any] | None = None,
        failure_notices: list[dict[str, Any]] | None = None,
        success_notices: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            item_id=build_id,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            poll_interval=poll_interval,
            verify=verify,
            botocore_config=botocore_config,
            result=result,
            failure_notices=failure_notices,
            success_notices=success_notices,
        )

    @property
    def build_id(self) -> str:
        return self.item_id

    def outcome(self, status: str | None) -> str:
        return "success" if status == BUILD_SUCCEEDED else "failed"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        keep = ("id", "buildNumber", "buildStatus", "currentPhase", "resolvedSourceVersion", "reportArns")
        summary = {key: item[key] for key in keep if key in item}
        summary["phases"] = [
            {k: phase[k] for k in ("phaseType", "phaseStatus", "contexts") if k in phase}
            for phase in item.get("phases", [])
        ]
        summary["logs"] = {
            k: v for k, v in item.get("logs", {}).items() if k in ("groupName", "streamName", "deepLink")
        }
        return summary

    def stop(self) -> None:
        self.hook().stop_build(self.build_id)

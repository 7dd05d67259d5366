"""Deferred wait for an Elastic Beanstalk environment update."""

from __future__ import annotations

from typing import Any

from release_orchestrator.hooks.elasticbeanstalk import (
    DESCRIBE_ENVIRONMENTS_MAX,
    ENVIRONMENT_SETTLED_STATES,
    ElasticBeanstalkHook,
)
from release_orchestrator.results.elasticbeanstalk import EnvironmentResult
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

# DescribeEnvironments takes many environment ids a call: one call per round for every waiting deployment.
ELASTICBEANSTALK_ENVIRONMENTS = BatchSpec(
    service="elasticbeanstalk",
    batch_call="DescribeEnvironments",
    id_key="EnvironmentId",
    status_key="Status",
    max_batch=DESCRIBE_ENVIRONMENTS_MAX,
    terminal_states=ENVIRONMENT_SETTLED_STATES,
)


class ElasticBeanstalkEnvironmentTrigger(BatchPolledTrigger):
    """Ends the task once the environment has settled (Ready or Terminated) after the update: outputs when
    it runs the deployed version and is not Red, a failure with its latest error events otherwise.

    :param environment_id: the environment being updated.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the environment's region (default: the connection's).
    :param poll_interval: seconds between two looks at the environment.
    :param result: the action's ``EnvironmentResult`` as a dict.
    """

    spec = ELASTICBEANSTALK_ENVIRONMENTS
    hook_class = ElasticBeanstalkHook
    id_field = "environment_id"
    result_class = EnvironmentResult

    def __init__(self, environment_id: str, **kwargs: Any) -> None:
        super().__init__(item_id=environment_id, **kwargs)

    @staticmethod
    def batch_get(hook: ElasticBeanstalkHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.environments_by_id(ids)

    def outcome(self, status: str | None) -> str:
        # Whether the settled environment runs the new version is for the result to say.
        return "settled"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        keep = ("EnvironmentId", "EnvironmentName", "ApplicationName", "VersionLabel", "Status", "Health")
        return {key: item[key] for key in keep if key in item}

    def stop(self) -> None:
        self.hook().abort_environment_update(self.item_id)

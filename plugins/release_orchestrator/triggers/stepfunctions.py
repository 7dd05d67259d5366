"""Deferred wait for a Step Functions execution."""

from __future__ import annotations

from typing import Any

from release_orchestrator.hooks.stepfunctions import (
    DESCRIBE_EXECUTIONS_PER_ROUND,
    EXECUTION_SUCCEEDED,
    EXECUTION_TERMINAL_STATES,
    StepFunctionsHook,
)
from release_orchestrator.results.stepfunctions import ExecutionResult
from release_orchestrator.triggers.base import BatchPolledTrigger
from release_orchestrator.triggers.poller import BatchSpec

# DescribeExecution takes one execution, so a round makes one call per execution (in one thread).
STEPFUNCTIONS_EXECUTIONS = BatchSpec(
    service="stepfunctions",
    batch_call="DescribeExecution",
    id_key="executionArn",
    status_key="status",
    max_batch=DESCRIBE_EXECUTIONS_PER_ROUND,
    terminal_states=EXECUTION_TERMINAL_STATES,
)

# What StopExecution records on an execution the task abandoned.
STOP_ERROR = "Airflow.TaskAbandoned"
STOP_CAUSE = "The Airflow task waiting for this execution was marked failed or killed"


class StepFunctionsExecutionTrigger(BatchPolledTrigger):
    """Ends the task once the execution has finished: outputs, or failed with its error and cause.

    :param execution_arn: the execution to wait for.
    :param aws_conn_id: the Airflow AWS connection.
    :param region_name: the execution's region (default: the connection's).
    :param poll_interval: seconds between two looks at the execution.
    :param result: the action's ``ExecutionResult`` as a dict.
    """

    spec = STEPFUNCTIONS_EXECUTIONS
    hook_class = StepFunctionsHook
    id_field = "execution_arn"
    result_class = ExecutionResult

    def __init__(self, execution_arn: str, **kwargs: Any) -> None:
        super().__init__(item_id=execution_arn, **kwargs)

    @staticmethod
    def batch_get(hook: StepFunctionsHook, ids: list[str]) -> list[dict[str, Any]]:
        return hook.describe_many(ids)

    def outcome(self, status: str | None) -> str:
        return "success" if status == EXECUTION_SUCCEEDED else "failed"

    def summary(self, item: dict[str, Any]) -> dict[str, Any]:
        keep = ("executionArn", "stateMachineArn", "status", "error", "cause")
        return {key: item[key] for key in keep if key in item}

    def stop(self) -> None:
        self.hook().stop(self.item_id, STOP_ERROR, STOP_CAUSE)

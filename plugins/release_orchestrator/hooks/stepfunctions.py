"""Step Functions: the amazon provider's StepFunctionHook, with every call naming its resource on failure."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

from release_orchestrator.hooks.base import WAITERS_DIR, AwsCallError, aws_call

EXECUTION_SUCCEEDED = "SUCCEEDED"
EXECUTION_RUNNING = "RUNNING"
EXECUTION_FAILED_STATES = frozenset({"FAILED", "TIMED_OUT", "ABORTED"})
EXECUTION_TERMINAL_STATES = EXECUTION_FAILED_STATES | {EXECUTION_SUCCEEDED}
EXECUTION_MISSING = "ExecutionDoesNotExist"

# DescribeExecution takes one execution: the poller asks about this many per round in one thread.
DESCRIBE_EXECUTIONS_PER_ROUND = 50


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN an execution named ``name`` of a standard state machine gets."""
    head, sep, machine = state_machine_arn.partition(":stateMachine:")
    if not sep:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return f"{head}:execution:{machine.split(':', 1)[0]}:{name}"


class StepFunctionsHook(StepFunctionHook):
    """The provider's StepFunctionHook; its calls raise `AwsCallError` naming the call and the resource."""

    @cached_property
    def waiter_path(self) -> Path | None:
        path = WAITERS_DIR / "stepfunctions.json"
        return path if path.exists() else None

    def start_named_execution(self, state_machine_arn: str, name: str, execution_input: str) -> str:
        """StartExecution; its ARN. The same name and input as a running execution return that one."""
        with aws_call("StartExecution", f"state machine '{state_machine_arn}'"):
            return self.conn.start_execution(stateMachineArn=state_machine_arn, name=name, input=execution_input)[
                "executionArn"
            ]

    def describe(self, arn: str) -> dict[str, Any]:
        with aws_call("DescribeExecution", f"execution '{arn}'"):
            return self.conn.describe_execution(executionArn=arn)

    def describe_many(self, arns: list[str]) -> list[dict[str, Any]]:
        """DescribeExecution of each; an execution that does not exist is left out (the poller counts it missing)."""
        found = []
        for arn in arns:
            try:
                found.append(self.describe(arn))
            except AwsCallError as err:
                if err.code != EXECUTION_MISSING:
                    raise
        return found

    def stop(self, arn: str, error: str, cause: str) -> None:
        with aws_call("StopExecution", f"execution '{arn}'"):
            self.conn.stop_execution(executionArn=arn, error=error, cause=cause)

    def describe_state_machine(self, state_machine_arn: str) -> dict[str, Any]:
        with aws_call("DescribeStateMachine", f"state machine '{state_machine_arn}'"):
            return self.conn.describe_state_machine(stateMachineArn=state_machine_arn)


def output_variables(output: str | None) -> dict[str, str]:
    """An execution's output as variables: the top-level values of a JSON object, strings as they are and
    anything else as JSON text; nothing for other outputs."""
    try:
        value = json.loads(output) if output else None
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}

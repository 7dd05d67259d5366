"""What a finished Step Functions execution means for ``invoke.stepfunctions``.

`ExecutionResult` is plain data (it travels in the trigger's kwargs) and turns a finished execution into the
action's outputs (its ARN, its machine's, its status, and the top-level values of a JSON object output as
variables) or an `ActionFailed` naming the execution, its status, error and cause.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import mask_secret

from release_orchestrator.hooks.stepfunctions import EXECUTION_SUCCEEDED, output_variables
from release_orchestrator.operators.reattach import looks_secret
from release_orchestrator.results import ActionFailed, AwsResult

FIXED_OUTPUTS = ("ExecutionArn", "StateMachineArn", "Status")


@dataclass
class ExecutionResult(AwsResult):
    """Outputs or failure of a finished execution of ``state_machine_arn``."""

    state_machine_arn: str

    def conclude(self, execution: dict[str, Any], log: logging.Logger | Any) -> dict[str, Any]:
        """The action's outputs; raises ActionFailed when the execution did not succeed."""
        if execution["status"] != EXECUTION_SUCCEEDED:
            raise ActionFailed(self.failure_message(execution))
        log.info("Execution %s succeeded", execution["executionArn"])
        return self.outputs(execution, log)

    def outputs(self, execution: dict[str, Any], log: Any) -> dict[str, Any]:
        variables = output_variables(execution.get("output"))
        for name, value in variables.items():
            if looks_secret(name):
                mask_secret(value)  # the output's own secrets stay out of logs and the rendered view
        clashing = sorted(set(variables) & set(FIXED_OUTPUTS))
        if clashing:
            log.warning("The execution's output keys %s are left out: the action's own outputs use them", clashing)
        return {
            **{k: v for k, v in variables.items() if k not in FIXED_OUTPUTS},
            "ExecutionArn": execution["executionArn"],
            "StateMachineArn": execution.get("stateMachineArn") or self.state_machine_arn,
            "Status": execution["status"],
        }

    def failure_message(self, execution: dict[str, Any]) -> str:
        text = f"Execution {execution['executionArn']} of state machine {self.state_machine_arn} {execution['status']}"
        details = ": ".join(filter(None, (execution.get("error"), execution.get("cause"))))
        return f"{text}: {details}" if details else text

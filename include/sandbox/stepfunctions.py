"""Step Functions executions that take time and end the way their state machine says.

moto keeps state machines and executions; by default an execution stays RUNNING for ever. Here an
execution ends once it has run `deploy_seconds`: its definition is followed from StartAt, a Pass
state's Result placed at its ResultPath, a Fail state ending it FAILED with its Error and Cause, a
Succeed state or an End ending it SUCCEEDED with the data as output. Other state types pass their
input on (Choice goes to its Default), and InputPath/OutputPath/Parameters are not applied.
StopExecution is answered here too, so the error and cause it is given are kept (moto drops them).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from moto.stepfunctions.models import stepfunctions_backends

from include.sandbox.common import ApiError
from include.sandbox.resources import ACCOUNT_ID

OPERATIONS = {"StopExecution"}
MAX_STEPS = 1000  # a definition that loops is a failed execution, not a hung sandbox


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def run_definition(definition: str, execution_input: str) -> tuple[str, dict[str, Any]]:
    """(status, fields to set: output, or error and cause) of running ``definition`` on the input."""
    try:
        machine = json.loads(definition)
        data = json.loads(execution_input or "{}")
        name = machine["StartAt"]
        for _ in range(MAX_STEPS):
            state = machine["States"][name]
            kind = state.get("Type")
            if kind == "Fail":
                return "FAILED", {"error": state.get("Error", "States.Fail"), "cause": state.get("Cause", "")}
            if kind == "Succeed":
                break
            if kind == "Pass" and "Result" in state:
                data = _place(data, state["Result"], state.get("ResultPath", "$"))
            if kind == "Choice":
                name = state.get("Default")
                if not name:
                    return "FAILED", {"error": "States.NoChoiceMatched", "cause": "no Default in the sandbox"}
                continue
            if state.get("End"):
                break
            name = state["Next"]
        else:
            return "FAILED", {"error": "States.Runtime", "cause": f"more than {MAX_STEPS} state transitions"}
    except (KeyError, TypeError, ValueError) as error:
        return "FAILED", {"error": "States.Runtime", "cause": f"the sandbox cannot run this definition: {error!r}"}
    return "SUCCEEDED", {"output": json.dumps(data)}


def _place(data: Any, result: Any, path: str | None) -> Any:
    """``result`` at a ResultPath: "$" replaces the data, "$.a.b" sets that field, null keeps the data."""
    if path is None:
        return data
    if path == "$":
        return result
    if not path.startswith("$.") or not isinstance(data, dict):
        raise ValueError(f"ResultPath {path!r} on {type(data).__name__} input")
    target = data
    *parents, last = path[2:].split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = result
    return data


class StepFunctionsEmulator:
    def __init__(self, run_seconds: float):
        self.run_seconds = run_seconds

    def _executions(self):
        for backend in list(stepfunctions_backends[ACCOUNT_ID].values()):
            for machine in list(backend.state_machines):
                for execution in list(machine.executions):
                    yield machine, execution

    def running(self) -> int:
        return sum(e.status == "RUNNING" for _, e in self._executions())

    def tick(self, at: float) -> None:
        moment = datetime.fromtimestamp(at, tz=timezone.utc)
        for machine, execution in self._executions():
            if execution.status != "RUNNING":
                continue
            if (moment - _utc(execution.start_date)).total_seconds() < self.run_seconds:
                continue
            status, fields = run_definition(machine.definition, execution.execution_input)
            execution.status = status
            execution.stop_date = moment.replace(tzinfo=None)  # moto keeps naive UTC times
            for key, value in fields.items():
                setattr(execution, key, value)

    def handle(self, operation: str, params: dict, region: str, caller: str) -> dict:
        return self.stop_execution(params)

    def stop_execution(self, params: dict) -> dict:
        arn = params.get("executionArn", "")
        execution = next((e for _, e in self._executions() if e.execution_arn == arn), None)
        if execution is None:
            raise ApiError("ExecutionDoesNotExist", f"Execution Does Not Exist: '{arn}'")
        if execution.status == "RUNNING":
            execution.status = "ABORTED"
            execution.stop_date = datetime.now(timezone.utc).replace(tzinfo=None)
            execution.error, execution.cause = params.get("error"), params.get("cause")
        return {"stopDate": _utc(execution.stop_date).timestamp()}

    def throttle_check(self, operation: str, params: dict) -> None:
        """No Step Functions faults: the definition decides how an execution ends."""

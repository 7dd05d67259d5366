"""A stage's entry and success conditions at run time: each rule checked against the clock, CloudWatch, a
variable or a Lambda function (the spec side is pipeline/conditions.py).

`evaluate` is called by the Conditions task on a worker and again by its trigger when a deployment window
opens (operators/stage_conditions.py, triggers/stage_conditions.py). Windows come first: while one is
closed nothing else is asked, so an alarm is read when the run is about to enter, not hours before.
Success conditions are evaluated once the stage's actions succeeded; the alarms of rules with a
`wait_time` are then watched (`watched_rules`) by the SuccessConditions task's trigger.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from release_orchestrator.hooks.base import AwsCallError
from release_orchestrator.pipeline.conditions import (
    DEFAULT_ALARM_STATES,
    RULE_TYPES,
    value_problem,
    variable_check,
    wait_minutes,
    window_is_open,
    window_opens,
)

ENTERED, SKIPPED, FAILED = "ENTERED", "SKIPPED", "FAILED"
SUCCEEDED = "SUCCEEDED"  # a success condition met (its alarms watched for their wait_time)
MAX_WINDOW_STEPS = 1000  # several windows: how many openings to try before giving up on a common minute


class ConditionNotMet(Exception):
    pass


@dataclass
class Evaluation:
    """What the rules said: `opens_at` when a window is closed (nothing else was asked), else each rule's
    result in `checked` ({rule, type, passed, detail}); the condition is met when every rule passed."""

    opens_at: datetime | None = None
    checked: list[dict[str, Any]] = field(default_factory=list)

    @property
    def met(self) -> bool:
        return self.opens_at is None and all(rule["passed"] for rule in self.checked)

    @property
    def unanswered(self) -> bool:
        """Not met only because AWS did not answer (a throttled or failed call): worth asking again."""
        return not self.met and all(rule["passed"] or rule.get("unanswered") for rule in self.checked)

    def failures(self) -> str:
        return "; ".join(f"rule {r['rule']} ({r['type']}): {r['detail']}" for r in self.checked if not r["passed"])


@dataclass
class RuleContext:
    """What rules need beyond their configuration: where they run and what run they are about."""

    pipeline: str
    stage: str
    run_id: str
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None


def evaluate(rules: list[dict[str, Any]], where: RuleContext, now: datetime | None = None) -> Evaluation:
    now = now or datetime.now(timezone.utc)
    windows = [rule for rule in rules if rule["type"] == "DeploymentWindow"]
    if windows and (opens_at := _next_common_opening(windows, now)) is not None:
        return Evaluation(opens_at=opens_at)
    evaluation = Evaluation()
    for rule in rules:
        unanswered = False
        try:
            detail = _check(rule, where, now)
            passed = True
        except (ConditionNotMet, ValueError) as problem:
            detail, passed = str(problem), False
        except AwsCallError as problem:
            detail, passed, unanswered = str(problem), False, True
        checked = {"rule": rule["name"], "type": rule["type"], "passed": passed, "detail": detail}
        evaluation.checked.append({**checked, "unanswered": True} if unanswered else checked)
    return evaluation


def outcome_record(
    stage: str, result: str, evaluation: Evaluation, log: Any, waited_seconds: float = 0.0
) -> dict[str, Any]:
    """The Conditions task's outputs: ENTERED, or SKIPPED / FAILED by the condition's result (each rule logged)."""
    _log_rules(evaluation, log)
    state = ENTERED if evaluation.met else SKIPPED if result == "SKIP" else FAILED
    return {"Stage": stage, "Result": state, "WaitedSeconds": round(waited_seconds, 1), "Rules": evaluation.checked}


def success_record(stage: str, evaluation: Evaluation, log: Any, watched_seconds: float = 0.0) -> dict[str, Any]:
    """The SuccessConditions task's outputs: SUCCEEDED or FAILED, how long alarms were watched, each rule."""
    _log_rules(evaluation, log)
    state = SUCCEEDED if evaluation.met else FAILED
    return {"Stage": stage, "Result": state, "WatchedSeconds": round(watched_seconds, 1), "Rules": evaluation.checked}


def _log_rules(evaluation: Evaluation, log: Any) -> None:
    for rule in evaluation.checked:
        verdict = "passed" if rule["passed"] else "FAILED"
        log.info("Rule %s (%s): %s: %s", rule["rule"], rule["type"], verdict, rule["detail"])


def not_met(stage: str, evaluation: Evaluation) -> str:
    return f"stage {stage}: entry condition not met: {evaluation.failures()}"


def success_not_met(stage: str, result: str, evaluation: Evaluation) -> str:
    then = "; it is rolled back" if result == "ROLLBACK" else ""
    return f"stage {stage}: success condition not met: {evaluation.failures()}{then}"


def watched_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules whose alarm is watched after the stage succeeded: CloudWatchAlarm rules with a wait_time."""
    return [r for r in rules if r["type"] == "CloudWatchAlarm" and (r.get("configuration") or {}).get("wait_time")]


def watch_seconds(rules: list[dict[str, Any]]) -> float:
    """How long the longest watch lasts (wait_time is in minutes, as CodePipeline's WaitTime)."""
    minutes = [wait_minutes(rule["configuration"]["wait_time"]) or 0.0 for rule in watched_rules(rules)]
    return max(minutes, default=0.0) * 60


def _configuration(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule's configuration as resolved at run time, its values checked again (references are only
    known now)."""
    configuration = dict(rule.get("configuration") or {})
    for key, value in configuration.items():
        if (problem := value_problem(rule["type"], key, value)) is not None:
            raise ValueError(f"configuration.{key} {value!r}: {problem}")
    return configuration


def _next_common_opening(windows: list[dict[str, Any]], now: datetime) -> datetime | None:
    """None when every window is open now, else the first minute at which all are."""
    configurations = []
    for rule in windows:
        try:
            configurations.append(_configuration(rule))
        except ValueError as problem:  # a reference resolved to something that is no window
            raise ValueError(f"rule {rule['name']} ({rule['type']}): {problem}") from None
    at = now
    for _ in range(MAX_WINDOW_STEPS):
        closed = [c for c in configurations if not window_is_open(c["cron"], c.get("time_zone", "UTC"), at)]
        if not closed:
            return None if at is now else at
        at = max(window_opens(c["cron"], c.get("time_zone", "UTC"), at) for c in closed)
    names = ", ".join(rule["name"] for rule in windows)
    raise ValueError(f"deployment windows {names} are never open at the same time")


def _check(rule: dict[str, Any], where: RuleContext, now: datetime) -> str:
    """What the rule saw when it passed; ConditionNotMet (or an AWS error) when it did not."""
    configuration = _configuration(rule)
    kind = rule["type"]
    if kind == "DeploymentWindow":
        return f"open ({configuration['cron']} in {configuration.get('time_zone', 'UTC')})"
    if kind == "VariableCheck":
        variable, operator = str(configuration["variable"]), configuration.get("operator", "EQ")
        expected = str(configuration["value"])
        if not variable_check(variable, operator, expected):
            raise ConditionNotMet(f"{variable!r} {operator} {expected!r} is false")
        return f"{variable!r} {operator} {expected!r}"
    region = rule.get("region") or where.region_name
    conn_id = rule.get("aws_conn_id") or where.aws_conn_id
    if kind == "CloudWatchAlarm":
        from release_orchestrator.hooks.cloudwatch import CloudWatchHook

        name = configuration["alarm_name"]
        states = configuration.get("alarm_states") or list(DEFAULT_ALARM_STATES)
        state = CloudWatchHook(aws_conn_id=conn_id, region_name=region).alarm_state(name)
        if state is None:
            raise ConditionNotMet(f"there is no alarm named '{name}'")
        if state in states:
            raise ConditionNotMet(f"alarm '{name}' is in state {state}")
        return f"alarm '{name}' is {state}"
    if kind == "LambdaInvoke":
        return _invoke(rule, configuration, where, conn_id, region)
    raise ValueError(f"unknown rule type {kind!r}; known: {', '.join(RULE_TYPES)}")


def _invoke(rule: dict[str, Any], configuration: dict[str, Any], where: RuleContext, conn_id, region) -> str:
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook

    from release_orchestrator.hooks.base import aws_call
    from release_orchestrator.operators.lambda_invoke import (
        INVOKE_BOTOCORE_CONFIG,
        LambdaFunctionFailed,
        function_result,
        job_event,
    )

    function = str(configuration["function_name"])
    parameters = configuration.get("user_parameters")
    # The event of a CodePipeline Lambda action (so one function can serve actions and rules), with the rule.
    event = job_event(
        str(uuid.uuid4()), function, json.dumps(parameters) if isinstance(parameters, dict) else parameters
    )
    event["rule"] = {"name": rule["name"], "type": rule["type"]}
    event.update(pipeline=where.pipeline, stage=where.stage, executionId=where.run_id)
    hook = LambdaHook(aws_conn_id=conn_id, region_name=region, config=INVOKE_BOTOCORE_CONFIG)
    with aws_call("Invoke", f"function '{function}'"):
        response = hook.invoke_lambda(
            function_name=function, invocation_type="RequestResponse", payload=json.dumps(event)
        )
        payload = response["Payload"].read()
    try:
        function_result(function, response, payload)
    except LambdaFunctionFailed as failed:
        raise ConditionNotMet(str(failed)) from None
    return f"function '{function}' passed"

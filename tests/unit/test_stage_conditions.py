"""Entry conditions of a stage (`before_entry`): the spec's rules (pipeline/conditions.py), their checks at run
time (stages/conditions.py) against the clock and moto's CloudWatch, the Conditions task and its trigger."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent

from release_orchestrator.operators.stage_conditions import EntryConditionFailed, StageConditionsOperator
from release_orchestrator.pipeline.compiler import build_dag
from release_orchestrator.pipeline.conditions import window_cron, window_is_open, window_opens
from release_orchestrator.pipeline.loader import load_spec_text, parse_spec_text
from release_orchestrator.stages.conditions import RuleContext, evaluate
from release_orchestrator.triggers.stage_conditions import StageConditionsTrigger
from tests.integration.helpers import put_alarm
from tests.unit.fakes import FakeTaskInstance, task_context

UTC = timezone.utc
WHERE = RuleContext("cond", "Deploy", "manual__1", "aws_default", "us-east-1")

SPEC = """\
pipeline:
  name: cond
  execution_mode: {mode}
  variables:
    - {{name: flavour, default: full}}
  stages:
    - name: Build
      actions:
        - name: Compile
          type: build.codebuild
          namespace: Build
          configuration: {{project_name: webapp-build}}
    - name: Deploy
      before_entry:
{condition}
      actions:
        - name: Ship
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
    - name: Final
      actions:
        - name: Announce
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
"""

WINDOW_AND_ALARM = """\
        rules:
          - name: Hours
            type: DeploymentWindow
            configuration: {cron: "* * 9-16 ? * MON-FRI", time_zone: Europe/Berlin}
          - name: Healthy
            type: CloudWatchAlarm
            configuration: {alarm_name: webapp-5xx}"""

SKIP_ON_VARIABLE = """\
        result: SKIP
        rules:
          - name: Full
            type: VariableCheck
            configuration: {variable: "#{variables.flavour}", value: full}"""


def spec(condition: str, mode: str = "QUEUED") -> str:
    return SPEC.format(condition=condition, mode=mode)


def errors_of(text: str) -> dict[str, str]:
    _, errors = parse_spec_text(text, source="cond.yaml")
    return {f"{e.line}:{e.field}": e.message for e in errors}


# ---- the spec ----------------------------------------------------------------------------------------


def test_codepipeline_cron_becomes_five_fields_with_sunday_zero():
    assert window_cron("* * 9-16 ? * MON-FRI") == "* 9-16 * * MON-FRI"
    assert window_cron("0 30 8 ? * 2-6 *") == "30 8 * * 1-5"  # 1-7 is SUN-SAT in CodePipeline's cron
    assert window_cron("* 0/15 * ? * 2#1") == "0/15 * * * 1#1"  # steps and the nth weekday keep their numbers
    for bad, message in [
        ("* 9-16 * * MON-FRI", "expected 6 fields"),
        ("5 * * ? * *", "seconds field must be '*'"),
        ("* * * ? * * 2027", "year field must be '*'"),
        ("* * * ? * ?", "only one of day-of-month and day-of-week"),
        ("* 99 * ? * *", "not a valid cron expression"),
    ]:
        with pytest.raises(ValueError, match=message):
            window_cron(bad)


def test_a_window_is_open_by_the_minute_in_its_time_zone():
    # Friday 2026-12-04 15:59 UTC is 16:59 in Berlin: open; a minute later (17:00 Berlin) it is closed.
    friday = datetime(2026, 12, 4, 15, 59, 30, tzinfo=UTC)
    assert window_is_open("* * 9-16 ? * MON-FRI", "Europe/Berlin", friday)
    assert not window_is_open("* * 9-16 ? * MON-FRI", "Europe/Berlin", friday + timedelta(minutes=1))
    # It opens again on Monday at 09:00 Berlin, 08:00 UTC.
    later = window_opens("* * 9-16 ? * MON-FRI", "Europe/Berlin", friday + timedelta(minutes=1))
    assert later == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def test_entry_conditions_are_checked_with_the_file_stage_and_field():
    assert errors_of(spec(WINDOW_AND_ALARM)) == {}
    assert errors_of(spec(SKIP_ON_VARIABLE)) == {}
    bad = spec(
        """\
        result: SKIP
        rules:
          - name: Hours
            type: DeploymentWindow
            configuration: {cron: "* 9-16 * * MON-FRI", time_zone: Mars/Base}
          - name: Branch
            type: VariableCheck
            configuration: {variable: "#{Bild.Branch}", value: "(", operator: MATCHES}
          - name: Alarm
            type: CloudWatchAlarms
            configuration: {alarm_name: x}"""
    )
    assert errors_of(bad) == {
        "18:before_entry.rules[0].type": "result SKIP takes VariableCheck, LambdaInvoke rules only (as "
        "CodePipeline); use result FAIL",
        "19:before_entry.rules[0].configuration.cron": "cron '* 9-16 * * MON-FRI': expected 6 fields (seconds "
        "minutes hours day-of-month month day-of-week) and an optional year, e.g. '* * 9-16 ? * MON-FRI'",
        "19:before_entry.rules[0].configuration.time_zone": "unknown time zone 'Mars/Base'; use an IANA name such "
        "as UTC or Europe/Berlin",
        "22:before_entry.rules[1].configuration.value": "not a regular expression (missing ), unterminated "
        "subpattern at position 0)",
        "22:before_entry.rules[1].configuration.variable": "#{Bild.Branch}: namespace 'Bild' is not set by any "
        "action (did you mean 'Build'?); namespaces: Build",
        "24:before_entry.rules[2].type": "unknown rule type 'CloudWatchAlarms' (did you mean 'CloudWatchAlarm'?); "
        "known: DeploymentWindow, CloudWatchAlarm, VariableCheck, LambdaInvoke",
    }


def test_a_condition_may_not_skip_an_approval_or_take_the_conditions_task_name():
    text = spec(SKIP_ON_VARIABLE).replace(
        "        - name: Ship\n          type: build.codebuild\n          configuration: {project_name: webapp-build}",
        "        - name: Conditions\n          type: approval.manual",
    )
    messages = set(errors_of(text).values())
    assert any("result SKIP cannot skip a stage with an approval" in m for m in messages)
    assert any("starts with the task Conditions, which checks its entry conditions; rename" in m for m in messages)


# ---- the DAG ------------------------------------------------------------------------------------------


def test_the_conditions_task_comes_before_the_stages_actions_and_a_skipped_stage_lets_the_run_go_on():
    dag = build_dag(load_spec_text(spec(SKIP_ON_VARIABLE)))
    conditions = dag.task_dict["Deploy.Conditions"]
    assert conditions.upstream_task_ids == {"Build.Compile", "Deploy.Enter"}
    assert dag.task_dict["Deploy.Ship"].upstream_task_ids == {"Deploy.Conditions"}
    assert conditions.rules[0]["configuration"]["variable"] == "{{ params['flavour'] }}"
    # The run holds the stage while it checks (or waits for a window), as while its actions run.
    assert dag.task_dict["Deploy.Enter"].action_task_ids == ["Deploy.Conditions", "Deploy.Ship"]
    # The next stage runs after a skipped one (none failed), while a skipped Conditions skips its own stage.
    assert dag.task_dict["Final.Announce"].trigger_rule == "none_failed"
    assert dag.task_dict["Deploy.Ship"].trigger_rule == "all_success"
    failing = build_dag(load_spec_text(spec(WINDOW_AND_ALARM, mode="PARALLEL")))
    assert failing.task_dict["Deploy.Conditions"].trigger_rule == "none_failed"
    assert failing.task_dict["Deploy.Conditions"].upstream_task_ids == {"Build.Compile"}


# ---- at run time -------------------------------------------------------------------------------------


def window(cron: str) -> dict:
    return {"name": "Hours", "type": "DeploymentWindow", "configuration": {"cron": cron, "time_zone": "UTC"}}


def alarm(name: str) -> dict:
    return {"name": "Healthy", "type": "CloudWatchAlarm", "configuration": {"alarm_name": name}}


def variable(value: str, operator: str = "EQ", expected: str = "main") -> dict:
    configuration = {"variable": value, "operator": operator, "value": expected}
    return {"name": "Branch", "type": "VariableCheck", "configuration": configuration}


@pytest.fixture
def alarms(moto_aws):
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
    for name, state in (("quiet", "OK"), ("firing", "ALARM")):
        put_alarm(cloudwatch, name, state)
    return cloudwatch


def test_a_closed_window_asks_nothing_else_and_says_when_it_opens(alarms):
    noon = datetime(2026, 12, 4, 12, 0, 30, tzinfo=UTC)
    waiting = evaluate([window("* * 13 ? * *"), alarm("firing")], WHERE, now=noon)
    assert waiting.opens_at == datetime(2026, 12, 4, 13, 0, tzinfo=UTC) and waiting.checked == []
    # Two windows: the first minute both are open.
    both = evaluate([window("* * 13-14 ? * *"), window("* 30-59 * ? * *")], WHERE, now=noon)
    assert both.opens_at == datetime(2026, 12, 4, 13, 30, tzinfo=UTC)
    with pytest.raises(ValueError, match="never open at the same time"):
        evaluate([window("* * 13 ? * *"), window("* * 14 ? * *")], WHERE, now=noon)
    # A cron only known at run time (a reference) is checked then, naming the rule.
    with pytest.raises(ValueError, match=r"rule Hours \(DeploymentWindow\): configuration.cron '\* \* 25 \? \* \*'"):
        evaluate([window("* * 25 ? * *")], WHERE, now=noon)


def test_every_rule_is_checked_and_each_failure_named(alarms):
    met = evaluate([window("* * * ? * *"), alarm("quiet"), variable("main")], WHERE)
    assert met.met and [r["detail"] for r in met.checked][1:] == ["alarm 'quiet' is OK", "'main' EQ 'main'"]
    failed = evaluate([alarm("firing"), alarm("missing"), variable("release/1", "MATCHES", "^main$")], WHERE)
    assert not failed.met
    assert failed.failures() == (
        "rule Healthy (CloudWatchAlarm): alarm 'firing' is in state ALARM; "
        "rule Healthy (CloudWatchAlarm): there is no alarm named 'missing'; "
        "rule Branch (VariableCheck): 'release/1' MATCHES '^main$' is false"
    )
    # A value only known at run time is checked then.
    assert (
        evaluate([variable("main", "LIKE")], WHERE)
        .failures()
        .startswith(
            "rule Branch (VariableCheck): configuration.operator 'LIKE': 'LIKE' is not one of EQ, NE, CONTAINS, MATCHES"
        )
    )


def conditions_op(result: str, rules: list[dict]) -> StageConditionsOperator:
    return StageConditionsOperator(task_id="Conditions", stage="Deploy", result=result, rules=rules)


def test_the_task_enters_fails_skips_or_defers_until_the_window_opens(alarms):
    context = task_context(FakeTaskInstance())
    entered = conditions_op("FAIL", [alarm("quiet")]).execute(context)
    assert (entered["Result"], entered["Rules"][0]["passed"]) == ("ENTERED", True)
    with pytest.raises(EntryConditionFailed, match="stage Deploy: entry condition not met: rule Healthy"):
        conditions_op("FAIL", [alarm("firing")]).execute(context)
    assert context["ti"].xcom["return_value"]["Result"] == "FAILED"
    with pytest.raises(AirflowSkipException, match="skipped: stage Deploy: entry condition not met: rule Branch"):
        conditions_op("SKIP", [variable("release/1")]).execute(context)
    assert context["ti"].xcom["return_value"]["Result"] == "SKIPPED"
    next_minute = datetime.now(UTC) + timedelta(minutes=1)
    with pytest.raises(TaskDeferred) as deferred:
        conditions_op("FAIL", [window(f"* {next_minute.minute} {next_minute.hour} ? * *")]).execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, StageConditionsTrigger)
    assert datetime.fromisoformat(trigger.opens_at) == next_minute.replace(second=0, microsecond=0)


def run_trigger(trigger: StageConditionsTrigger, monkeypatch) -> tuple[object, dict]:
    written: dict = {}
    monkeypatch.setattr(
        "release_orchestrator.triggers.base.write_task_xcom", lambda ti, key, value: written.__setitem__(key, value)
    )
    monkeypatch.setattr("release_orchestrator.triggers.base.announce_failure", lambda *args: None)
    trigger.task_instance = SimpleNamespace(dag_id="cond", task_id="Deploy.Conditions", run_id="manual__1")

    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(asyncio.wait_for(first(), 10)), written


def test_the_trigger_checks_every_rule_once_the_window_opens_and_ends_the_task(alarms, monkeypatch):
    def trigger(result: str, rules: list[dict]) -> StageConditionsTrigger:
        opened = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        return StageConditionsTrigger(where=WHERE.__dict__, result=result, rules=rules, opens_at=opened, since=opened)

    event, written = run_trigger(trigger("FAIL", [window("* * * ? * *"), alarm("quiet")]), monkeypatch)
    assert isinstance(event, TaskSuccessEvent) and written["return_value"]["Result"] == "ENTERED"
    assert written["return_value"]["WaitedSeconds"] >= 1
    event, written = run_trigger(trigger("FAIL", [window("* * * ? * *"), alarm("firing")]), monkeypatch)
    assert isinstance(event, TaskFailedEvent)
    assert written["failure_reason"] == (
        "stage Deploy: entry condition not met: rule Healthy (CloudWatchAlarm): alarm 'firing' is in state ALARM"
    )
    event, written = run_trigger(trigger("SKIP", [variable("release/1")]), monkeypatch)
    assert isinstance(event, TaskSkippedEvent) and written["return_value"]["Result"] == "SKIPPED"

"""A stage's success conditions (`on_success`) and automatic retry (`on_failure: {result: RETRY}`): the spec,
the SuccessConditions task and its place in the DAG, the watch of an alarm (triggers/stage_conditions.py, against
moto's CloudWatch), what a rollback counts as a stage that succeeded, and the retries a RETRY stage's actions get."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import boto3
import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent

from release_orchestrator.operators.stage_conditions import StageSuccessConditionsOperator, SuccessConditionFailed
from release_orchestrator.pipeline.compiler import build_dag
from release_orchestrator.pipeline.loader import load_spec_text, parse_spec_text
from release_orchestrator.stages.conditions import RuleContext
from release_orchestrator.stages.rollback import stage_actions, stage_succeeded
from release_orchestrator.triggers.stage_conditions import StageSuccessWatchTrigger
from tests.integration.helpers import put_alarm
from tests.unit.fakes import FakeTaskInstance, task_context

UTC = timezone.utc
WHERE = RuleContext("ok", "Deploy", "manual__1", "aws_default", "us-east-1")

SPEC = """\
pipeline:
  name: ok
  execution_mode: QUEUED
  stages:
    - name: Build
{build_extra}      actions:
        - name: Compile
          type: build.codebuild
          namespace: Build
          configuration: {{project_name: webapp-build}}
    - name: Deploy
{deploy_extra}      actions:
        - name: {deploy_name}
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
        - name: Check
          type: approval.manual
          run_order: 2
    - name: Final
      actions:
        - name: Announce
          type: build.codebuild
          configuration: {{project_name: webapp-build}}
"""
WATCH = """\
      on_success:
        result: {result}
        rules:
          - name: No5xx
            type: CloudWatchAlarm
            configuration: {{alarm_name: webapp-5xx, wait_time: {wait}}}
"""


def spec(deploy_extra: str = "", build_extra: str = "", deploy_name: str = "Ship") -> str:
    return SPEC.format(deploy_extra=deploy_extra, build_extra=build_extra, deploy_name=deploy_name)


def watch(result: str = "ROLLBACK", wait: str = "5") -> str:
    return WATCH.format(result=result, wait=wait)


def errors_of(text: str) -> dict[str, str]:
    _, errors = parse_spec_text(text, source="ok.yaml")
    return {f"{e.stage}:{e.field}": e.message for e in errors}


# ---- the spec ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, where, message",
    [
        (spec(watch("RETRY")), "Deploy:on_success.result", "'RETRY' is not one of FAIL, ROLLBACK"),
        (spec(watch(wait="0")), "Deploy:on_success.rules[0].configuration.wait_time", "above 0 and at most 1440"),
        (spec(watch(wait="soon")), "Deploy:on_success.rules[0].configuration.wait_time", "expected a number"),
        (spec(watch(wait="'2000'")), "Deploy:on_success.rules[0].configuration.wait_time", "at most 1440"),
        (spec(build_extra=watch()), "Build:on_success.result", "first stage cannot be rolled back"),
        (spec(watch(), deploy_name="SuccessConditions"), "Deploy:name", "ends with the task SuccessConditions"),
        (spec(watch(), deploy_name="Rollback"), "Deploy:name", "has the task Rollback"),
        (
            spec(
                "      on_success:\n        rules:\n          - name: Hours\n            type: DeploymentWindow\n"
                "            configuration: {cron: '* * 9-16 ? * *'}\n"
            ),
            "Deploy:on_success.rules[0].type",
            "put it in before_entry",
        ),
        (
            spec(
                "      before_entry:\n        rules:\n          - name: Quiet\n            type: CloudWatchAlarm\n"
                "            configuration: {alarm_name: a, wait_time: 3}\n"
            ),
            "Deploy:before_entry.rules[0].configuration.wait_time",
            "belongs to on_success rules",
        ),
        (
            spec(
                "      on_success:\n        rules:\n          - {name: V, type: VariableCheck, "
                "configuration: {variable: '#{Later.X}', value: a}}\n"
            ),
            "Deploy:on_success.rules[0].configuration.variable",
            "namespace 'Later' is not set by any action",
        ),
        (spec("      on_failure: {result: RETRY, max_attempts: 9}\n"), "Deploy:on_failure.max_attempts", "1 to 5"),
        (
            spec("      on_failure: {result: RETRY, retry_mode: ALL_ACTIONS}\n"),
            "Deploy:on_failure.retry_mode",
            "ALL_ACTIONS is not retried automatically",
        ),
        (
            spec("      on_failure: {result: FAIL, max_attempts: 2}\n"),
            "Deploy:on_failure.max_attempts",
            "only result RETRY",
        ),
    ],
)
def test_success_condition_and_retry_errors_name_the_stage_and_field(text, where, message):
    errors = errors_of(text)
    assert where in errors, errors
    assert message in errors[where]


def test_success_conditions_come_after_the_stages_actions_and_hold_the_next_stage_and_the_door():
    dag = build_dag(load_spec_text(spec(watch())))
    check = dag.task_dict["Deploy.SuccessConditions"]
    assert check.upstream_task_ids == {"Deploy.Check"}
    assert dag.task_dict["Final.Announce"].upstream_task_ids == {"Deploy.SuccessConditions", "Final.Enter"}
    assert (check.result, check.rules[0]["configuration"]) == ("ROLLBACK", {"alarm_name": "webapp-5xx", "wait_time": 5})
    # While it watches, the run holds the stage; a run that failed it holds the stage until its rollback is done.
    assert dag.task_dict["Deploy.Enter"].action_task_ids == [
        "Deploy.Ship",
        "Deploy.Check",
        "Deploy.SuccessConditions",
        "Deploy.Rollback",
    ]
    rollback = dag.task_dict["Deploy.Rollback"]
    assert rollback.upstream_task_ids == {"Deploy.Ship", "Deploy.Check", "Deploy.SuccessConditions"}
    # on_success ROLLBACK alone: the success conditions failing roll back, an action failing does not.
    assert rollback.cause_task_ids == ["Deploy.SuccessConditions"]
    assert rollback.success_task_ids == ["Deploy.Ship", "Deploy.Check", "Deploy.SuccessConditions"]
    assert rollback.action_task_ids == ["Deploy.Ship", "Deploy.Check"]  # what a rollback run's wait is for
    both = build_dag(load_spec_text(spec("      on_failure: {result: ROLLBACK}\n" + watch())))
    assert both.task_dict["Deploy.Rollback"].cause_task_ids == [
        "Deploy.Ship",
        "Deploy.Check",
        "Deploy.SuccessConditions",
    ]
    failing = build_dag(load_spec_text(spec(watch("FAIL"))))
    assert "Deploy.Rollback" not in failing.task_dict
    assert "Deploy.SuccessConditions" in failing.task_dict["Deploy.Enter"].action_task_ids


def test_a_retry_stage_gives_its_actions_but_not_its_approval_more_attempts_at_once():
    dag = build_dag(load_spec_text(spec("      on_failure: {result: RETRY, max_attempts: 2}\n")))
    ship = dag.task_dict["Deploy.Ship"]
    assert (ship.retries, ship.retry_delay) == (2, timedelta(0))
    assert dag.task_dict["Deploy.Check"].retries == 0  # a rejection is a decision
    assert dag.task_dict["Build.Compile"].retries == 0 and dag.task_dict["Final.Announce"].retries == 0
    assert build_dag(load_spec_text(spec("      on_failure: {result: RETRY}\n"))).task_dict["Deploy.Ship"].retries == 1


def test_a_run_from_before_the_stage_had_success_conditions_still_counts_as_succeeded():
    ids = ["Deploy.Ship", "Deploy.SuccessConditions"]
    assert stage_succeeded({"Deploy.Ship": "success"}, ids)  # no such task then
    assert not stage_succeeded({"Deploy.Ship": "success", "Deploy.SuccessConditions": "failed"}, ids)
    assert not stage_succeeded({"Deploy.Ship": "success", "Deploy.SuccessConditions": None}, ids)  # not checked yet
    assert not stage_succeeded({}, ids)
    assert stage_actions(["Deploy.Enter", "Deploy.Ship", "Deploy.SuccessConditions", "Deploy.Rollback"]) == ids


# ---- at run time ---------------------------------------------------------------------------------------
@pytest.fixture
def cloudwatch(moto_aws):
    client = boto3.client("cloudwatch", region_name="us-east-1")
    for name, state in (("quiet", "OK"), ("firing", "ALARM")):
        put_alarm(client, name, state)
    return client


def alarm(name: str, wait_time: float | None = None) -> dict:
    configuration = {"alarm_name": name, **({"wait_time": wait_time} if wait_time else {})}
    return {"name": "No5xx", "type": "CloudWatchAlarm", "configuration": configuration}


def success_op(rules: list[dict], result: str = "ROLLBACK") -> StageSuccessConditionsOperator:
    return StageSuccessConditionsOperator(task_id="SuccessConditions", stage="Deploy", result=result, rules=rules)


def run_context(conf: dict | None = None) -> dict:
    context = task_context(FakeTaskInstance())
    return {**context, "dag_run": SimpleNamespace(run_id=context["run_id"], conf=conf or {})}


def test_the_task_passes_fails_watches_or_skips_in_a_rollback_run(cloudwatch):
    context = run_context()
    passed = success_op([alarm("quiet")]).execute(context)
    assert (passed["Result"], passed["WatchedSeconds"]) == ("SUCCEEDED", 0)
    with pytest.raises(
        SuccessConditionFailed, match="success condition not met: .*'firing' is in state ALARM; it is rolled back"
    ):
        success_op([alarm("firing", 5)]).execute(context)  # already in ALARM: no watch
    assert context["ti"].xcom["return_value"]["Result"] == "FAILED"
    with pytest.raises(TaskDeferred) as deferred:
        success_op([alarm("quiet", 0.5)], result="FAIL").execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, StageSuccessWatchTrigger) and trigger.rules == [alarm("quiet", 0.5)]
    assert trigger.result == "FAIL" and trigger.check_interval == 30
    rollback_run = run_context({"rollback": {"stage": "Deploy", "target_run_id": "r1"}})
    with pytest.raises(AirflowSkipException, match="rollback of stage Deploy"):
        success_op([alarm("firing")]).execute(rollback_run)


def run_watch(trigger: StageSuccessWatchTrigger, monkeypatch, timeout: float = 10) -> tuple[object, dict]:
    written: dict = {}
    monkeypatch.setattr(
        "release_orchestrator.triggers.base.write_task_xcom", lambda ti, key, value: written.__setitem__(key, value)
    )
    monkeypatch.setattr("release_orchestrator.triggers.base.announce_failure", lambda *args: None)
    trigger.task_instance = SimpleNamespace(dag_id="ok", task_id="Deploy.SuccessConditions", run_id="manual__1")

    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(asyncio.wait_for(first(), timeout)), written


def watch_trigger(rules: list[dict], since: datetime | None = None) -> StageSuccessWatchTrigger:
    since = (since or datetime.now(UTC)).isoformat()
    return StageSuccessWatchTrigger(
        where=WHERE.__dict__, result="ROLLBACK", rules=rules, since=since, check_interval=0.2
    )


def test_the_watch_ends_the_task_failed_when_the_alarm_fires_and_succeeded_when_the_time_is_up(cloudwatch, monkeypatch):
    # Quiet for its wait time (3 s): succeeded, after the whole watch.
    event, written = run_watch(watch_trigger([alarm("quiet", 0.05)]), monkeypatch)
    assert isinstance(event, TaskSuccessEvent)
    assert written["return_value"]["Result"] == "SUCCEEDED" and written["return_value"]["WatchedSeconds"] >= 3

    # It fires one second into a minute's watch: failed then, not at the end.
    firing_later = threading.Timer(
        1.0, lambda: cloudwatch.set_alarm_state(AlarmName="quiet", StateValue="ALARM", StateReason="5xx")
    )
    firing_later.start()
    started = datetime.now(UTC)
    event, written = run_watch(watch_trigger([alarm("quiet", 1)]), monkeypatch)
    assert isinstance(event, TaskFailedEvent)
    assert (datetime.now(UTC) - started).total_seconds() < 10
    assert written["failure_reason"] == (
        "stage Deploy: success condition not met: rule No5xx (CloudWatchAlarm): alarm 'quiet' is in state ALARM; "
        "it is rolled back"
    )
    assert written["return_value"]["Result"] == "FAILED"

    # Started again after a triggerer restart, past its deadline: one last look, no new watch.
    cloudwatch.set_alarm_state(AlarmName="quiet", StateValue="OK", StateReason="recovered")
    event, written = run_watch(
        watch_trigger([alarm("quiet", 1)], since=datetime.now(UTC) - timedelta(hours=1)), monkeypatch
    )
    assert isinstance(event, TaskSuccessEvent) and written["return_value"]["WatchedSeconds"] >= 3600


def test_an_alarm_cloudwatch_does_not_answer_for_is_asked_again_not_taken_for_an_alarm(cloudwatch, monkeypatch):
    from release_orchestrator.hooks.base import AwsCallError
    from release_orchestrator.hooks.cloudwatch import CloudWatchHook

    calls = []
    real = CloudWatchHook.alarm_state

    def throttled_once(self, name):
        calls.append(name)
        if len(calls) == 1:
            raise AwsCallError("DescribeAlarms", "alarm 'quiet'", "Throttling", "Throttling: Rate exceeded")
        return real(self, name)

    monkeypatch.setattr(CloudWatchHook, "alarm_state", throttled_once)
    event, _ = run_watch(watch_trigger([alarm("quiet", 0.02)]), monkeypatch)
    assert isinstance(event, TaskSuccessEvent) and len(calls) >= 2

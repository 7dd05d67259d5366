"""The wait for a stage's deployment window, and the watch of its success conditions' alarms
(operators/stage_conditions.py).

It sleeps until the window opens, checks every rule of the condition again (stages/conditions.py, in a
thread) and ends the task itself: TaskSuccessEvent when the condition is met, TaskSkippedEvent (result SKIP)
or TaskFailedEvent (result FAIL, with the reason and the failure notifications) when not; if the window
closed again meanwhile, it sleeps until the next opening. Ending the task here, not on a worker, leaves no
window for apache/airflow#72716 (see triggers/base.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from release_orchestrator.pipeline.conditions import wait_minutes
from release_orchestrator.stages.conditions import (
    ENTERED,
    SKIPPED,
    Evaluation,
    RuleContext,
    evaluate,
    not_met,
    outcome_record,
    success_not_met,
    success_record,
)
from release_orchestrator.triggers import base as trigger_base

MAX_SLEEP_SECONDS = 300.0  # look at the clock again at least this often (a suspended host, a clock change)


def fail_task(trigger: Any, reason: str) -> TriggerEvent:
    """The event that fails a conditions trigger's task, its reason recorded and its failure notices published."""
    ti = trigger.task_instance
    write = lambda key, value: trigger_base.write_task_xcom(ti, key, value)  # noqa: E731
    return trigger_base.failed_task_event(write, trigger.failure_notices, ti, reason, trigger.log)


class StageConditionsTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        where: dict[str, Any],
        result: str,
        rules: list[dict[str, Any]],
        opens_at: str,
        since: str,
        failure_notices: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.where, self.result, self.rules = dict(where), result, list(rules)
        self.opens_at, self.since, self.failure_notices = opens_at, since, failure_notices

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "where": self.where,
                "result": self.result,
                "rules": self.rules,
                "opens_at": self.opens_at,
                "since": self.since,
                "failure_notices": self.failure_notices,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        opens_at = datetime.fromisoformat(self.opens_at)
        while True:
            remaining = (opens_at - datetime.now(timezone.utc)).total_seconds()
            if remaining > 0:
                await asyncio.sleep(min(remaining, MAX_SLEEP_SECONDS))
                continue
            try:
                evaluation = await asyncio.to_thread(evaluate, self.rules, RuleContext(**self.where))
            except ValueError as problem:  # windows that never open together: nothing to wait for
                yield await asyncio.to_thread(self.fail, str(problem))
                return
            if evaluation.opens_at is not None:
                self.log.info("The window closed again: waiting until %s", evaluation.opens_at.isoformat())
                opens_at = evaluation.opens_at
                continue
            yield await asyncio.to_thread(self.finish, evaluation)
            return

    def finish(self, evaluation) -> TriggerEvent:
        waited = (datetime.now(timezone.utc) - datetime.fromisoformat(self.since)).total_seconds()
        record = outcome_record(self.where["stage"], self.result, evaluation, self.log, waited)
        trigger_base.write_task_xcom(self.task_instance, trigger_base.XCOM_RETURN_KEY, record)
        if record["Result"] == ENTERED:
            return TaskSuccessEvent()
        if record["Result"] == SKIPPED:
            return TaskSkippedEvent()
        return self.fail(not_met(self.where["stage"], evaluation))

    def fail(self, reason: str) -> TriggerEvent:
        return fail_task(self, reason)


class StageSuccessWatchTrigger(BaseTrigger):
    """Watches the alarms of a stage's success conditions (CloudWatchAlarm rules with a `wait_time`), each
    from `since` for its wait_time, looking every `check_interval` seconds and once more at the end.

    It ends the task itself: TaskFailedEvent (with the reason and the failure notifications) as soon as an
    alarm is in one of its rule's `alarm_states` (or is gone), TaskSuccessEvent when every watch is over. An
    alarm CloudWatch did not tell about (an AWS error) is asked again, until its deadline.
    The deadlines count from `since`, so a trigger started again after a triggerer restart watches only
    what is left.
    """

    def __init__(
        self,
        *,
        where: dict[str, Any],
        result: str,
        rules: list[dict[str, Any]],
        since: str,
        check_interval: float,
        failure_notices: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.where, self.result, self.rules = dict(where), result, list(rules)
        self.since, self.check_interval, self.failure_notices = since, float(check_interval), failure_notices

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "where": self.where,
                "result": self.result,
                "rules": self.rules,
                "since": self.since,
                "check_interval": self.check_interval,
                "failure_notices": self.failure_notices,
            },
        )

    def deadlines(self) -> list[tuple[dict[str, Any], datetime]]:
        since = datetime.fromisoformat(self.since)
        return [
            (rule, since + timedelta(minutes=wait_minutes(rule["configuration"]["wait_time"]) or 0))
            for rule in self.rules
        ]

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadlines = self.deadlines()
        while True:
            now = datetime.now(timezone.utc)
            evaluation = await asyncio.to_thread(evaluate, [rule for rule, _ in deadlines], RuleContext(**self.where))
            time_left = any(until > now for _, until in deadlines)
            # An alarm in one of its states fails the watch at once; one CloudWatch did not answer for (an AWS
            # error) is asked again while any watch has time left, and fails it after.
            if (not evaluation.met and not evaluation.unanswered) or not time_left:
                yield await asyncio.to_thread(self.finish, evaluation)
                return
            if evaluation.unanswered:
                self.log.warning("Could not read an alarm, looking again: %s", evaluation.failures())
            unanswered = {check["rule"] for check in evaluation.checked if check.get("unanswered")}
            # A rule is looked at until its deadline and once at or after it (again while unanswered).
            deadlines = [(rule, until) for rule, until in deadlines if until > now or rule["name"] in unanswered]
            next_deadline = min(until for _, until in deadlines if until > now)
            wait = (next_deadline - datetime.now(timezone.utc)).total_seconds()
            await asyncio.sleep(max(0.0, min(self.check_interval, wait)))

    def finish(self, evaluation: Evaluation) -> TriggerEvent:
        ti = self.task_instance
        stage = self.where["stage"]
        watched = (datetime.now(timezone.utc) - datetime.fromisoformat(self.since)).total_seconds()
        trigger_base.write_task_xcom(
            ti, trigger_base.XCOM_RETURN_KEY, success_record(stage, evaluation, self.log, watched)
        )
        if evaluation.met:
            return TaskSuccessEvent()
        return fail_task(self, success_not_met(stage, self.result, evaluation))

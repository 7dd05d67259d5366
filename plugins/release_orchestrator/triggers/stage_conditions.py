"""The wait for a stage's deployment window (operators/stage_conditions.py).

It sleeps until the window opens, checks every rule of the condition again (stages/conditions.py, in a
thread) and ends the task itself: TaskSuccessEvent when the condition is met, TaskSkippedEvent (result SKIP)
or TaskFailedEvent (result FAIL, with the reason and the failure notifications) when not; if the window
closed again meanwhile, it sleeps until the next opening. Ending the task here, not on a worker, leaves no
window for apache/airflow#72716 (see triggers/base.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent

from release_orchestrator.stages.conditions import ENTERED, SKIPPED, RuleContext, evaluate, not_met, outcome_record
from release_orchestrator.triggers import base as trigger_base

MAX_SLEEP_SECONDS = 300.0  # look at the clock again at least this often (a suspended host, a clock change)


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
        ti = self.task_instance
        write = lambda key, value: trigger_base.write_task_xcom(ti, key, value)  # noqa: E731
        return trigger_base.failed_task_event(write, self.failure_notices, ti, reason, self.log)

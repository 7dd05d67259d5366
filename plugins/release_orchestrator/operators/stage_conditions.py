"""<Stage>.Conditions: a stage's entry conditions (`before_entry`), checked before any of its actions;
<Stage>.SuccessConditions: its success conditions (`on_success`), after them (StageSuccessConditionsOperator).

- Every rule passes: the task succeeds and the stage's actions start.
- A deployment window is closed: the task defers until it opens (no worker slot); its trigger
  (triggers/stage_conditions.py) checks the rules again then and ends the task itself.
- A rule fails: with result FAIL the task fails (the stage and the run with it, notified as any failed
  action); with result SKIP the task is skipped, so are the stage's actions, and the run goes on with the
  next stage.

What each rule saw is the task's output (`Result`, `Rules`), in the task log and in the failure's reason.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from release_orchestrator.notifications.messages import now_iso
from release_orchestrator.notifications.notifier import failure_notices
from release_orchestrator.stages.conditions import (
    FAILED,
    SKIPPED,
    RuleContext,
    evaluate,
    not_met,
    outcome_record,
    success_not_met,
    success_record,
    watch_seconds,
    watched_rules,
)
from release_orchestrator.triggers.stage_conditions import StageConditionsTrigger, StageSuccessWatchTrigger

DEFAULT_WATCH_INTERVAL = 30.0  # seconds between looks at an alarm a success condition watches


class EntryConditionFailed(AirflowFailException):
    """A rule of the stage's entry condition failed (result FAIL); no retry would change that."""


class _StageRulesOperator(BaseOperator):
    """What a stage's entry and success conditions tasks share: the stage, its rules and what a failed one does.

    :param stage: the stage's name.
    :param result: what a failed rule does: one of RESULTS.
    :param rules: the rules as the spec gives them ({name, type, configuration, region?, aws_conn_id?}); the
        configuration's ``#{...}`` references are resolved when the task runs.
    :param aws_conn_id: / :param region_name: the pipeline's, for rules that name none.
    """

    RESULTS: tuple[str, ...] = ()
    template_fields = ("rules",)
    ui_color = "#eef2f7"

    def __init__(
        self,
        *,
        stage: str,
        result: str,
        rules: list[dict[str, Any]],
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if result not in self.RESULTS:
            raise ValueError(f"{self.__class__.__name__}: result must be {' or '.join(self.RESULTS)}, not {result!r}")
        self.stage, self.result, self.rules = stage, result, rules
        self.aws_conn_id, self.region_name = aws_conn_id, region_name

    def rule_context(self, context: Any) -> RuleContext:
        ti = context["ti"]
        return RuleContext(ti.dag_id, self.stage, ti.run_id, self.aws_conn_id, self.region_name)


class StageConditionsOperator(_StageRulesOperator):
    """Check the entry conditions of `stage` (see the module docstring); result FAIL or SKIP."""

    RESULTS = ("FAIL", "SKIP")

    def execute(self, context: Any) -> dict[str, Any]:
        evaluation = evaluate(self.rules, self.rule_context(context))
        if evaluation.opens_at is not None:
            self.log.info(
                "Stage %s: a deployment window is closed; waiting until %s (no worker slot is used)",
                self.stage,
                evaluation.opens_at.isoformat(),
            )
            self.defer(
                trigger=StageConditionsTrigger(
                    where=self.rule_context(context).__dict__,
                    result=self.result,
                    rules=self.rules,
                    opens_at=evaluation.opens_at.isoformat(),
                    since=now_iso(),
                    failure_notices=failure_notices(self, context),
                ),
                method_name="execute_complete",
            )
        record = outcome_record(self.stage, self.result, evaluation, self.log)
        if record["Result"] == SKIPPED:
            context["ti"].xcom_push("return_value", record)
            raise AirflowSkipException(f"skipped: {not_met(self.stage, evaluation)}")
        if record["Result"] == FAILED:
            context["ti"].xcom_push("return_value", record)
            raise EntryConditionFailed(not_met(self.stage, evaluation))
        return record

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Only for a trigger that fired a plain event instead of ending the task (it never does today)."""
        return self.execute(context)


class SuccessConditionFailed(AirflowFailException):
    """A rule of the stage's success condition failed (its alarm went into ALARM while watched...)."""


class StageSuccessConditionsOperator(_StageRulesOperator):
    """<Stage>.SuccessConditions: check the success conditions of `stage` once its actions all succeeded.

    - Every rule passes, and no rule watches an alarm: the task succeeds and the run goes on.
    - A CloudWatchAlarm rule has a `wait_time`: the task defers (no worker slot) and its trigger watches the
      alarm that long; it ends the task itself, failed as soon as the alarm is in one of `alarm_states`.
    - A rule fails: the task fails. With result FAIL the stage and the run fail; with result ROLLBACK the
      stage's Rollback task (operators/stage_rollback.py) also rolls the stage back.
    - In a rollback run the task is skipped: a rollback is the remedy, not a release to watch.

    :param stage: / :param result: / :param rules: / :param aws_conn_id: / :param region_name: as
        _StageRulesOperator's; result is FAIL or ROLLBACK.
    :param check_interval: seconds between looks at the watched alarms.
    """

    RESULTS = ("FAIL", "ROLLBACK")

    def __init__(self, *, check_interval: float = DEFAULT_WATCH_INTERVAL, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check_interval = float(check_interval)

    def execute(self, context: Any) -> dict[str, Any]:
        from release_orchestrator.stages.rollback import run_rollback

        if run_rollback(context) is not None:
            raise AirflowSkipException(f"this run is a rollback of stage {self.stage}: its success is not watched")
        ti = context["ti"]
        where = self.rule_context(context)
        evaluation = evaluate(self.rules, where)
        watched = watched_rules(self.rules)
        if evaluation.met and watched:
            self.log.info(
                "Stage %s: watching %s for %.0f s (no worker slot is used)",
                self.stage,
                ", ".join(f"alarm '{r['configuration']['alarm_name']}'" for r in watched),
                watch_seconds(self.rules),
            )
            self.defer(
                trigger=StageSuccessWatchTrigger(
                    where=where.__dict__,
                    result=self.result,
                    rules=watched,
                    since=now_iso(),
                    check_interval=self.check_interval,
                    failure_notices=failure_notices(self, context),
                ),
                method_name="execute_complete",
            )
        record = success_record(self.stage, evaluation, self.log)
        if record["Result"] == FAILED:
            ti.xcom_push("return_value", record)
            raise SuccessConditionFailed(success_not_met(self.stage, self.result, evaluation))
        return record

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        """Only for a trigger that fired a plain event instead of ending the task (it never does today)."""
        raise AirflowFailException(f"success conditions of stage {self.stage}: unexpected event {event!r}")

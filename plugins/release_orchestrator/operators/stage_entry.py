"""<Stage>.Enter: the door of a stage in QUEUED and SUPERSEDED pipelines (stages/entry.py says who enters).

The compiler gives it ``max_active_tis_per_dag=1``, so the scheduler lets one run at a time to the door
of a stage; the others wait in ``scheduled`` without a worker slot. At the door:

- the stage is free: the task succeeds at once and the stage's actions start;
- another run holds it, or the transition into it is disabled (stages/transitions.py): the task defers;
  its trigger (triggers/stage_entry.py) looks again every ``check_interval`` seconds and ends the task
  itself when the stage is free and the transition enabled (no worker at all);
- QUEUED, an older run waits at the same door: the task steps back for ``YIELD_SECONDS``
  (up_for_reschedule, which frees the door) so the older one goes first;
- SUPERSEDED, a newer run waits at the door or has passed it: the run ends here, superseded.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowRescheduleException, AirflowSkipException

from release_orchestrator.notifications.approvals import ApprovalNotifications, publish_superseded
from release_orchestrator.notifications.messages import now_iso
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY
from release_orchestrator.stages import snapshot, transitions
from release_orchestrator.stages.entry import RUN_AFTER_XCOM_KEY, Door, entered, superseded_record
from release_orchestrator.stages.rollback import RollbackRefused, held_for, run_rollback, skip_other_stages
from release_orchestrator.triggers.stage_entry import StageEntryTrigger

# How long a run let to the door out of turn steps back. Longer than a scheduler loop, so the
# scheduler has handled this try's end before the task is queued again.
YIELD_SECONDS = 5.0
DEFAULT_CHECK_INTERVAL = 5.0


class StageSuperseded(AirflowFailException):
    """The run ends at a stage's door: a newer run waits there or has passed it (SUPERSEDED)."""

    def __init__(self, stage: str, superseded_by: str):
        super().__init__(f"stage {stage}: superseded by run {superseded_by}, which is newer")
        self.superseded_by = superseded_by


class StageEntryOperator(BaseOperator):
    """Let this run into the stage when it is its turn (see the module docstring).

    :param stage: the stage's name (for messages).
    :param action_task_ids: task ids of the stage's actions.
    :param first_enter_task_id: task id of the pipeline's first Enter, where each run records its place in line.
    :param mode: QUEUED or SUPERSEDED.
    :param check_interval: seconds between looks while another run holds the stage.
    :param notifications: where a superseded run is announced (the approvals' notification settings).
    """

    ui_color = "#eef2f7"

    def __init__(
        self,
        *,
        stage: str,
        action_task_ids: list[str],
        first_enter_task_id: str,
        mode: str,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        notifications: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("max_active_tis_per_dag", 1)
        super().__init__(**kwargs)
        if mode not in ("QUEUED", "SUPERSEDED"):
            raise ValueError(f"stage entry: mode must be QUEUED or SUPERSEDED, not {mode!r}")
        self.stage = stage
        self.action_task_ids = list(action_task_ids)
        self.first_enter_task_id = first_enter_task_id
        self.mode = mode
        self.check_interval = float(check_interval)
        self.notifications = notifications

    @property
    def door(self) -> Door:
        return Door(self.stage, self.task_id, tuple(self.action_task_ids), self.mode)

    def execute(self, context: Any) -> dict[str, Any]:
        ti = context["ti"]
        run_after = context["dag_run"].run_after
        if self.task_id == self.first_enter_task_id:  # the run's place in line, for triggers to read
            ti.xcom_push(RUN_AFTER_XCOM_KEY, run_after.isoformat())
        self.skip_in_rollback(context)
        snapshot.remember(ti.dag_id, ti.run_id, run_after)
        decision, closed = snapshot.decide_now(
            ti.dag_id, ti.run_id, self.door, self.first_enter_task_id, on_worker=True
        )
        self.log.info("Stage %s: %s", self.stage, decision)
        if decision.kind == "enter":
            return entered(self.stage, waited_seconds=0.0)
        if decision.kind == "yield":
            self.log.info("Run %s is older and waits for stage %s: it goes first", decision.other, self.stage)
            raise AirflowRescheduleException(datetime.now(timezone.utc) + timedelta(seconds=YIELD_SECONDS))
        if decision.kind == "superseded":
            self.end_superseded(context, decision.other)
        if closed is not None:
            self.log.info(
                "The transition into stage %s is %s: waiting until it is enabled (no worker slot is used)",
                self.stage,
                transitions.describe(closed),
            )
        else:
            self.log.info(
                "Run %s holds stage %s: waiting for it to leave (no worker slot is used)", decision.other, self.stage
            )
        self.defer(
            trigger=StageEntryTrigger(
                dag_id=ti.dag_id,
                run_id=ti.run_id,
                run_after=run_after.isoformat(),
                door=self.door.__dict__,
                first_enter_task_id=self.first_enter_task_id,
                check_interval=self.check_interval,
                notifications=self.notifications,
                since=now_iso(),
            ),
            method_name="execute_complete",
        )

    def skip_in_rollback(self, context: Any) -> None:
        """A rollback run (stages/rollback.py) passes no door but its stage's, and not that one either while
        the failed run that started it holds the stage for it."""
        try:
            rollback = run_rollback(context)
        except RollbackRefused as refused:
            raise AirflowFailException(str(refused)) from None
        if rollback is None:
            return
        if not rollback.in_stage(self.task_id):
            skip_other_stages(context, rollback)
            raise AirflowSkipException(f"rollback run of stage {rollback.stage}: stage {self.stage} does not run")
        ti = context["ti"]
        if held_for(ti.dag_id, ti.run_id, rollback):
            raise AirflowSkipException(
                f"run {rollback.held_by} holds stage {self.stage} for this rollback: its actions go in on that hold"
            )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Only for a trigger that fired a plain event instead of ending the task (it never does today)."""
        event = event or {}
        if event.get("kind") == "superseded":
            self.end_superseded(context, str(event.get("superseded_by")))
        return entered(self.stage, waited_seconds=float(event.get("waited_seconds") or 0.0))

    def end_superseded(self, context: Any, newer: str | None) -> None:
        ti = context["ti"]
        newer = newer or "?"
        announced = publish_superseded(
            ApprovalNotifications.from_dict(self.notifications),
            run_id=ti.run_id,
            task_id=ti.task_id,
            superseded_by=newer,
            context=context,
            ident=f"superseded:{ti.task_id}",
        )
        ti.xcom_push(DECISION_XCOM_KEY, superseded_record(newer, announced))
        raise StageSuperseded(self.stage, newer)

"""The wait at a stage's door while another run holds the stage (operators/stage_entry.py).

Every ``check_interval`` seconds it reads the door's task states in every run (stages/snapshot.py) and
decides again (stages/entry.py): when the stage is free it records the Enter task's outputs and ends
the task successfully itself (TaskSuccessEvent), so the task never resumes on a worker (no window for
apache/airflow#72716, see triggers/base.py); in a SUPERSEDED pipeline, when a newer run waits at the
same door, it announces and records the superseding and fails the task.

The task keeps the door while it waits (a deferred task counts against ``max_active_tis_per_dag``),
so no other run can be let in meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from release_orchestrator.notifications.approvals import ApprovalNotifications, publish_superseded
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY
from release_orchestrator.stages import snapshot
from release_orchestrator.stages.entry import Door, entered, superseded_record
from release_orchestrator.triggers import base as trigger_base


class StageEntryTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        run_after: str,
        door: dict[str, Any],
        first_enter_task_id: str,
        check_interval: float,
        notifications: dict[str, Any] | None = None,
        since: str | None = None,
    ) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.run_id = run_id
        self.run_after = run_after
        self.door = {**door, "action_task_ids": list(door["action_task_ids"])}
        self.first_enter_task_id = first_enter_task_id
        self.check_interval = float(check_interval)
        self.notifications = notifications
        self.since = since or datetime.now(timezone.utc).isoformat()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "run_after": self.run_after,
                "door": self.door,
                "first_enter_task_id": self.first_enter_task_id,
                "check_interval": self.check_interval,
                "notifications": self.notifications,
                "since": self.since,
            },
        )

    @property
    def _door(self) -> Door:
        return Door(**{**self.door, "action_task_ids": tuple(self.door["action_task_ids"])})

    async def run(self) -> AsyncIterator[TriggerEvent]:
        snapshot.remember(self.dag_id, self.run_id, self.run_after)
        while True:
            try:
                decision, _ = await asyncio.to_thread(
                    snapshot.decide_now, self.dag_id, self.run_id, self._door, self.first_enter_task_id, on_worker=False
                )
            except Exception:  # noqa: BLE001 - a failed look is retried at the next check; the door stays held
                self.log.warning("Could not read who holds stage %s", self.door["stage"], exc_info=True)
                decision = None
            if decision is not None and decision.kind == "enter":
                yield await asyncio.to_thread(self.enter)
                return
            if decision is not None and decision.kind == "superseded":
                yield await asyncio.to_thread(self.end_superseded, str(decision.other))
                return
            await asyncio.sleep(self.check_interval)

    def enter(self) -> TriggerEvent:
        waited = (datetime.now(timezone.utc) - snapshot.parse_time(self.since)).total_seconds()
        self.log.info("Stage %s is free: run %s enters after %.1f s", self.door["stage"], self.run_id, waited)
        trigger_base.write_task_xcom(
            self.task_instance, trigger_base.XCOM_RETURN_KEY, entered(self.door["stage"], waited)
        )
        return TaskSuccessEvent()

    def end_superseded(self, newer: str) -> TriggerEvent:
        ti = self.task_instance
        self.log.warning(
            "Run %s waits for stage %s too and is newer: this run is superseded", newer, self.door["stage"]
        )
        announced = publish_superseded(
            ApprovalNotifications.from_dict(self.notifications),
            run_id=self.run_id,
            task_id=ti.task_id,
            superseded_by=newer,
        )
        write = lambda key, value: trigger_base.write_task_xcom(ti, key, value)  # noqa: E731
        write(DECISION_XCOM_KEY, superseded_record(newer, announced))
        reason = f"stage {self.door['stage']}: superseded by run {newer}, which is newer"
        return trigger_base.failed_task_event(write, None, ti, reason, self.log)

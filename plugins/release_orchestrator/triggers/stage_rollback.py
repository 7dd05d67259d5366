"""The wait of a failed run's <Stage>.Rollback for its rollback run (operators/stage_rollback.py).

Every ``check_interval`` seconds it reads the rollback run's task states in the stage; once every task
with which that run holds the stage has ended (its actions, its success conditions, its own Rollback) it ends
the task itself: TaskSuccessEvent when the actions all succeeded, TaskFailedEvent (with the reason and the
failure notifications) otherwise. The failed run holds the stage until then: were it to let go while the
rollback run still held it, a run waiting at the door would enter and find the stage taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from release_orchestrator.stages.entry import ENDED_STATES, state_value
from release_orchestrator.triggers import base as trigger_base


class StageRollbackTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        dag_id: str,
        stage: str,
        rollback_run_id: str,
        target_run_id: str,
        action_task_ids: list[str],
        check_interval: float,
        failure_notices: list[dict[str, Any]] | None = None,
        holding_task_ids: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.dag_id, self.stage = dag_id, stage
        self.rollback_run_id, self.target_run_id = rollback_run_id, target_run_id
        self.action_task_ids = list(action_task_ids)
        # The rollback run's tasks that hold the stage (the stage's door counts them): waited for, not judged.
        self.holding_task_ids = sorted(set(holding_task_ids or ()) | set(self.action_task_ids))
        self.check_interval = float(check_interval)
        self.failure_notices = failure_notices

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "dag_id": self.dag_id,
                "stage": self.stage,
                "rollback_run_id": self.rollback_run_id,
                "target_run_id": self.target_run_id,
                "action_task_ids": self.action_task_ids,
                "check_interval": self.check_interval,
                "failure_notices": self.failure_notices,
                "holding_task_ids": self.holding_task_ids,
            },
        )

    def read_states(self) -> dict[str, Any]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=self.dag_id, task_ids=self.holding_task_ids, run_ids=[self.rollback_run_id]
        )
        return {task_id: state_value(state) for task_id, state in states.get(self.rollback_run_id, {}).items()}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            try:
                states = await asyncio.to_thread(self.read_states)
            except Exception:  # noqa: BLE001 - a failed look is retried at the next check; the stage stays held
                self.log.warning("Could not read rollback run %s", self.rollback_run_id, exc_info=True)
                states = {}
            # The run's tasks exist once the scheduler has started it; until then it has none to read. (A holding
            # task its DAG version does not have, it does not wait for.)
            if all(task_id in states for task_id in self.action_task_ids) and all(
                state in ENDED_STATES for state in states.values()
            ):
                yield await asyncio.to_thread(self.finish, states)
                return
            await asyncio.sleep(self.check_interval)

    def finish(self, states: dict[str, Any]) -> TriggerEvent:
        ti = self.task_instance
        not_ok = {task_id: states[task_id] for task_id in self.action_task_ids if states[task_id] != "success"}
        record = {
            "RollbackRunId": self.rollback_run_id,
            "TargetRunId": self.target_run_id,
            "Result": "Failed" if not_ok else "Succeeded",
        }
        trigger_base.write_task_xcom(ti, trigger_base.XCOM_RETURN_KEY, record)
        if not not_ok:
            self.log.info(
                "Rollback run %s rolled stage %s back to run %s", self.rollback_run_id, self.stage, self.target_run_id
            )
            return TaskSuccessEvent()
        listed = ", ".join(f"{task_id} {state}" for task_id, state in sorted(not_ok.items()))
        reason = f"the rollback of stage {self.stage} to run {self.target_run_id} (run {self.rollback_run_id}) failed: {listed}"
        write = lambda key, value: trigger_base.write_task_xcom(ti, key, value)  # noqa: E731
        return trigger_base.failed_task_event(write, self.failure_notices, ti, reason, self.log)

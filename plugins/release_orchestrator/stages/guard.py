"""The check every action of a QUEUED or SUPERSEDED pipeline makes before it runs: its run holds its stage.

The stage's door (operators/stage_entry.py) lets one run in at a time, but Airflow lets a user clear any
task: an action of an older run cleared by hand (without its stage's Enter) would run beside the run
that entered the stage after it. So each action checks, from every run's task states at its door, that
its run entered the stage and that no run entered it later and still holds it; otherwise it fails,
saying to clear the stage's Enter task too (the run then waits at the door for its turn).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from release_orchestrator.stages.entry import Door, holds, state_value
from release_orchestrator.stages.rollback import held_for, run_rollback
from release_orchestrator.stages.snapshot import door_states

XCOM_RETURN_KEY = "return_value"


class StageHeld:
    """`pre_execute` of an action: it runs only while its run holds the action's stage (see the module)."""

    def __init__(self, door: Door):
        self.door = door

    def __call__(self, context: Any) -> None:
        ti = context["ti"]
        door = self.door
        rollback = run_rollback(context)
        if rollback is not None and held_for(ti.dag_id, ti.run_id, rollback):
            return  # an automatic rollback, on the hold of the failed run that started it (stages/rollback.py)
        states = door_states(ti.dag_id, door)
        enter_state = state_value(states.get(ti.run_id, {}).get(door.enter_task_id))
        if enter_state != "success":
            raise AirflowFailException(
                f"{ti.task_id} does not run: this run has not entered stage {door.stage} ({door.enter_task_id} is "
                f"{enter_state or 'not run'}); clear {door.enter_task_id} with it so the run waits for its turn"
            )
        mine: str | None = None  # when this run entered: read only if another run holds the stage too
        for other, their_states in sorted(states.items()):
            if other == ti.run_id or not holds(door, their_states):
                continue
            mine = mine or self.entered_at(ti, ti.run_id)
            theirs = self.entered_at(ti, other)
            if mine is None or theirs is None or theirs > mine:
                raise AirflowFailException(
                    f"{ti.task_id} does not run: run {other} entered stage {door.stage} after this run and holds "
                    f"it; clear {door.enter_task_id} with this action so this run waits at the stage's door"
                )

    def entered_at(self, ti: Any, run_id: str) -> str | None:
        """When `run_id` entered the stage (the Enter task's EnteredAt, an ISO time in UTC)."""
        from airflow.sdk.execution_time.xcom import XCom

        outputs = XCom.get_one(key=XCOM_RETURN_KEY, dag_id=ti.dag_id, task_id=self.door.enter_task_id, run_id=run_id)
        return outputs.get("EnteredAt") if isinstance(outputs, dict) else None

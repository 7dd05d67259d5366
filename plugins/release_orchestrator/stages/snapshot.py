"""What the run at a stage's door reads: every run's task states at that door, and runs' places in line.

Through the Task SDK calls both workers and the triggerer offer (Airflow 3 gives neither database
access): ``get_task_states`` for the door's tasks in every run, XCom reads for the place in line
each run's first ``Enter`` recorded. A worker can also ask for a run itself (``GetDagRun``), which the
triggerer cannot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from release_orchestrator.stages import transitions
from release_orchestrator.stages.entry import RUN_AFTER_XCOM_KEY, Decision, Door, OrderKey, decide

# (dag_id, run_id) -> place in line. A run's run_after never changes, so a found value is kept for
# the life of the process.
_ORDER_CACHE: dict[tuple[str, str], OrderKey] = {}


def parse_time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def door_states(dag_id: str, door: Door) -> dict[str, dict[str, Any]]:
    """run id -> {task id: state} of the door's Enter task and actions, for every run of the pipeline."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    return RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=[door.enter_task_id, *door.action_task_ids])


class RunOrder:
    """Each run's place in line: (run_after, run_id), from the XCom its first Enter wrote, or from the
    run itself where the caller may ask for it (workers)."""

    def __init__(self, dag_id: str, first_enter_task_id: str, *, ask_runs: bool):
        self.dag_id = dag_id
        self.first_enter_task_id = first_enter_task_id
        self.ask_runs = ask_runs

    def __call__(self, run_id: str) -> OrderKey | None:
        key = (self.dag_id, run_id)
        if key not in _ORDER_CACHE:
            run_after = self._recorded(run_id) or (self._asked(run_id) if self.ask_runs else None)
            if run_after is None:
                return None
            _ORDER_CACHE[key] = (parse_time(run_after), run_id)
        return _ORDER_CACHE[key]

    def _recorded(self, run_id: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_one(key=RUN_AFTER_XCOM_KEY, dag_id=self.dag_id, task_id=self.first_enter_task_id, run_id=run_id)

    def _asked(self, run_id: str) -> datetime | None:
        from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        response = SUPERVISOR_COMMS.send(GetDagRun(dag_id=self.dag_id, run_id=run_id))
        return response.run_after if isinstance(response, DagRunResult) else None


def remember(dag_id: str, run_id: str, run_after: str | datetime) -> None:
    """Note a run's place in line known otherwise (the caller's own run)."""
    _ORDER_CACHE[(dag_id, run_id)] = (parse_time(run_after), run_id)


def decide_now(
    dag_id: str, run_id: str, door: Door, first_enter_task_id: str, *, on_worker: bool
) -> tuple[Decision, dict[str, Any] | None]:
    """Read the door's states and its transition, and decide (entry.decide) for `run_id`; with the
    transition's record when it is disabled."""
    order = RunOrder(dag_id, first_enter_task_id, ask_runs=on_worker)
    closed = transitions.read(dag_id, door.stage)
    decision = decide(door, run_id, door_states(dag_id, door), order, may_yield=on_worker, closed=closed is not None)
    return decision, closed

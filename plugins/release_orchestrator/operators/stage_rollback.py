"""<Stage>.Rollback: a stage's automatic rollback (`on_failure: {result: ROLLBACK}`, or a success condition's
`on_success: {result: ROLLBACK}`; stages/rollback.py).

It runs once the stage's actions (and success conditions) have all ended, as an Airflow teardown task (its own
result does not decide the run's: a run whose stage failed ends failed):
- none of the tasks whose failure rolls the stage back failed in this run (it succeeded, or an earlier stage
  failed): skipped;
- this run is a rollback itself: skipped (a failed rollback is not rolled back again);
- otherwise it starts a rollback run of the stage to the latest run in which the stage succeeded, and
  waits for that run's actions in the stage to end (deferred, no worker slot; the trigger ends the task:
  success when the rollback succeeded, failed when it did not, or when there is nothing to roll back to).

While it waits this run still holds the stage (the task counts as one of the stage's actions at its
door), and the rollback run's actions go in on that hold: no run waiting at the door deploys between
the failure and its rollback.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from release_orchestrator.notifications.notifier import failure_notices
from release_orchestrator.stages.rollback import (
    Rollback,
    RollbackRefused,
    choose_target,
    read_candidate,
    rollback_run_conf,
    rollback_run_id,
    run_rollback,
    stage_failed,
    stage_succeeded,
)
from release_orchestrator.triggers.stage_rollback import StageRollbackTrigger

DEFAULT_CHECK_INTERVAL = 5.0


class StageRollbackOperator(BaseOperator):
    """Roll `stage` back when one of its actions failed in this run (see the module docstring).

    :param stage: the stage's name (for messages).
    :param stage_group: the stage's task group id.
    :param action_task_ids: task ids of the stage's actions: the rollback run's, waited for.
    :param success_task_ids: what succeeded in a run to roll back to (the actions, and the success conditions
        when the stage has some); default: the actions.
    :param cause_task_ids: the tasks whose failure rolls the stage back; default: the actions.
    :param check_interval: seconds between looks at the rollback run.
    """

    ui_color = "#fbe9e7"

    def __init__(
        self,
        *,
        stage: str,
        stage_group: str,
        action_task_ids: list[str],
        success_task_ids: list[str] | None = None,
        cause_task_ids: list[str] | None = None,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stage, self.stage_group = stage, stage_group
        self.action_task_ids = list(action_task_ids)
        self.success_task_ids = list(success_task_ids if success_task_ids is not None else action_task_ids)
        self.cause_task_ids = list(cause_task_ids if cause_task_ids is not None else action_task_ids)
        self.check_interval = float(check_interval)
        # A teardown: it runs once the actions have all ended, whatever they did, and the run's result is theirs
        # (a run whose stage failed ends failed, however its rollback went).
        self.as_teardown()

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        ti = context["ti"]
        if run_rollback(context) is not None:
            raise AirflowSkipException(f"this run is a rollback of stage {self.stage}: it is not rolled back again")
        task_ids = sorted(set(self.success_task_ids) | set(self.cause_task_ids))
        states = RuntimeTaskInstance.get_task_states(dag_id=ti.dag_id, task_ids=task_ids)
        if not stage_failed(states.get(ti.run_id, {}), self.cause_task_ids):
            raise AirflowSkipException(
                f"none of {', '.join(self.cause_task_ids)} failed in this run: nothing to roll back"
            )
        # Each run in which the stage succeeded, and when it was created (one GetDagRun each).
        candidates = [
            read_candidate(ti.dag_id, run_id, run_states)
            for run_id, run_states in states.items()
            if run_id != ti.run_id and stage_succeeded(run_states, self.success_task_ids)
        ]
        try:
            target = choose_target(
                [c for c in candidates if c is not None],
                self.stage,
                self.success_task_ids,
                wanted=None,
                excluding=ti.run_id,
            )
        except RollbackRefused as refused:
            raise AirflowFailException(f"stage {self.stage} failed and cannot be rolled back: {refused}") from None
        rollback = Rollback(self.stage_group, target.run_id, held_by=ti.run_id, reason=f"stage {self.stage} failed")
        # One per failure: a stage retried and failing again is rolled back again.
        run_id = rollback_run_id(self.stage_group, f"{ti.run_id}__{ti.try_number}")
        started = {"RollbackRunId": run_id, "TargetRunId": target.run_id}
        # Recorded before the run exists: the rollback's actions go in on this run's hold only if it names them.
        ti.xcom_push("return_value", started)
        self.start_run(ti.dag_id, run_id, rollback_run_conf(target.conf, rollback), rollback)
        self.defer(
            trigger=StageRollbackTrigger(
                dag_id=ti.dag_id,
                stage=self.stage,
                rollback_run_id=run_id,
                target_run_id=target.run_id,
                action_task_ids=self.action_task_ids,
                holding_task_ids=[*self.success_task_ids, ti.task_id],
                check_interval=self.check_interval,
                failure_notices=failure_notices(self, context),
            ),
            method_name="execute_complete",
        )

    def start_run(self, dag_id: str, run_id: str, conf: dict[str, Any], rollback: Rollback) -> None:
        from airflow.sdk.execution_time.comms import ErrorResponse, TriggerDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        note = f"Automatic rollback of stage {self.stage} to run {rollback.target_run_id}: it failed in run {rollback.held_by}"
        response = SUPERVISOR_COMMS.send(
            TriggerDagRun(dag_id=dag_id, run_id=run_id, conf=conf, note=note, reset_dag_run=False)
        )
        if isinstance(response, ErrorResponse):
            if "ALREADY_EXISTS" in str(getattr(response.error, "value", response.error)).upper():
                self.log.info("Rollback run %s exists already (a retry of this task): waiting for it", run_id)
                return
            raise AirflowFailException(f"could not start the rollback run {run_id} of stage {self.stage}: {response}")
        self.log.info(
            "Started rollback run %s: stage %s goes back to run %s", run_id, self.stage, rollback.target_run_id
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        """Only for a trigger that fired a plain event instead of ending the task (it never does today)."""
        raise AirflowFailException(f"rollback of stage {self.stage}: unexpected event {event!r}")

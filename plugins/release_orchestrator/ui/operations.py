"""What the release console's API changes (ui/app.py): transitions, retrying a failed stage, stopping a run,
rolling a stage back.

Each runs in the api-server with the request's database session, after the route checked the user's
permission, and leaves an entry in Airflow's audit log naming the user.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.models.dagrun import DagRun
from airflow.models.log import Log
from airflow.models.taskinstance import TaskInstance
from sqlalchemy import select
from sqlalchemy.orm import Session

from release_orchestrator.gate.policy import Reviewer
from release_orchestrator.notifications.run_events import announce
from release_orchestrator.stages.retry import tasks_to_retry
from release_orchestrator.ui.queries import stages_in_order


class OperationRefused(ValueError):
    """The operation does not apply (HTTP 404 or 409, with the message)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _audit(session: Session, event: str, dag_id: str, run_id: str | None, by: str, text: str) -> None:
    session.add(Log(event=event, dag_id=dag_id, run_id=run_id, owner=by, owner_display_name=by, extra=text))


# ---- transitions (stages/transitions.py) ----------------------------------------------------------
def set_transition(session: Session, dag_id: str, stage: str, *, enabled: bool, by: str, reason: str) -> None:
    """Enable or disable the transition into `stage`."""
    from airflow.models.variable import Variable

    from release_orchestrator.stages.transitions import disabled_record, variable_key

    key = variable_key(dag_id, stage)
    if enabled:
        Variable.delete(key, session=session)
        why = f": {reason}" if reason else ""
        _audit(session, "transition.enabled", dag_id, None, by, f"transition into {stage} enabled by {by}{why}")
    else:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        Variable.set(key, disabled_record(by=by, reason=reason, at=at), session=session)
        _audit(session, "transition.disabled", dag_id, None, by, f"transition into {stage} disabled by {by}: {reason}")
    session.commit()


# ---- runs -------------------------------------------------------------------------------------------
def _dag(session: Session, dag_id: str) -> Any:
    from airflow.models.serialized_dag import SerializedDagModel

    dag = SerializedDagModel.get_dag(dag_id, session=session)
    if dag is None:
        raise OperationRefused(f"no pipeline {dag_id!r}", status=404)
    return dag


def _dag_and_run(session: Session, dag_id: str, run_id: str) -> tuple[Any, DagRun]:
    run = session.scalar(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
    if run is None:
        raise OperationRefused(f"pipeline {dag_id!r} has no run {run_id!r}", status=404)
    return _dag(session, dag_id), run


def retry_stage(
    session: Session, dag_id: str, run_id: str, stage: str, mode: str, by: str, reason: str = ""
) -> list[str]:
    """Clear the stage's failed (or all) actions, its door and everything after it (stages/retry.py)."""
    from airflow.models.taskinstance import clear_task_instances
    from airflow.utils.state import DagRunState

    from release_orchestrator.stages.retry import RetryRefused

    dag, run = _dag_and_run(session, dag_id, run_id)
    tis = list(
        session.scalars(select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id))
    )
    states = {ti.task_id: ti.state for ti in tis if ti.map_index < 0}
    try:
        task_ids = set(tasks_to_retry(stages_in_order(dag), states, stage, mode))
    except RetryRefused as refused:
        raise OperationRefused(str(refused)) from None
    cleared = [ti for ti in tis if ti.task_id in task_ids and ti.state is not None]
    clear_task_instances(cleared, session, dag_run_state=DagRunState.QUEUED)
    names = sorted(ti.task_id for ti in cleared)
    why = f" ({reason})" if reason else ""
    text = f"{mode} retry of stage {stage} by {by}{why}: {', '.join(names)}"
    _audit(session, "stage.retried", dag_id, run_id, by, text)
    session.commit()
    retry = {"retry": {"stage": stage, "mode": mode, "user": by, "reason": reason}}
    announce(dag_id, run_id, ["pipeline-resumed", "stage-resumed"], retry, stages=[stage])
    return names


def _run_to_stop(session: Session, dag_id: str, run_id: str) -> tuple[Any, DagRun]:
    """The DAG and the run, refused (409) when the run has ended."""
    from airflow.utils.state import DagRunState

    dag, run = _dag_and_run(session, dag_id, run_id)
    if run.state not in (DagRunState.QUEUED, DagRunState.RUNNING):
        raise OperationRefused(f"run {run_id} of {dag_id} has ended ({run.state}): nothing to stop")
    return dag, run


# Task states of a run's task that has not started its work (stop and wait ends these, nothing else).
NOT_STARTED = (None, "scheduled", "queued", "up_for_retry", "up_for_reschedule")


def stop_and_wait(session: Session, dag_id: str, run_id: str, reviewer: Reviewer, reason: str) -> list[str]:
    """CodePipeline's "stop and wait": actions at work (a build, a deployment, an approval waiting for its
    reviewer) finish as they would; nothing else starts. Every task not started yet, and a run waiting at a
    stage's door or for a deployment window, ends upstream_failed, so the run ends failed once the actions at
    work end. A run with nothing left to start ends as its last actions do."""
    from airflow.utils.state import TaskInstanceState

    from release_orchestrator.pipeline.conditions import CONDITIONS_TASK
    from release_orchestrator.stages.entry import ENTER_TASK

    _, run = _run_to_stop(session, dag_id, run_id)
    # Locked (PostgreSQL): a task the scheduler is about to queue waits for this, then finds it ended.
    tis = session.scalars(
        select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id).with_for_update()
    ).all()
    now = datetime.now(timezone.utc)
    ended, at_work = [], []
    for ti in tis:
        waiting_to_enter = ti.task_id.rsplit(".", 1)[-1] in (ENTER_TASK, CONDITIONS_TASK) and ti.state == "deferred"
        if ti.state in NOT_STARTED or waiting_to_enter:
            ti.state, ti.end_date = TaskInstanceState.UPSTREAM_FAILED, now
            ended.append(ti.task_id)
        elif ti.state in ("running", "deferred"):
            at_work.append(ti)
    run.note = f"Stopped by {reviewer.name} (stop and wait): {reason}"
    _audit(
        session,
        "run.stopped",
        dag_id,
        run_id,
        reviewer.name,
        f"stopped by {reviewer.name} (stop and wait: actions at work finish): {reason}",
    )
    session.commit()
    stop = _stop_trigger(reviewer, reason, abandon=False)
    announce(dag_id, run_id, ["pipeline-stopping", "stage-stopping"], stop, stages=_stages_at_work(at_work))
    return sorted(ended)


def stop_run(session: Session, dag_id: str, run_id: str, reviewer: Reviewer, reason: str) -> list[str]:
    """Abandon a run: its running and waiting actions stop their AWS work now (on_kill: builds stopped,
    deployments stopped and rolled back where configured), nothing else starts, the run ends failed."""
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed

    from release_orchestrator.gate.enforcement import marking_whole_run

    dag, run = _run_to_stop(session, dag_id, run_id)
    # As marking the run failed in Airflow's UI does, the gate recording a waiting approval as Stopped.
    with marking_whole_run(dag_id, run_id, reviewer):
        stopped = set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=session)
        run.note = f"Stopped by {reviewer.name}: {reason}"
        _audit(session, "run.stopped", dag_id, run_id, reviewer.name, f"stopped by {reviewer.name}: {reason}")
        session.flush()
    session.commit()
    # A run marked failed gets no DAG failure callback: this is the only word of its end.
    stop = _stop_trigger(reviewer, reason, abandon=True)
    _, killed = stopped
    announce(dag_id, run_id, ["pipeline-stopped", "stage-stopped"], stop, stages=_stages_at_work(killed))
    return sorted({ti.task_id for tis in stopped for ti in tis})


def _stages_at_work(task_instances: Any) -> list[str]:
    """The stages (group ids) in which these task instances were at work (a run waiting at a stage's door is
    not in that stage yet)."""
    from release_orchestrator.stages.entry import ENTER_TASK

    return sorted(
        {
            stage
            for stage, _, task in (ti.task_id.partition(".") for ti in task_instances)
            if task and task != ENTER_TASK
        }
    )


def _stop_trigger(reviewer: Reviewer, reason: str, abandon: bool) -> dict[str, Any]:
    """What a stop event says of the stop (CodePipeline's StopPipelineExecution: abandon, reason; and who)."""
    return {"stop-execution-trigger": {"abandon": abandon, "reason": reason, "user": reviewer.name}}


# ---- rollback (stages/rollback.py) ---------------------------------------------------------------------
def rollback_stage(
    session: Session, dag_id: str, stage: str, target_run_id: str | None, reviewer: Reviewer, reason: str
) -> dict[str, str]:
    """Start a run that rolls `stage` back to `target_run_id` (default: the latest run in which the stage
    succeeded). It passes the stage's door like any run."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    from release_orchestrator.stages.rollback import (
        Candidate,
        Rollback,
        RollbackRefused,
        choose_target,
        rollback_run_conf,
        rollback_run_id,
        stage_actions,
    )

    dag = _dag(session, dag_id)
    stages = stages_in_order(dag)
    names = [name for name, _ in stages]
    if stage not in names:
        raise OperationRefused(f"pipeline {dag_id!r} has no stage {stage!r}; its stages: {', '.join(names)}", 404)
    if stage == names[0]:
        raise OperationRefused(f"stage {stage} is the pipeline's first: there is no earlier stage to reuse")
    actions = stage_actions(dict(stages)[stage])
    states: dict[str, dict[str, Any]] = {}
    for run_id, task_id, state in session.execute(
        select(TaskInstance.run_id, TaskInstance.task_id, TaskInstance.state).where(
            TaskInstance.dag_id == dag_id, TaskInstance.task_id.in_(actions), TaskInstance.map_index < 0
        )
    ):
        states.setdefault(run_id, {})[task_id] = state
    runs = session.execute(
        select(DagRun.run_id, DagRun.run_after, DagRun.conf).where(
            DagRun.dag_id == dag_id, DagRun.run_id.in_(list(states))
        )
    )
    candidates = [Candidate(run_id, run_after, conf, states[run_id]) for run_id, run_after, conf in runs]
    try:
        target = choose_target(candidates, stage, actions, wanted=target_run_id, excluding=None)
    except RollbackRefused as refused:
        raise OperationRefused(str(refused)) from None
    at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    rollback = Rollback(stage, target.run_id, reason=f"{reviewer.name}: {reason}")
    run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.REST_API,
        triggering_user_name=reviewer.name,
        run_id=rollback_run_id(stage, at),
        conf=rollback_run_conf(target.conf, rollback),
        note=f"Rollback of stage {stage} to run {target.run_id} by {reviewer.name}: {reason}",
        session=session,
    )
    text = f"rollback of stage {stage} to run {target.run_id} by {reviewer.name}: {reason}"
    _audit(session, "stage.rolled_back", dag_id, run.run_id, reviewer.name, text)
    session.commit()
    return {"run_id": run.run_id, "target_run_id": target.run_id, "stage": stage}

"""Rolling a stage back to an earlier successful run (CodePipeline's RollbackStage).

A rollback is a run of its own, of the same pipeline, whose conf names the stage and the run it goes back
to (``{"rollback": {"stage": ..., "target_run_id": ...}}``; the target run's other conf is copied beside
it, so ``#{variables.*}`` are the target's). In that run:

- only the stage's tasks work: the first task of another stage to run (its first door, or its first action
  when it has no doors) skips every other stage's tasks at once (`skip_other_stages`), so the grid shows what
  ran and no door is waited at for nothing;
- what the stage's actions read from earlier stages (``#{Namespace.Var}`` outputs, input artifacts,
  approval decisions) is read from the target run (`results_run`): the stage deploys exactly what that
  run deployed;
- before any of the stage's actions works, the target is checked again (`RollbackScope`): a run of this
  pipeline, not a rollback itself, in which every action of the stage succeeded. A run triggered by hand
  with a forged conf can only redeploy what was deployed before, with its approvals.

A manual rollback (ui/operations.py) passes the stage's door like any run. An automatic one
(``on_failure: {result: ROLLBACK}``, operators/stage_rollback.py) is started by the failed run, which keeps
holding the stage until the rollback's actions end (``held_by``): no run waiting at the door can deploy
between the failure and its rollback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from release_orchestrator.stages.entry import ROLLBACK_RUN_PREFIX, state_value

ROLLBACK_CONF_KEY = "rollback"
ROLLBACK_TASK = "Rollback"  # task id, inside a stage's group, of the automatic rollback (on_failure ROLLBACK)


class RollbackRefused(ValueError):
    """No rollback of that stage to that run (the message says why)."""


@dataclass(frozen=True)
class Rollback:
    """What a rollback run's conf says."""

    stage: str  # the stage's task group id
    target_run_id: str
    held_by: str | None = None  # the failed run that holds the stage for this rollback (automatic)
    reason: str = ""

    def in_stage(self, task_id: str) -> bool:
        return task_id.startswith(f"{self.stage}.")

    def to_conf(self) -> dict[str, Any]:
        conf = {"stage": self.stage, "target_run_id": self.target_run_id, "reason": self.reason}
        return {**conf, "held_by": self.held_by} if self.held_by else conf


def rollback_of(conf: Mapping[str, Any] | None) -> Rollback | None:
    """The rollback a run's conf asks for, or None for an ordinary run; a malformed one is refused."""
    value = (conf or {}).get(ROLLBACK_CONF_KEY)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(value.get(k), str) for k in ("stage", "target_run_id")):
        raise RollbackRefused(
            f"conf.{ROLLBACK_CONF_KEY} must be an object with the strings stage and target_run_id, not {value!r}"
        )
    held_by = value.get("held_by")
    return Rollback(
        value["stage"],
        value["target_run_id"],
        held_by if isinstance(held_by, str) else None,
        str(value.get("reason", "")),
    )


def run_rollback(context: Any) -> Rollback | None:
    return rollback_of(getattr(context["dag_run"], "conf", None))


def results_run(context: Any, task_id: str) -> str:
    """The run whose results of `task_id` this run uses: its own, or in a rollback run, the target run's
    for tasks outside the rolled-back stage."""
    rollback = run_rollback(context)
    run_id = context["dag_run"].run_id
    return run_id if rollback is None or rollback.in_stage(task_id) else rollback.target_run_id


def rollback_run_conf(target_conf: Mapping[str, Any] | None, rollback: Rollback) -> dict[str, Any]:
    """The conf of a rollback run: the target run's (its variables), with the rollback."""
    conf = {key: value for key, value in (target_conf or {}).items() if key != ROLLBACK_CONF_KEY}
    return {**conf, ROLLBACK_CONF_KEY: rollback.to_conf()}


def stage_succeeded(states: Mapping[str, Any], task_ids: Iterable[str]) -> bool:
    """Every action of the stage succeeded in the run, and its success conditions passed: a run from before the
    stage had success conditions has no such task, and its actions decide."""
    from release_orchestrator.pipeline.conditions import SUCCESS_CONDITIONS_TASK

    def succeeded(task_id: str) -> bool:
        if task_id.rpartition(".")[2] == SUCCESS_CONDITIONS_TASK and task_id not in states:
            return True
        return state_value(states.get(task_id)) == "success"

    ids = list(task_ids)
    return bool(ids) and all(map(succeeded, ids))


def stage_failed(states: Mapping[str, Any], action_task_ids: Iterable[str]) -> bool:
    """An action of the stage failed in its own right (not only after an earlier stage failed)."""
    return any(state_value(states.get(task_id)) == "failed" for task_id in action_task_ids)


@dataclass(frozen=True)
class Candidate:
    run_id: str
    run_after: Any  # a datetime (any comparable)
    conf: Mapping[str, Any] | None
    states: Mapping[str, Any]


def choose_target(
    candidates: Iterable[Candidate],
    stage: str,
    action_task_ids: Iterable[str],
    *,
    wanted: str | None,
    excluding: str | None,
) -> Candidate:
    """The run to roll `stage` back to: `wanted`, or the latest run (by run_after) in which every action of
    the stage succeeded. A rollback run stands for its own target (it deployed that run's release)."""
    ids = list(action_task_ids)
    by_id = {c.run_id: c for c in candidates}

    def original(candidate: Candidate) -> Candidate:
        rollback = rollback_of(candidate.conf)
        if rollback is None:
            return candidate
        if rollback.target_run_id not in by_id:
            raise RollbackRefused(f"run {candidate.run_id} rolled back to run {rollback.target_run_id}, which is gone")
        return by_id[rollback.target_run_id]

    if wanted is not None:
        if wanted not in by_id:
            raise RollbackRefused(f"no run {wanted!r} of this pipeline")
        if wanted == excluding:
            raise RollbackRefused(f"run {wanted} cannot be rolled back to itself")
        if not stage_succeeded(by_id[wanted].states, ids):
            raise RollbackRefused(
                f"stage {stage} did not succeed in run {wanted}: only a run that deployed can be rolled back to"
            )
        return original(by_id[wanted])
    succeeded = sorted(
        (c for c in by_id.values() if c.run_id != excluding and stage_succeeded(c.states, ids)),
        key=lambda c: (c.run_after, c.run_id),
    )
    if not succeeded:
        raise RollbackRefused(f"no earlier run in which stage {stage} succeeded: nothing to roll back to")
    return original(succeeded[-1])


def check_target(rollback: Rollback, run_id: str, target: Candidate | None, action_task_ids: Iterable[str]) -> None:
    """Refuse a rollback run whose target is not a run that deployed the stage (see the module)."""
    if target is None:
        raise RollbackRefused(f"rollback of stage {rollback.stage}: no run {rollback.target_run_id!r} of this pipeline")
    if target.run_id == run_id:
        raise RollbackRefused(f"rollback of stage {rollback.stage}: a run cannot roll back to itself")
    if rollback_of(target.conf) is not None:
        raise RollbackRefused(
            f"rollback of stage {rollback.stage}: run {target.run_id} is a rollback itself; roll back to the run it "
            f"rolled back to ({rollback_of(target.conf).target_run_id})"
        )
    if not stage_succeeded(target.states, action_task_ids):
        raise RollbackRefused(
            f"rollback of stage {rollback.stage}: its actions did not all succeed in run {target.run_id}, so there "
            "is no release of it to go back to"
        )


class RollbackScope:
    """`pre_execute` of every task of a stage (actions and entry conditions): in a rollback run, a task
    outside the rolled-back stage skips itself; one inside it runs only if the target checks out."""

    def __init__(self, stage: str, action_task_ids: list[str]):
        self.stage = stage
        self.action_task_ids = list(action_task_ids)

    def __call__(self, context: Any) -> None:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        try:
            rollback = run_rollback(context)
            if rollback is None:
                return
            ti = context["ti"]
            if rollback.stage != self.stage:
                skip_other_stages(context, rollback)
                raise AirflowSkipException(f"rollback run of stage {rollback.stage}: stage {self.stage} does not run")
            check_target(rollback, ti.run_id, self.read_target(ti.dag_id, rollback.target_run_id), self.action_task_ids)
        except RollbackRefused as refused:
            raise AirflowFailException(str(refused)) from None

    def read_target(self, dag_id: str, run_id: str) -> Candidate | None:
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=self.action_task_ids, run_ids=[run_id])
        return read_candidate(dag_id, run_id, states.get(run_id, {}))


def read_candidate(dag_id: str, run_id: str, states: Mapping[str, Any]) -> Candidate | None:
    """A run (with the given task states) as a candidate to roll back to, read through the Task SDK (workers)."""
    from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    run = SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))
    return Candidate(run_id, run.run_after, run.conf, states) if isinstance(run, DagRunResult) else None


def skip_other_stages(context: Any, rollback: Rollback) -> None:
    """Skip, in one call, every task of a rollback run outside its stage (Preflight aside), and the stage's door
    when the failed run holds the stage for it: the first such task to run does it for all, so none of them
    waits for a worker, or for a door another run is waiting at (a door lets one run's Enter be active at a
    time, and a held rollback must not wait behind the runs the hold keeps out)."""
    from airflow.sdk.execution_time.comms import SkipDownstreamTasks
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    from release_orchestrator.pipeline.model import PREFLIGHT_GROUP
    from release_orchestrator.stages.entry import ENTER_TASK

    ti = context["ti"]
    others = [
        task_id
        for task_id in context["dag"].task_ids
        if task_id != ti.task_id and not rollback.in_stage(task_id) and not task_id.startswith(f"{PREFLIGHT_GROUP}.")
    ]
    door = f"{rollback.stage}.{ENTER_TASK}"
    if door in context["dag"].task_ids and held_for(ti.dag_id, ti.run_id, rollback):
        others.append(door)
    if others:
        SUPERVISOR_COMMS.send(SkipDownstreamTasks(tasks=others))


def held_for(dag_id: str, run_id: str, rollback: Rollback) -> bool:
    """Whether the failed run that started this automatic rollback holds the stage for it now: its
    Rollback task named this run and is still waiting for it. Such a run bypasses the stage's door."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from airflow.sdk.execution_time.xcom import XCom

    from release_orchestrator.stages.entry import BUSY_STATES

    if not rollback.held_by:
        return False
    task_id = f"{rollback.stage}.{ROLLBACK_TASK}"
    started = XCom.get_one(key="return_value", dag_id=dag_id, task_id=task_id, run_id=rollback.held_by)
    if not isinstance(started, dict) or started.get("RollbackRunId") != run_id:
        return False
    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=[task_id], run_ids=[rollback.held_by])
    return state_value(states.get(rollback.held_by, {}).get(task_id)) in BUSY_STATES


def rollback_run_id(stage: str, cause: str) -> str:
    """The run id of a rollback of `stage`: `cause` is the failure's try, or the time of a manual rollback."""
    return f"{ROLLBACK_RUN_PREFIX}{stage}__{cause}"[:250]


def stage_actions(task_ids: Iterable[str]) -> list[str]:
    """A stage's actions among its task ids (not its door, entry conditions or rollback), with its success
    conditions: what succeeded in a run in which the stage succeeded."""
    from release_orchestrator.pipeline.conditions import CONDITIONS_TASK
    from release_orchestrator.stages.entry import ENTER_TASK

    helpers = (ENTER_TASK, CONDITIONS_TASK, ROLLBACK_TASK)
    return [task_id for task_id in task_ids if task_id.rpartition(".")[2] not in helpers]

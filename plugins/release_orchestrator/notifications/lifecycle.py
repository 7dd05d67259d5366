"""Stages and actions starting and succeeding (opt-in events): which task publishes each, and when.

Attached to the compiled DAG's tasks as callbacks; a pipeline that does not name these events gets no
callback, no task and no call more.

- `action-started`: each action's on_execute_callback, once per round of the task instance (retries and
  resumptions after a deferral do not start it again; a clear does: notifier.py).
- `action-succeeded`: each action's on_success_callback, which runs when the task succeeds in a worker; a
  task its trigger ends gets no success callback from Airflow 3.3.2 (the dag-processor runs failure callbacks
  only), so the trigger publishes it before it ends the task (`success_notices`, triggers/base.py). Not for
  approvals: their success is `approval-approved`, the same action state change with the decision.
- `stage-started`: the stage's first action (lowest run order, then task id) as it starts, after the stage's
  door and entry conditions: a run waiting at the door is not in the stage yet, and a stage its conditions
  skip never starts.
- `stage-succeeded`: the first task after the next stage's door (its `Conditions`, else its first action),
  before that stage's own events. It runs only once nothing before it failed, so the stage has ended; it
  publishes only when the stage's tasks all succeeded (its actions, entry conditions and any check after
  them; not its door or rollback): a stage skipped by its entry conditions, or by a rollback run, did not. The door itself cannot tell: the next stage's `Enter` waits only for this stage's
  `Enter`. The last stage (or the stage a rollback run runs, whose successors skip themselves) is published
  by the run's success callback, before `pipeline-succeeded`.
"""

from __future__ import annotations

from typing import Any

from release_orchestrator.notifications.notifier import LIFECYCLE_EVENTS, PipelineEventNotifier
from release_orchestrator.pipeline.conditions import CONDITIONS_TASK
from release_orchestrator.pipeline.model import Pipeline
from release_orchestrator.pipeline.syntax import airflow_key
from release_orchestrator.stages.entry import ENTER_TASK
from release_orchestrator.stages.rollback import ROLLBACK_TASK

# Actions whose success is published as their decision (approval-approved).
DECIDED_ACTION_TYPES = ("approval.manual",)


def attach_lifecycle_notifiers(dag: Any, pipeline: Pipeline, notifiers: dict[str, Any]) -> None:
    """Add the wanted lifecycle events' callbacks to the DAG's stages and actions."""
    wanted = {event: notifiers[event] for event in LIFECYCLE_EVENTS if event in notifiers}
    if not wanted:
        return
    groups = [airflow_key(stage.name) for stage in pipeline.stages]
    succeeded_with = {group: _success_task_ids(dag, group) for group in groups}
    for index, (group, stage) in enumerate(zip(groups, pipeline.stages)):
        first = min(stage.actions, key=lambda action: (action.run_order, airflow_key(action.name)))
        first_action = dag.get_task(f"{group}.{airflow_key(first.name)}")
        first_task = dag.task_dict.get(f"{group}.{CONDITIONS_TASK}") or first_action
        if index and "stage-succeeded" in wanted:
            previous = groups[index - 1]
            _append(
                first_task, "on_execute_callback", _for(wanted["stage-succeeded"], {previous: succeeded_with[previous]})
            )
        if "stage-started" in wanted:
            _append(first_action, "on_execute_callback", _for(wanted["stage-started"], {group: succeeded_with[group]}))
        for action in stage.actions:
            task = dag.get_task(f"{group}.{airflow_key(action.name)}")
            if "action-started" in wanted:
                _append(task, "on_execute_callback", wanted["action-started"])
            if "action-succeeded" in wanted and action.type not in DECIDED_ACTION_TYPES:
                _append(task, "on_success_callback", wanted["action-succeeded"])
    if "stage-succeeded" in wanted:
        run_end = _for(wanted["stage-succeeded"], succeeded_with, at_run_end=True)
        dag.on_success_callback = [run_end, *_callbacks(dag.on_success_callback)]  # before pipeline-succeeded


def _success_task_ids(dag: Any, group: str) -> list[str]:
    """The tasks of a stage that succeed when it does: all but its door and its rollback."""
    not_part = {f"{group}.{ENTER_TASK}", f"{group}.{ROLLBACK_TASK}"}
    return sorted(t for t in dag.task_dict if t.startswith(f"{group}.") and t not in not_part)


def _for(template: PipelineEventNotifier, stages: dict[str, list[str]], at_run_end: bool = False):
    return PipelineEventNotifier(**{**template.to_dict(), "stages": stages, "at_run_end": at_run_end})


def _callbacks(value: Any) -> list[Any]:
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _append(task: Any, kind: str, callback: Any) -> None:
    setattr(task, kind, [*_callbacks(getattr(task, kind, None)), callback])

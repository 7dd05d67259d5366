"""What earlier runs of a pipeline released, read from a worker through the Task SDK (workers have no database).

A run is a release when every action of the pipeline's last stage succeeded: that is what reached production.
The last release is the one that finished last. Source actions compare their revision with it (the commits a
reviewer approves), and the approval message lists those commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

RELEASE_NOTES_MAX_COMMITS = 50  # a longer list in an approval message is cut, saying how many more


def last_release(dag_id: str, final_task_ids: list[str], current_run_id: str) -> str | None:
    """The run id of the pipeline's last release before `current_run_id` (for a rollback: the run it rolled
    back to, whose sources it released), or None.

    One call for the final actions' states in every run, then one per release to learn when it ended: the
    cost grows with the releases the metadata DB keeps."""
    from airflow.sdk.execution_time.comms import DagRunResult, GetDagRun
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS, RuntimeTaskInstance

    from release_orchestrator.stages.rollback import rollback_of

    states = RuntimeTaskInstance.get_task_states(dag_id=dag_id, task_ids=list(final_task_ids))
    released = [
        run_id
        for run_id, tasks in states.items()
        if run_id != current_run_id
        and len(tasks) == len(final_task_ids)
        and all(state == "success" for state in tasks.values())
    ]
    ended: list[tuple[datetime, str]] = []
    for run_id in released:
        run = SUPERVISOR_COMMS.send(GetDagRun(dag_id=dag_id, run_id=run_id))
        if isinstance(run, DagRunResult):
            # A rollback released what the run it rolled back to had (stages/rollback.py): its sources' outputs.
            rollback = rollback_of(run.conf)
            ended.append((run.end_date or run.run_after, rollback.target_run_id if rollback else run_id))
    return max(ended)[1] if ended else None


def released_output(dag_id: str, task_id: str, run_id: str) -> dict[str, Any] | None:
    """What an action of an earlier run returned (its outputs), or None."""
    from airflow.sdk.execution_time.xcom import XCom

    value = XCom.get_one(key="return_value", dag_id=dag_id, task_id=task_id, run_id=run_id)
    return value if isinstance(value, dict) else None


def describe_commits(commits: list[tuple[str, str, str]], more: int = 0) -> list[str]:
    """Commits (sha, message, author), newest first, as lines 'abc1234 First line of the message (author)';
    a list longer than RELEASE_NOTES_MAX_COMMITS, or `more` commits not given, end with '... and N more'."""
    lines = []
    for sha, message, author in commits:
        title = message.splitlines()[0] if message else ""
        lines.append(f"{sha[:7]} {title}" + (f" ({author})" if author else ""))
    if len(lines) > RELEASE_NOTES_MAX_COMMITS:
        more += len(lines) - RELEASE_NOTES_MAX_COMMITS
        lines = lines[:RELEASE_NOTES_MAX_COMMITS]
    if more:
        lines.append(f"... and {more} more")
    return lines

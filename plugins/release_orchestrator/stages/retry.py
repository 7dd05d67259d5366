"""Which tasks a retry of a failed stage clears (CodePipeline's RetryStageExecution).

- FAILED_ACTIONS: the stage's actions that failed or did not run (upstream failed, skipped) run again;
  those that succeeded keep their outputs.
- ALL_ACTIONS: every action of the stage runs again.

Either way the stage's door (`<Stage>.Enter`, in QUEUED and SUPERSEDED pipelines) is cleared with them,
so the run waits for its turn at the door again behind a run that entered the stage meanwhile, and so
is every task of the later stages, their doors included: the run goes on from the stage as if for the
first time. Stages before it are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from release_orchestrator.stages.entry import ENTER_TASK, state_value
from release_orchestrator.stages.rollback import ROLLBACK_TASK

RETRY_MODES = ("FAILED_ACTIONS", "ALL_ACTIONS")
NOT_SUCCEEDED = frozenset({"failed", "upstream_failed", "skipped", "removed", None})


class RetryRefused(ValueError):
    """The stage cannot be retried (the message says why)."""


def tasks_to_retry(
    stages: Sequence[tuple[str, Sequence[str]]], states: Mapping[str, Any], stage: str, mode: str
) -> list[str]:
    """Task ids to clear to retry `stage` of a run.

    `stages`: the pipeline's stages in order, each with its task ids (door included); `states`: task id ->
    state in the run.
    """
    if mode not in RETRY_MODES:
        raise RetryRefused(f"retry mode must be one of {', '.join(RETRY_MODES)}, not {mode!r}")
    names = [name for name, _ in stages]
    if stage not in names:
        raise RetryRefused(f"no stage {stage!r}; the stages are {', '.join(names)}")
    index = names.index(stage)
    _, tasks = stages[index]
    actions = [task for task in tasks if task.rpartition(".")[2] not in (ENTER_TASK, ROLLBACK_TASK)]
    # Its own action failed (or was marked failed): a stage only waiting behind an earlier failure has
    # nothing of its own to retry, and running it would skip the stage that failed.
    if not any(state_value(states.get(task)) == "failed" for task in actions):
        raise RetryRefused(f"stage {stage} has no failed action in this run: nothing to retry")
    rollback = next((task for task in tasks if task.rpartition(".")[2] == ROLLBACK_TASK), None)
    if mode == "FAILED_ACTIONS" and rollback and state_value(states.get(rollback)) in ("success", "failed"):
        # What is live is the release rolled back to (or whatever a failed rollback left): the actions that
        # succeeded in this run would not deploy this run's release again.
        raise RetryRefused(
            f"stage {stage} was rolled back after it failed in this run: retry all its actions (ALL_ACTIONS) to "
            "deploy this run's release again"
        )
    if mode == "ALL_ACTIONS":
        chosen = list(tasks)
    else:
        chosen = [task for task in tasks if task not in actions or state_value(states.get(task)) in NOT_SUCCEEDED]
    later = [task for _, stage_tasks in stages[index + 1 :] for task in stage_tasks]
    return chosen + later

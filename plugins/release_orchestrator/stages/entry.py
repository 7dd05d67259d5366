"""Who may enter a stage: one run per stage at a time, in QUEUED and SUPERSEDED pipelines.

Every stage of such a pipeline starts with an ``Enter`` task (operators/stage_entry.py). The
scheduler lets at most one run's ``Enter`` of a stage be active (queued, running or deferred) at a
time (``max_active_tis_per_dag=1``): that run is "at the door", the others wait in ``scheduled``,
costing nothing. Only the run at the door decides, so two runs can never be let in at once; the
decision itself is made here, from the task states of every run of the pipeline (read through the
Task SDK, which workers and the triggerer both offer):

- A run **holds** a stage from its ``Enter`` succeeding until every action of the stage in that run
  has ended (succeeded, failed, skipped, upstream failed). A run marked failed, or that failed
  elsewhere, leaves its actions ended, so it holds nothing. An action running in a run whose
  ``Enter`` did not succeed (cleared by hand) holds the stage too, so no other run comes in beside it.
- ``Enter`` tasks are chained (``Enter`` of the next stage waits for this ``Enter``, not for this
  stage's actions): a run reserves the next stage while it is still in this one. Nobody can
  overtake it, so the reservation costs no one anything, and its next stage's actions start the
  moment this stage ends instead of after one more task.
- QUEUED: first in, first out. A run let to the door while an older run waits there steps back
  (``yield``) and tries again a little later, so the older one gets the door.
- SUPERSEDED: a newer run that waits at the same door, or has already passed it, supersedes this
  run, which ends there (reported as superseded, not failed).
- A disabled transition into the stage (stages/transitions.py) lets nobody in until it is enabled.

"Older" is the order in which runs were created (``run_after``, then run id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from release_orchestrator.notifications.messages import now_iso

# States of an Enter task that show its run waiting at the door (the run at the door itself is
# queued, running or deferred; the scheduler lets only one in).
WAITING_STATES = frozenset({"scheduled", "queued", "up_for_reschedule", "running", "deferred"})
# States in which an action has ended for this round of its run.
ENDED_STATES = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
# States of an action that is doing something (whatever its Enter's state).
BUSY_STATES = frozenset({"queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting"})

ENTER_TASK = "Enter"  # task id of the entry task inside each stage's group
RUN_AFTER_XCOM_KEY = "run_after"  # written by each Enter: when its run was created (its place in line)


@dataclass(frozen=True)
class Door:
    """One stage's door: its Enter task and the actions behind it."""

    stage: str
    enter_task_id: str
    action_task_ids: tuple[str, ...]
    mode: str  # QUEUED or SUPERSEDED


@dataclass(frozen=True)
class Decision:
    """What the run at the door does: enter, wait for `other`, yield to `other`, or end superseded by `other`."""

    kind: str  # "enter" | "wait" | "closed" | "yield" | "superseded"
    other: str | None = None  # the run waited for, yielded to or superseded by

    def __str__(self) -> str:
        return self.kind if self.other is None else f"{self.kind} ({self.other})"


ROLLBACK_RUN_PREFIX = "rollback__"  # the run id of a rollback run starts with it (stages/rollback.py)


def is_rollback_run(run_id: str) -> bool:
    return run_id.startswith(ROLLBACK_RUN_PREFIX)


def state_value(state: Any) -> str | None:
    """A task state as its plain string (the Task SDK may give enum members)."""
    return getattr(state, "value", state)


def holds(door: Door, states: Mapping[str, Any]) -> bool:
    """Whether the run with these task states holds the stage behind `door`."""
    actions = [state_value(states.get(task_id)) for task_id in door.action_task_ids]
    if any(state in BUSY_STATES for state in actions):
        return True
    return state_value(states.get(door.enter_task_id)) == "success" and any(
        state not in ENDED_STATES for state in actions
    )


def waits(door: Door, states: Mapping[str, Any]) -> bool:
    return state_value(states.get(door.enter_task_id)) in WAITING_STATES


def passed(door: Door, states: Mapping[str, Any]) -> bool:
    return state_value(states.get(door.enter_task_id)) == "success"


OrderKey = tuple[datetime, str]


def decide(
    door: Door,
    run_id: str,
    states_by_run: Mapping[str, Mapping[str, Any]],
    order: Callable[[str], OrderKey | None],
    *,
    may_yield: bool,
    closed: bool = False,
) -> Decision:
    """What run `run_id`, at the door, does.

    `states_by_run`: run id -> {task id: state} for the door's tasks in every run of the pipeline.
    `order(run_id)`: the run's place in line, (run_after, run_id), or None when not known yet (a run
    that has not reached its first Enter): such a run came after every run that has.
    `may_yield`: the caller can step back from the door (a worker can; a waiting trigger keeps it).
    `closed`: the transition into the stage is disabled (stages/transitions.py): nobody enters.
    """
    mine = order(run_id)

    def newer(other: str) -> bool:
        theirs = order(other)
        return theirs is None or (mine is not None and theirs > mine)

    others = {other: states for other, states in states_by_run.items() if other != run_id}
    if door.mode == "SUPERSEDED":
        for other, states in sorted(others.items()):
            # A rollback (stages/rollback.py) restores an earlier release: it supersedes no release.
            if (waits(door, states) or passed(door, states)) and newer(other) and not is_rollback_run(other):
                return Decision("superseded", other)
    elif may_yield:
        older_waiting = sorted(
            (order(other), other) for other, states in others.items() if waits(door, states) and not newer(other)
        )
        if older_waiting:
            return Decision("yield", older_waiting[0][1])
    if closed:
        return Decision("closed")
    for other, states in sorted(others.items()):
        if holds(door, states):
            return Decision("wait", other)
    return Decision("enter")


def entered(stage: str, waited_seconds: float) -> dict[str, Any]:
    """The Enter task's outputs. EnteredAt to the microsecond: stages/guard.py orders entries by it."""
    at = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    return {"Stage": stage, "WaitedSeconds": round(waited_seconds, 3), "EnteredAt": at}


def superseded_record(newer: str, announced: bool) -> dict[str, Any]:
    """What the door records (XCom `approval_decision`, as approvals do) when it ends a run superseded."""
    return {"Outcome": "Superseded", "SupersededBy": newer, "Announced": announced, "DecidedAt": now_iso()}

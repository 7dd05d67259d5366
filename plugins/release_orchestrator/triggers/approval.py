"""The wait of a manual approval, in the triggerer.

`ApprovalWaitTrigger` replaces a plain timer. It ends the wait without a person once:

- the approval's expiry passes (the approval is rejected: timeout), or
- superseding is on and a newer run of the same pipeline has reached the same approval (it waits
  there, or was decided already): this run is superseded.

It then announces that (SNS, if the pipeline wants the event), records the decision in the XCom
`approval_decision` and fails the task itself (TaskFailedEvent), so the task never resumes on a
worker after deferring (see triggers/base.py for why). A trigger of an earlier version
(`ends_task` false) fires `{"kind": "timeout"}` or `{"kind": "superseded", "superseded_by": <run id>}`
instead and the task resumes to do the same.

A person's decision does not come through the trigger: marking the task success or failed ends the
wait directly (the api-server's gate checks the reviewer and records the decision, Airflow then
cancels the trigger and calls `on_kill`, which announces it), and a form response resumes the task
directly through Airflow's REST API.

"Newer" is the order in which runs were created: each approval records, when its wait starts, its
run's `run_after` in the XCom `approval_wait` (see notifications/approvals.py). Workers have no
database access in Airflow 3 and cannot end another run's wait; each waiting trigger instead looks
at the other runs every `check_interval` seconds through the Task SDK calls the triggerer offers
(`get_task_states` for the approval task in every run of the DAG, and XCom reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from release_orchestrator.notifications.approvals import (
    ApprovalNotifications,
    announce_recorded,
    publish_result,
    publish_superseded,
)
from release_orchestrator.notifications.messages import now_iso
from release_orchestrator.notifications.publishing import DECISION_XCOM_KEY, WAIT_XCOM_KEY
from release_orchestrator.triggers import base as trigger_base

DEFAULT_CHECK_INTERVAL = 30.0
# States of another run's approval task that, together with its `approval_wait` XCom (which Airflow
# clears when a new try starts), show it reached its wait: waiting, or decided. A task in between
# (resuming after a form answer) shows up at a later check, once it is decided.
REACHED_STATES = frozenset({"deferred", "awaiting_input", "success", "failed"})
TERMINAL_STATES = frozenset({"success", "failed"})

# (dag_id, task_id, run_id) -> (state when read, run_after or None). A run's run_after never changes,
# so a found value is kept for the life of the triggerer process; "no wait recorded" is kept only
# while the task stays in the terminal state it had when read.
_ORDER_CACHE: dict[tuple[str, str, str], tuple[str | None, datetime | None]] = {}


def parse_time(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _state_value(state: Any) -> str | None:
    return getattr(state, "value", state)


class ApprovalWaitTrigger(BaseTrigger):
    """Waits until the approval times out or (with `supersede`) a newer run reaches it."""

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        task_id: str,
        expires: str,
        run_after: str,
        map_index: int = -1,
        supersede: bool = False,
        check_interval: float = DEFAULT_CHECK_INTERVAL,
        notifications: dict[str, Any] | None = None,
        mode: str = "mark",
        ends_task: bool = False,
        timeout: str | None = None,
        failure_notices: list[dict[str, Any]] | None = None,
        stage_door: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.dag_id = dag_id
        self.run_id = run_id
        self.task_id = task_id
        self.map_index = -1 if map_index is None else map_index
        self.expires = expires
        self.run_after = run_after
        self.supersede = bool(supersede)
        self.check_interval = max(1.0, float(check_interval))
        self.notifications = notifications
        self.mode = mode  # "form": the worker announces answers to the form itself
        self.ends_task = bool(ends_task)
        self.timeout = timeout  # the approval's timeout as the operator shows it, for messages
        self.failure_notices = failure_notices  # the task's action/stage-failed notifiers, published here
        # {"enter_task_id", "first_enter_task_id"} in a QUEUED/SUPERSEDED pipeline: a newer run waiting to
        # enter this approval's stage cannot reach the approval while this run holds the stage, so it
        # supersedes this run from there.
        self.stage_door = stage_door

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "task_id": self.task_id,
                "map_index": self.map_index,
                "expires": self.expires,
                "run_after": self.run_after,
                "supersede": self.supersede,
                "check_interval": self.check_interval,
                "notifications": self.notifications,
                "mode": self.mode,
                "ends_task": self.ends_task,
                "timeout": self.timeout,
                "failure_notices": self.failure_notices,
                "stage_door": self.stage_door,
            },
        )

    # ---- the wait ------------------------------------------------------------------------------
    async def run(self) -> AsyncIterator[TriggerEvent]:
        expires = parse_time(self.expires)
        while True:
            remaining = (expires - datetime.now(timezone.utc)).total_seconds()
            if remaining <= 0:
                yield await self._ended({"kind": "timeout", "expires": self.expires})
                return
            if self.supersede:
                try:
                    newer = await asyncio.to_thread(self.newer_run)
                except Exception:  # noqa: BLE001 - a failed look is retried at the next check
                    self.log.warning("Could not check for newer runs at this approval", exc_info=True)
                    newer = None
                if newer:
                    self.log.info("Run %s reached %s after this run: superseded", newer, self.task_id)
                    yield await self._ended({"kind": "superseded", "superseded_by": newer})
                    return
                await asyncio.sleep(min(remaining, self.check_interval))
            else:
                await asyncio.sleep(remaining)

    async def _ended(self, event: dict[str, Any]) -> TriggerEvent:
        if not self.ends_task:
            return TriggerEvent(event)
        return await asyncio.to_thread(self.end_without_decision, event)

    def end_without_decision(self, event: dict[str, Any]) -> TriggerEvent:
        """Announce and record a timeout or superseding; the event that fails the task."""
        if self.mode == "form" and self.form_answered():
            # The answer resumed the task already (Airflow's HITL API); this event finds no
            # deferred task and changes nothing.
            self.log.info("The form of %s was answered: the answer decides", self.task_id)
            return TriggerEvent({"kind": "answered"})
        recorded = self.read_xcom(self.run_id, DECISION_XCOM_KEY)
        config = ApprovalNotifications.from_dict(self.notifications)
        if event["kind"] == "superseded":
            newer = str(event["superseded_by"])
            reason = f"approval {self.task_id}: superseded by run {newer}"
            self.log.warning(
                "Run %s reached approval %s after this run: this run is superseded by run %s and "
                "ends here, so reviewers only see the newest build.",
                newer,
                self.task_id,
                newer,
            )
            if not isinstance(recorded, dict):
                announced = publish_superseded(config, run_id=self.run_id, task_id=self.task_id, superseded_by=newer)
                self.write_xcom(
                    DECISION_XCOM_KEY,
                    {"Outcome": "Superseded", "SupersededBy": newer, "Announced": announced, "DecidedAt": now_iso()},
                )
        else:
            within = self.timeout or f"the time given (until {self.expires})"
            reason = f"approval {self.task_id} rejected: nobody approved within {within} (timeout)"
            self.log.warning("%s", reason)
            if not isinstance(recorded, dict):
                why = f"timeout: nobody decided within {within}"
                announced = publish_result(
                    config, run_id=self.run_id, task_id=self.task_id, outcome="Rejected", reason=why
                )
                self.write_xcom(
                    DECISION_XCOM_KEY,
                    {"Outcome": "Rejected", "Reason": why, "Announced": announced, "DecidedAt": now_iso()},
                )
        return trigger_base.failed_task_event(
            self.write_xcom, self.failure_notices, self.task_instance, reason, self.log
        )

    def form_answered(self) -> bool:
        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

        ti = self.task_instance
        try:
            response = get_hitl_detail_content_detail(ti.id)
        except Exception:  # noqa: BLE001 - then the timeout or superseding stands
            self.log.warning("Could not read the form's response", exc_info=True)
            return False
        return bool(getattr(response, "response_received", False))

    def newer_run(self) -> str | None:
        """The newest other run whose same approval reached its wait and that was created after this one."""
        mine = (parse_time(self.run_after), self.run_id)
        newest: tuple[datetime, str] | None = None
        for run_id, state in self.approval_states().items():
            if run_id == self.run_id or state not in REACHED_STATES:
                continue
            run_after = self.run_after_of(run_id, state)
            if run_after is None:
                continue
            order = (run_after, run_id)
            if order > mine and (newest is None or order > newest):
                newest = order
        if newest is None and self.stage_door:
            return self.newer_run_at_door(mine)
        return newest[1] if newest else None

    def newer_run_at_door(self, mine: tuple[datetime, str]) -> str | None:
        """A newer run waiting to enter this approval's stage (see stages/entry.py), if any."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        from release_orchestrator.stages.entry import WAITING_STATES, state_value
        from release_orchestrator.stages.snapshot import RunOrder

        enter = self.stage_door["enter_task_id"]
        states = RuntimeTaskInstance.get_task_states(dag_id=self.dag_id, task_ids=[enter])
        order = RunOrder(self.dag_id, self.stage_door["first_enter_task_id"], ask_runs=False)
        for run_id, tasks in sorted(states.items()):
            if run_id == self.run_id or state_value(tasks.get(enter)) not in WAITING_STATES:
                continue
            theirs = order(run_id)
            if theirs is None or theirs > mine:  # not placed in line yet: it came after this run
                return run_id
        return None

    def approval_states(self) -> dict[str, str | None]:
        """run id -> state of this approval task, for every run of the DAG."""
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        states = RuntimeTaskInstance.get_task_states(
            dag_id=self.dag_id, task_ids=[self.task_id], map_index=None if self.map_index < 0 else self.map_index
        )
        key = self.task_id if self.map_index < 0 else f"{self.task_id}_{self.map_index}"
        return {run_id: _state_value(tasks.get(key)) for run_id, tasks in states.items() if key in tasks}

    def run_after_of(self, run_id: str, state: str) -> datetime | None:
        """When `run_id` was created, as its approval recorded it on starting to wait; None if it did not."""
        cache_key = (self.dag_id, self.task_id, run_id)
        cached = _ORDER_CACHE.get(cache_key)
        if cached is not None and (cached[1] is not None or cached[0] == state):
            return cached[1]
        wait = self.read_xcom(run_id, WAIT_XCOM_KEY)
        run_after = parse_time(wait["run_after"]) if isinstance(wait, dict) and wait.get("run_after") else None
        if run_after is not None or state in TERMINAL_STATES:
            _ORDER_CACHE[cache_key] = (state, run_after)
        return run_after

    def read_xcom(self, run_id: str, key: str) -> Any:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_one(key=key, dag_id=self.dag_id, task_id=self.task_id, run_id=run_id, map_index=self.map_index)

    def write_xcom(self, key: str, value: Any) -> None:
        from airflow.sdk.execution_time.xcom import XCom

        XCom.set(key, value, dag_id=self.dag_id, task_id=self.task_id, run_id=self.run_id, map_index=self.map_index)

    # ---- a person decided by marking the task ---------------------------------------------------
    async def on_kill(self) -> None:
        """Airflow cancelled the wait because of a user action: announce a decision made by marking.

        Called for mark success, mark failed and clear alike (and after a form response resumed
        the task); the task's state tells them apart. A decision the worker already announced
        (form mode) is recorded in `approval_decision` and not announced again.
        """
        # A failure is logged; the DAG callback at the end of the run catches up.
        await trigger_base.finish_despite_cancellation(
            self.announce_marked_decision, self.log, f"announcing the decision on {self.task_id}"
        )

    def announce_marked_decision(self) -> None:
        """Publish the decision the api-server's gate recorded when an allowed reviewer marked the task."""
        state = self.approval_states().get(self.run_id)
        if state not in TERMINAL_STATES:
            self.log.info("Approval wait of %s ended with the task %s: nothing to announce", self.task_id, state)
            return
        decision = self.read_xcom(self.run_id, DECISION_XCOM_KEY)
        if not isinstance(decision, dict) or decision.get("DecidedBy") != "mark":
            # Answered in the form (the worker announces it), stopped with the whole run, or moved
            # by a path outside the gate (the actions after the approval refuse to run then).
            outcome = decision.get("Outcome") if isinstance(decision, dict) else "no recorded decision"
            self.log.info("Approval %s ended %s (%s): nothing to announce here", self.task_id, state, outcome)
            return
        if decision.get("Announced"):
            return
        announced = announce_recorded(
            ApprovalNotifications.from_dict(self.notifications), self.run_id, self.task_id, decision
        )
        self.write_xcom(DECISION_XCOM_KEY, {**decision, "Announced": announced})
        self.log.info(
            "Approval %s %s by %s%s",
            self.task_id,
            str(decision.get("Outcome")).lower(),
            decision.get("Reviewer"),
            "; announced" if announced else "",
        )

"""Approval notifications: needed, approved, rejected, and a run superseded at its approval.

Who publishes what (details in docs/approvals.md):

| event | published by |
|---|---|
| `approval-needed` | the approval operator when its wait starts (worker), once per wait |
| `approval-approved` / `approval-rejected`, form mode | the operator when the response resumes it (worker) |
| `approval-approved` / `approval-rejected`, marked | the waiting trigger when Airflow cancels it because the task was marked (triggerer); a decision it missed is published when the run ends (DAG callback) |
| `approval-rejected` (timeout) | the waiting trigger when the approval expires (triggerer), which then fails the task |
| `pipeline-superseded` | the waiting trigger when it finds a newer run (triggerer), which then fails the task |

Two XComs of the approval task tie these together (XCom, because the worker, the triggerer and the
DAG callbacks can all read it; Airflow clears it when a new try of the approval starts):
- `approval_wait`: written when the wait starts: the run's place in the order of runs, the moment
  the wait started and the run's clear number;
- `approval_decision`: written when the wait ends: `Outcome` (Approved, Rejected, Superseded) and
  whether the decision was announced.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.publishing import (
    DECISION_XCOM_KEY,
    WAIT_XCOM_KEY,
    airflow_base_url,
    publish,
    publish_once,
    split_task_id,
)

log = logging.getLogger(__name__)

RESULT_EVENTS = {"Approved": "approval-approved", "Rejected": "approval-rejected"}


@dataclass
class ApprovalNotifications:
    """Where an approval publishes its decision and superseding events (the pipeline's `notifications`)."""

    pipeline: str
    topic_arn: str | None = None
    events: list[str] = field(default_factory=list)
    aws_conn_id: str | None = "aws_default"
    region_name: str | None = None

    def wants(self, event: str) -> bool:
        return bool(self.topic_arn) and event in self.events

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: dict[str, Any] | None) -> ApprovalNotifications | None:
        return cls(**value) if value else None

    def hook(self):
        from airflow.providers.amazon.aws.hooks.sns import SnsHook

        return SnsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)


def result_message(
    *,
    pipeline: str,
    run_id: str,
    task_id: str,
    outcome: str,
    region: str,
    reviewer: str | None = None,
    comment: str | None = None,
    reason: str | None = None,
) -> tuple[str, dict[str, Any]]:
    """Subject and message of approval-approved / approval-rejected."""
    stage, action = split_task_id(task_id)
    links = messages.airflow_links(airflow_base_url(), pipeline, run_id, task_id)
    message = messages.approval_result_event(
        pipeline=pipeline,
        execution_id=run_id,
        stage=stage,
        action=action,
        outcome=outcome,
        region=region,
        links=links,
        reviewer=reviewer,
        comment=comment,
        reason=reason,
    )
    verb = "APPROVED" if outcome == "Approved" else "REJECTED"
    who = f" by {reviewer}" if reviewer else ""
    return f"{verb}: {pipeline} {stage}.{action}{who} (run {run_id})", message


def superseded_message(
    *, pipeline: str, run_id: str, task_id: str, superseded_by: str, region: str
) -> tuple[str, dict[str, Any]]:
    stage, action = split_task_id(task_id)
    links = messages.airflow_links(airflow_base_url(), pipeline, run_id, task_id)
    message = messages.superseded_event(
        pipeline=pipeline,
        execution_id=run_id,
        superseded_by=superseded_by,
        stage=stage,
        action=action,
        region=region,
        links=links,
    )
    return f"SUPERSEDED: pipeline {pipeline} (run {run_id}) by run {superseded_by}", message


def _region(config: ApprovalNotifications, hook: Any) -> str:
    return config.region_name or getattr(hook, "conn_region_name", None) or ""


def publish_result(
    config: ApprovalNotifications | None,
    *,
    run_id: str,
    task_id: str,
    outcome: str,
    reviewer: str | None = None,
    comment: str | None = None,
    reason: str | None = None,
    context: Any = None,
    ident: str | None = None,
) -> bool:
    """Publish approval-approved / approval-rejected if wanted; True when it was published.

    With a task `context` and `ident` (worker side) it is published at most once per identity.
    """
    event = RESULT_EVENTS[outcome]
    if config is None or not config.wants(event):
        return False
    hook = config.hook()
    subject, message = result_message(
        pipeline=config.pipeline,
        run_id=run_id,
        task_id=task_id,
        outcome=outcome,
        region=_region(config, hook),
        reviewer=reviewer,
        comment=comment,
        reason=reason,
    )
    attributes = {"event": event, "pipeline": config.pipeline}
    if context is not None and ident:
        return publish_once(context, ident, hook, config.topic_arn, subject, message, attributes)
    return publish(hook, config.topic_arn, subject, message, attributes)


def publish_refusal(
    config: ApprovalNotifications | None, *, run_id: str, task_id: str, user: str | None, reason: str, request: str
) -> bool:
    """Publish approval-refused if wanted (the api-server's gate, when it refuses a decision)."""
    if config is None or not config.wants("approval-refused"):
        return False
    hook = config.hook()
    stage, action = split_task_id(task_id)
    message = messages.refusal_event(
        pipeline=config.pipeline,
        execution_id=run_id,
        stage=stage,
        action=action,
        region=_region(config, hook),
        links=messages.airflow_links(airflow_base_url(), config.pipeline, run_id, task_id),
        user=user,
        reason=reason,
        request=request,
    )
    subject = f"REFUSED: {config.pipeline} {stage}.{action}: {user or 'an unidentified user'} may not decide it"
    return publish(hook, config.topic_arn, subject, message, {"event": "approval-refused", "pipeline": config.pipeline})


def publish_superseded(
    config: ApprovalNotifications | None,
    *,
    run_id: str,
    task_id: str,
    superseded_by: str,
    context: Any = None,
    ident: str | None = None,
) -> bool:
    """Publish pipeline-superseded if wanted (at most once per `ident` with a worker `context`)."""
    if config is None or not config.wants("pipeline-superseded"):
        return False
    hook = config.hook()
    subject, message = superseded_message(
        pipeline=config.pipeline,
        run_id=run_id,
        task_id=task_id,
        superseded_by=superseded_by,
        region=_region(config, hook),
    )
    attributes = {"event": "pipeline-superseded", "pipeline": config.pipeline}
    if context is not None and ident:
        return publish_once(context, ident, hook, config.topic_arn, subject, message, attributes)
    return publish(hook, config.topic_arn, subject, message, attributes)


def announce_recorded(
    config: ApprovalNotifications | None, run_id: str, task_id: str, decision: dict[str, Any], late: bool = False
) -> bool:
    """Publish a decision the api-server's gate recorded when a reviewer marked the task."""
    return publish_result(
        config,
        run_id=run_id,
        task_id=task_id,
        outcome=str(decision.get("Outcome")),
        reviewer=decision.get("Reviewer") or None,
        comment=decision.get("Comment") or None,
        reason="decided by marking the task" + ("; announced when the run ended" if late else ""),
    )


class ApprovalDecisionNotifier:
    """DAG callback (run succeeded or failed): publish approval decisions nobody announced.

    A decision made by marking the task is announced by the approval's trigger when Airflow cancels
    it. If no triggerer was running the trigger at that moment, the decision would go unannounced;
    this callback, run once when the run ends, publishes it then (late rather than never). It only
    looks at approvals that waited in the current round of the run (a run cleared and run again
    starts a new round), and skips decisions already announced.
    """

    # The triggerer announces a marked decision a few seconds after it was made; a run whose last
    # action was the approval can end sooner than that, so give it this long to show up.
    GRACE_SECONDS = 20.0
    GRACE_POLL_SECONDS = 2.0

    def __init__(self, config: ApprovalNotifications, approval_task_ids: list[str]):
        self.config = config
        self.approval_task_ids = list(approval_task_ids)

    def __call__(self, context: Any) -> None:
        try:
            self.notify(context)
        except Exception:  # noqa: BLE001 - a notification never changes the outcome
            log.exception("Could not check the approvals of this run for unannounced decisions")

    def notify(self, context: Any) -> None:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        run_id = context.get("run_id") or getattr(dag_run, "run_id", None)
        if ti is None or dag_run is None or not run_id:
            log.warning("No task instance in the callback context; cannot check approval decisions")
            return
        clear_number = getattr(dag_run, "clear_number", 0) or 0
        pending: dict[str, dict[str, Any]] = {}
        for task_id in self.approval_task_ids:
            decision = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM_KEY)
            if not isinstance(decision, dict) or decision.get("DecidedBy") != "mark" or decision.get("Announced"):
                continue  # no marked decision, or announced already
            wait = ti.xcom_pull(task_ids=task_id, key=WAIT_XCOM_KEY)
            if not isinstance(wait, dict) or (wait.get("clear_number") or 0) != clear_number:
                continue  # decided in an earlier round of this run (announced back then)
            pending[task_id] = decision
        deadline = time.monotonic() + self.GRACE_SECONDS
        while pending:
            time.sleep(self.GRACE_POLL_SECONDS)
            for task_id in list(pending):
                decision = ti.xcom_pull(task_ids=task_id, key=DECISION_XCOM_KEY)
                if not isinstance(decision, dict) or decision.get("Announced"):
                    del pending[task_id]  # announced by the triggerer meanwhile
            if not pending or time.monotonic() >= deadline:
                break
        for task_id, decision in pending.items():
            log.info("Approval %s was decided by marking and not announced yet; publishing it now", task_id)
            announce_recorded(self.config, run_id, task_id, decision, late=True)

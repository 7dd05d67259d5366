"""Publishing to SNS, shared by the pipeline notifier and the approval notifications.

A failed publish is retried, then logged as an error without changing the pipeline's own outcome
(a notification must never hide or alter what happened to the release).

Exactly once: SNS standard topics do not deduplicate, so events published from a task (in the
worker) are recorded in the task instance's state store (`SentLog`), which Airflow keeps across
tries, resumptions after deferral and clears. An event is recorded only once its publish succeeded,
so a failed publish is tried again by the next try instead of being lost.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from release_orchestrator.notifications import messages

log = logging.getLogger(__name__)

PUBLISH_ATTEMPTS = 3
# Task state store key under which a task instance records the events it published.
SENT_LOG_KEY = "release_notifications_sent"
# Longer than the longest approval wait (60 days), so no record expires while its task can still run.
SENT_LOG_RETENTION = timedelta(days=90)
# XComs of an approval task (see notifications/approvals.py), read by the pipeline notifier too:
# when the wait started, and how it ended (Approved, Rejected, Superseded).
WAIT_XCOM_KEY = "approval_wait"
DECISION_XCOM_KEY = "approval_decision"


def split_task_id(task_id: str) -> tuple[str, str]:
    """'Build.Compile' -> ('Build', 'Compile'): stage groups are one level deep."""
    stage, _, action = task_id.partition(".")
    return (stage, action) if action else ("", stage)


def airflow_base_url() -> str:
    from airflow.configuration import conf

    return conf.get("api", "base_url", fallback="http://localhost:8080") or "http://localhost:8080"


def publish(hook: Any, target_arn: str, subject: str, message: dict[str, Any], attributes: dict | None = None) -> bool:
    """Publish with a few retries; never raise (the release's outcome must not depend on SNS)."""
    body = json.dumps(message, default=str)
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        try:
            hook.publish_to_target(
                target_arn=target_arn, message=body, subject=messages.subject(subject), message_attributes=attributes
            )
            return True
        except Exception as err:  # noqa: BLE001 - any publish failure is retried, then logged
            if attempt == PUBLISH_ATTEMPTS:
                log.error(
                    "SNS publish to %s failed after %d attempts: %s; message was: %s", target_arn, attempt, err, body
                )
                return False
            time.sleep(0.5 * 2 ** (attempt - 1))
    return False


class SentLog:
    """The events one task instance has published, in its task state store (worker side only).

    Identities are chosen by the caller: `pipeline-started`, `approval-needed#2` (the second wait of
    an approval after a clear), ... Without a store (an old Airflow, a unit test without one) every
    event counts as not yet sent: publishing twice is better than never.
    """

    def __init__(self, context: Any):
        self._store = context.get("task_state_store") if hasattr(context, "get") else None
        self._sent: dict[str, str] = {}
        if self._store is not None:
            try:
                self._sent = dict(self._store.get(SENT_LOG_KEY) or {})
            except Exception:  # noqa: BLE001 - the record only prevents duplicates
                log.warning("Could not read the notification record; events may be published again", exc_info=True)
                self._store = None

    def __contains__(self, ident: str) -> bool:
        return ident in self._sent

    def add(self, ident: str) -> None:
        self._sent[ident] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        if self._store is not None:
            try:
                self._store.set(SENT_LOG_KEY, self._sent, retention=SENT_LOG_RETENTION)
            except Exception:  # noqa: BLE001
                log.warning("Could not record that %s was published", ident, exc_info=True)


def publish_once(
    context: Any,
    ident: str,
    hook: Any,
    target_arn: str,
    subject: str,
    message: dict[str, Any],
    attributes: dict | None = None,
) -> bool:
    """Publish unless this task instance already published `ident`; True when it is (now) published."""
    sent = SentLog(context)
    if ident in sent:
        log.info("Notification %s was already published for this task instance; not publishing it again", ident)
        return True
    if publish(hook, target_arn, subject, message, attributes):
        sent.add(ident)
        return True
    return False

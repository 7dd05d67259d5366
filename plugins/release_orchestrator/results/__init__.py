"""What finished AWS work means for its action: the action's outputs, or why it failed.

Computed where the wait ends: in the triggerer, which then ends the task itself (TaskSuccessEvent
with the outputs as XCom, TaskFailedEvent with the reason), so the task never resumes on a worker
after deferring (see docs/architecture.md, "Waits end in the triggerer"); and in the worker for the
rare action whose work is already finished when it starts or that waits without deferring.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import AirflowException

# XCom of a task that failed in the triggerer: why it failed (failure notifications read it, since
# Airflow passes no exception to callbacks of tasks ended by their trigger).
FAILURE_XCOM_KEY = "failure_reason"


class ActionFailed(AirflowException):
    """The action's work finished without success; the message says why."""


def own_xcom(ti: Any, key: str) -> Any:
    """A task instance's own XCom `key`, None when there is none or it cannot be read (for messages only)."""
    if ti is None or not hasattr(ti, "xcom_pull"):
        return None
    try:
        return ti.xcom_pull(task_ids=ti.task_id, key=key)
    except Exception:  # noqa: BLE001 - such values only shape a message
        return None


def failure_reason(ti: Any) -> str | None:
    """The reason a task ended by its trigger failed, from its XCom (None if there is none)."""
    value = own_xcom(ti, FAILURE_XCOM_KEY)
    return value if isinstance(value, str) and value else None

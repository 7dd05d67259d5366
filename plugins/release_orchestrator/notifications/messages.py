"""SNS messages shaped like CodePipeline's: EventBridge state-change events and the approval JSON.

Tools that already parse CodePipeline notifications can read these; people get a readable subject.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

EVENTS = (
    "pipeline-started",
    "pipeline-succeeded",
    "pipeline-failed",
    "pipeline-superseded",
    "pipeline-stopping",
    "pipeline-stopped",
    "pipeline-resumed",
    "stage-started",
    "stage-succeeded",
    "stage-failed",
    "stage-stopping",
    "stage-stopped",
    "stage-resumed",
    "action-started",
    "action-succeeded",
    "action-failed",
    "approval-needed",
    "approval-approved",
    "approval-rejected",
    "approval-refused",
)
# The events an approval publishes itself (the first when it starts waiting; the others when it ends).
APPROVAL_EVENTS = (
    "approval-needed",
    "approval-approved",
    "approval-rejected",
    "approval-refused",
    "pipeline-superseded",
)

DETAIL_TYPES = {
    "pipeline": "CodePipeline Pipeline Execution State Change",
    "stage": "CodePipeline Stage Execution State Change",
    "action": "CodePipeline Action Execution State Change",
    "refusal": "Release Orchestrator Approval Decision Refused",
}

SOURCE = "release-orchestrator"


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def airflow_links(base_url: str, dag_id: str, run_id: str, task_id: str | None = None) -> dict[str, str]:
    """Deep links into the Airflow UI: the run, and the task (its log) when given."""
    base = base_url.rstrip("/")
    run = f"{base}/dags/{quote(dag_id)}/runs/{quote(run_id)}"
    links = {"run": run}
    if task_id:
        links["task"] = f"{run}/tasks/{quote(task_id)}"
    return links


def task_links(links: dict[str, str]) -> dict[str, str]:
    """The links of an action's event: its run, and its task's log (the run when there is no task)."""
    return {"airflow-run-link": links["run"], "airflow-log-link": links.get("task", links["run"])}


def state_change_event(
    *,
    level: str,
    pipeline: str,
    execution_id: str,
    state: str,
    region: str,
    account: str = "",
    stage: str | None = None,
    action: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An EventBridge-shaped event, level one of pipeline / stage / action."""
    detail: dict[str, Any] = {"pipeline": pipeline, "execution-id": execution_id, "state": state, "version": 1}
    if stage:
        detail["stage"] = stage
    if action:
        detail["action"] = action
    if extra:
        detail.update(extra)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": DETAIL_TYPES[level],
        "source": SOURCE,
        "account": account,
        "time": now_iso(),
        "region": region,
        "resources": [f"pipeline:{pipeline}"],
        "detail": detail,
    }


def approval_message(
    *,
    region: str,
    console_link: str,
    pipeline: str,
    stage: str,
    action: str,
    token: str,
    expires: str,
    review_link: str,
    external_entity_link: str | None,
    custom_data: str | None,
    release_notes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The JSON CodePipeline sends for a manual approval, with links into Airflow; `release` (ours) lists
    what each GitHub source releases: its commit, the last release's and the commits in between."""
    message = {
        "region": region,
        "consoleLink": console_link,
        "approval": {
            "pipelineName": pipeline,
            "stageName": stage,
            "actionName": action,
            "token": token,
            "expires": expires,
            "externalEntityLink": external_entity_link,
            "approvalReviewLink": review_link,
            "customData": custom_data,
        },
    }
    if release_notes:
        message["release"] = {"sources": release_notes}
    return message


APPROVAL_ACTION_TYPE = {"owner": "AWS", "category": "Approval", "provider": "Manual", "version": "1"}


def approval_result_event(
    *,
    pipeline: str,
    execution_id: str,
    stage: str,
    action: str,
    outcome: str,
    region: str,
    links: dict[str, str],
    reviewer: str | None = None,
    comment: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The approval action's state change once it is decided: SUCCEEDED when approved, FAILED otherwise.

    `outcome` is "Approved" or "Rejected"; the reviewer and comment are known in form mode, the reason
    when nobody decided (timeout).
    """
    approval: dict[str, Any] = {"outcome": outcome}
    for key, value in (("reviewer", reviewer), ("comment", comment), ("reason", reason)):
        if value:
            approval[key] = value
    return state_change_event(
        level="action",
        pipeline=pipeline,
        execution_id=execution_id,
        state="SUCCEEDED" if outcome == "Approved" else "FAILED",
        region=region,
        stage=stage,
        action=action,
        extra={
            "type": dict(APPROVAL_ACTION_TYPE),
            "approval": approval,
            **task_links(links),
        },
    )


def refusal_event(
    *,
    pipeline: str,
    execution_id: str,
    stage: str,
    action: str,
    region: str,
    links: dict[str, str],
    user: str | None,
    reason: str,
    request: str,
) -> dict[str, Any]:
    """Someone tried to decide an approval they may not decide (CodePipeline has no such event)."""
    return state_change_event(
        level="refusal",
        pipeline=pipeline,
        execution_id=execution_id,
        state="REFUSED",
        region=region,
        stage=stage,
        action=action,
        extra={
            "type": dict(APPROVAL_ACTION_TYPE),
            "refused": {"user": user or "", "reason": reason, "request": request},
            **task_links(links),
        },
    )


def superseded_event(
    *, pipeline: str, execution_id: str, superseded_by: str, stage: str, action: str, region: str, links: dict[str, str]
) -> dict[str, Any]:
    """The run's state change to SUPERSEDED: a newer run reached the approval it was waiting at."""
    return state_change_event(
        level="pipeline",
        pipeline=pipeline,
        execution_id=execution_id,
        state="SUPERSEDED",
        region=region,
        extra={
            "superseded-by": superseded_by,
            "superseded-at-stage": stage,
            "superseded-at-action": action,
            "reason": f"superseded by run {superseded_by}",
            **task_links(links),
        },
    )


def subject(text: str) -> str:
    """SNS subjects: printable ASCII, one line, at most 100 characters."""
    clean = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text.replace("\n", " "))
    return clean if len(clean) <= 100 else clean[:97] + "..."

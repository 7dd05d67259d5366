"""Manual approval: a human gate that holds no worker slot while it waits.

Two modes, one notification:
- `mark` (default): the action publishes CodePipeline's approval JSON to SNS, then defers on a
  timer, so the wait lives in the triggerer. A reviewer approves by marking the task success and
  rejects by marking it failed (Airflow UI grid, or REST `PATCH .../taskInstances/{task_id}` with
  `new_state`), with a note that Airflow keeps together with its author.
- `form`: Airflow's human-in-the-loop ApprovalOperator (the Required Actions page): the task waits
  in Airflow 3.3's `awaiting_input` state; assigned approvers pick Approve or Reject and may leave
  a comment; Reject fails the pipeline. Its outputs (Outcome, Reviewer, Comment, DecidedAt) are
  available to later stages.
Either way, nobody deciding before the timeout fails the action as rejected, with that reason.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator, Param
from airflow.sdk.exceptions import AirflowException

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.notifier import airflow_base_url, publish, split_task_id
from release_orchestrator.pipeline.syntax import parse_duration

DEFAULT_TIMEOUT = "7d"


class ApprovalTimedOut(AirflowException):
    pass


def publish_approval_needed(operator: BaseOperator, context: Any, expires: datetime, topic_arn: str,
                            custom_data: str | None, external_entity_link: str | None,
                            aws_conn_id: str | None, region_name: str | None) -> None:
    """CodePipeline's approval message, whose review link opens the task in the Airflow UI."""
    dag_id, run_id = context["dag"].dag_id, context["run_id"]
    stage, action = split_task_id(operator.task_id)
    hook = SnsHook(aws_conn_id=aws_conn_id, region_name=region_name)
    links = messages.airflow_links(airflow_base_url(), dag_id, run_id, operator.task_id)
    message = messages.approval_message(
        region=hook.conn_region_name or "",
        console_link=links["run"],
        pipeline=dag_id,
        stage=stage,
        action=action,
        token=f"{dag_id}/{run_id}/{operator.task_id}",
        expires=expires.strftime("%Y-%m-%dT%H:%MZ"),
        review_link=links["task"],
        external_entity_link=external_entity_link,
        custom_data=custom_data,
    )
    publish(hook, topic_arn, f"APPROVAL NEEDED: {dag_id} {stage}.{action}", message,
            {"event": "approval-needed", "pipeline": dag_id})


class ManualApprovalOperator(BaseOperator):
    """approval.manual, mode `mark`: approve or reject by marking the task."""

    template_fields = ("sns_topic_arn", "custom_data", "external_entity_link")
    ui_color = "#fff4d6"

    def __init__(self, *, sns_topic_arn: str | None = None, custom_data: str | None = None,
                 external_entity_link: str | None = None, timeout: str = DEFAULT_TIMEOUT,
                 approvers: list[str] | None = None, mode: str = "mark",
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.sns_topic_arn = sns_topic_arn
        self.custom_data = custom_data
        self.external_entity_link = external_entity_link
        self.approval_timeout = parse_duration(timeout)
        self.approvers = list(approvers or [])
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> None:
        expires = datetime.now(timezone.utc) + self.approval_timeout
        if self.sns_topic_arn:
            publish_approval_needed(self, context, expires, self.sns_topic_arn, self.custom_data,
                                    self.external_entity_link, self.aws_conn_id, self.region_name)
        self.log.info(
            "Waiting for approval until %s. Approve: mark this task success; reject: mark it failed%s.",
            expires.isoformat(timespec="seconds"),
            f" (approvers: {', '.join(self.approvers)})" if self.approvers else "",
        )
        self.defer(trigger=DateTimeTrigger(moment=expires), method_name="execute_timeout")

    def execute_timeout(self, context: Any, event: Any = None) -> None:
        raise ApprovalTimedOut(
            f"approval {self.task_id} rejected: nobody approved within {self.approval_timeout} (timeout)"
        )


class FormApprovalOperator(ApprovalOperator):
    """approval.manual, mode `form`: Airflow's HITL approval form, limited to the approvers."""

    template_fields = (*ApprovalOperator.template_fields, "sns_topic_arn", "external_entity_link")
    ui_color = "#fff4d6"

    def __init__(self, *, sns_topic_arn: str | None = None, custom_data: str | None = None,
                 external_entity_link: str | None = None, timeout: str = DEFAULT_TIMEOUT,
                 approvers: list[str] | None = None, mode: str = "form",
                 aws_conn_id: str | None = "aws_default", region_name: str | None = None, **kwargs: Any):
        # The form shows the task's own params: only the comment, not the pipeline variables the
        # DAG passes down (those stay available to templates through the run's params).
        kwargs.pop("params", None)
        body = "\n\n".join(part for part in (
            custom_data, f"Release candidate: {external_entity_link}" if external_entity_link else None) if part)
        super().__init__(
            subject=f"Approve {kwargs.get('task_id', 'release')}?",
            body=body or None,
            params={"comment": Param("", type="string", title="Comment",
                                     description="Why you approve or reject (kept with the decision)")},
            assigned_users=[{"id": user, "name": user} for user in approvers] if approvers else None,
            response_timeout=parse_duration(timeout),
            fail_on_reject=True,
            **kwargs,
        )
        self.sns_topic_arn = sns_topic_arn
        self.custom_data = custom_data
        self.external_entity_link = external_entity_link
        self.approvers = list(approvers or [])
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> Any:
        self.subject = f"Approve {context['dag'].dag_id} {self.task_id}?"
        if self.sns_topic_arn:
            expires = datetime.now(timezone.utc) + self.response_timeout
            publish_approval_needed(self, context, expires, self.sns_topic_arn, self.custom_data,
                                    self.external_entity_link, self.aws_conn_id, self.region_name)
        return super().execute(context)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if "error" in event and event.get("error_type") == "timeout":
            raise ApprovalTimedOut(f"approval {self.task_id} rejected: nobody decided within "
                                   f"{self.response_timeout} (timeout)")
        result = super().execute_complete(context, event)  # raises when rejected
        user = result["responded_by_user"] or {}
        return {
            "Outcome": "Approved",
            "Reviewer": user.get("name") or user.get("id", ""),
            "Comment": (result.get("params_input") or {}).get("comment", ""),
            "DecidedAt": str(result["responded_at"]),
        }

"""Manual approval: a human gate that holds no worker slot while it waits.

On entering the wait the action publishes CodePipeline's approval JSON to SNS, with a review link
that opens the task in the Airflow UI. Then it defers on a timer: the wait lives in the triggerer.
A reviewer approves by marking the task success and rejects by marking it failed (Airflow UI grid
or REST API `PATCH .../taskInstances/{task_id}` with `new_state`), with a note that Airflow keeps.
If nobody decides before the timeout, the action fails as rejected, with that reason.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.notifier import airflow_base_url, publish, split_task_id
from release_orchestrator.pipeline.validate import parse_duration

DEFAULT_TIMEOUT = "7d"


class ApprovalTimedOut(AirflowException):
    pass


class ManualApprovalOperator(BaseOperator):
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
        self.mode = mode
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name

    def execute(self, context: Any) -> None:
        expires = datetime.now(timezone.utc) + self.approval_timeout
        if self.sns_topic_arn:
            self._notify_needed(context, expires)
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

    def _notify_needed(self, context: Any, expires: datetime) -> None:
        dag_id, run_id = context["dag"].dag_id, context["run_id"]
        stage, action = split_task_id(self.task_id)
        hook = SnsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)
        links = messages.airflow_links(airflow_base_url(), dag_id, run_id, self.task_id)
        message = messages.approval_message(
            region=hook.conn_region_name or "",
            console_link=links["run"],
            pipeline=dag_id,
            stage=stage,
            action=action,
            token=f"{dag_id}/{run_id}/{self.task_id}",
            expires=expires.strftime("%Y-%m-%dT%H:%MZ"),
            review_link=links["task"],
            external_entity_link=self.external_entity_link,
            custom_data=self.custom_data,
        )
        publish(hook, self.sns_topic_arn, f"APPROVAL NEEDED: {dag_id} {stage}.{action}", message,
                {"event": "approval-needed", "pipeline": dag_id})

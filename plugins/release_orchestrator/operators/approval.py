"""Manual approval: a human gate that holds no worker slot while it waits.

Two modes, one notification:
- `mark` (default): the action publishes CodePipeline's approval JSON to SNS, then defers, so the
  wait lives in the triggerer. A reviewer approves by marking the task success and rejects by
  marking it failed (Airflow UI grid, or REST `PATCH .../taskInstances/{task_id}` with
  `new_state`), with a note that Airflow keeps together with its author.
- `form`: Airflow's human-in-the-loop approval form (the Required Actions page, or REST
  `PATCH .../taskInstances/{task_id}/-1/hitlDetails`): assigned approvers pick Approve or Reject and
  may leave a comment; Reject fails the pipeline. Its outputs (Outcome, Reviewer, Comment,
  DecidedAt) are available to later stages.

Both wait on `ApprovalWaitTrigger` (triggers/approval.py), which ends the wait at the timeout (the
action fails as rejected) and, when superseding is on, when a newer run of the pipeline reaches the
same approval (the action fails as superseded, and this run ends): the trigger announces and fails
the task itself, without resuming it on a worker. `execute_complete` serves form answers and
triggers of an earlier version. docs/approvals.md has the whole
story; notifications/approvals.py says which process publishes which event.

A wait survives retries: its expiry and its `approval-needed` message belong to the wait, which is
kept in the task state store and ends with a decision, a timeout or superseding, or when someone
clears the task (Airflow then raises the task's max_tries); a retry continues the same wait.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.providers.amazon.aws.hooks.sns import SnsHook
from airflow.providers.standard.exceptions import HITLRejectException
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseOperator, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from release_orchestrator.notifications import messages
from release_orchestrator.notifications.approvals import ApprovalNotifications, publish_result, publish_superseded
from release_orchestrator.notifications.messages import now_iso
from release_orchestrator.notifications.notifier import failure_notices
from release_orchestrator.notifications.publishing import (
    DECISION_XCOM_KEY,
    SENT_LOG_RETENTION,
    WAIT_XCOM_KEY,
    airflow_base_url,
    publish_once,
    split_task_id,
)
from release_orchestrator.pipeline.action_types import approval_timeout_problem
from release_orchestrator.pipeline.syntax import parse_duration
from release_orchestrator.triggers.approval import DEFAULT_CHECK_INTERVAL, ApprovalWaitTrigger, parse_time

DEFAULT_TIMEOUT = "7d"
# Task state store key of the current wait.
WAIT_STATE_KEY = "release_approval_wait"


class ApprovalTimedOut(AirflowException):
    pass


class ApprovalSuperseded(AirflowFailException):
    """A newer run reached this approval: this run ends here (no retry)."""

    def __init__(self, message: str, superseded_by: str):
        super().__init__(message)
        self.superseded_by = superseded_by


def approval_timeout(text: Any) -> timedelta:
    """The rendered `timeout` as a duration, within the range the spec allows."""
    duration = parse_duration(str(text))
    if problem := approval_timeout_problem(str(text), duration):
        raise ValueError(f"approval timeout {problem}")
    return duration


def publish_approval_needed(
    operator: BaseOperator,
    context: Any,
    expires: datetime,
    topic_arn: str,
    custom_data: str | None,
    external_entity_link: str | None,
    aws_conn_id: str | None,
    region_name: str | None,
    ident: str = "approval-needed",
    release_notes: list[dict[str, Any]] | None = None,
) -> bool:
    """CodePipeline's approval message, whose review link opens the task in the Airflow UI (once per `ident`)."""
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
        release_notes=release_notes,
    )
    return publish_once(
        context,
        ident,
        hook,
        topic_arn,
        f"APPROVAL NEEDED: {dag_id} {stage}.{action}",
        message,
        {"event": "approval-needed", "pipeline": dag_id},
    )


@dataclass
class Wait:
    """One wait of an approval task instance, as kept in its task state store."""

    generation: int
    max_tries: int
    started: str
    expires: str
    ended: bool = False

    @classmethod
    def load(cls, context: Any) -> Wait | None:
        store = context.get("task_state_store")
        value = store.get(WAIT_STATE_KEY) if store is not None else None
        return cls(**value) if isinstance(value, dict) else None

    def save(self, context: Any) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.set(WAIT_STATE_KEY, asdict(self), retention=SENT_LOG_RETENTION)


class ApprovalWaitMixin:
    """What both modes share: starting (or continuing) the wait, and how it ends without a person."""

    task_id: str
    log: Any

    def __init__(self, *, release_source_task_ids: list[str] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        # GitHub sources before this approval: the message lists the commits they release (releases.py).
        self.release_source_task_ids = list(release_source_task_ids or [])

    def release_notes(self, context: Any) -> list[dict[str, Any]]:
        """What this run releases from each GitHub source: its commit, the last release's, the commits between."""
        notes = []
        for task_id in self.release_source_task_ids:
            released = context["ti"].xcom_pull(task_ids=task_id)
            if isinstance(released, dict) and released.get("CommitId"):
                notes.append(
                    {
                        "action": task_id,
                        "commitId": released["CommitId"],
                        "lastReleasedCommitId": released.get("LastReleasedCommitId") or "",
                        "commitsSinceLastRelease": list(released.get("CommitsSinceLastRelease") or []),
                    }
                )
        return notes

    def _init_wait(
        self,
        *,
        sns_topic_arn: str | None,
        custom_data: str | None,
        external_entity_link: str | None,
        timeout: str,
        approvers: list[str] | None,
        allow_self_approval: bool,
        aws_conn_id: str | None,
        region_name: str | None,
        supersede: bool,
        check_interval: float | None,
        notifications: dict[str, Any] | None,
        stage_door: dict[str, str] | None = None,
    ) -> None:
        self.sns_topic_arn = sns_topic_arn
        self.custom_data = custom_data
        self.external_entity_link = external_entity_link
        self.approval_timeout = timeout
        if "{{" not in str(timeout):
            approval_timeout(timeout)  # a bad literal fails when the DAG is built, not when the run gets here
        self.approvers = list(approvers or [])
        self.allow_self_approval = bool(allow_self_approval)
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.supersede = bool(supersede)
        self.check_interval = float(check_interval or DEFAULT_CHECK_INTERVAL)
        self.notifications = notifications
        # In a QUEUED or SUPERSEDED pipeline: the Enter tasks (its stage's, the pipeline's first) at which
        # a newer run waits while this run holds the stage (operators/stage_entry.py).
        self.stage_door = dict(stage_door) if stage_door else None

    @property
    def notification_config(self) -> ApprovalNotifications | None:
        return ApprovalNotifications.from_dict(self.notifications)

    def begin_wait(self, context: Any) -> Wait:
        """The wait this try continues (a retry), or a new one (first try, after a clear or a decision)."""
        ti = context["ti"]
        max_tries = int(getattr(ti, "max_tries", 0) or 0)
        try:
            previous = Wait.load(context)
        except Exception:  # noqa: BLE001 - without the record the wait simply starts afresh
            self.log.warning("Could not read the approval's wait record; starting a new wait", exc_info=True)
            previous = None
        if previous is not None and not previous.ended and previous.max_tries == max_tries:
            self.log.info(
                "Continuing the wait started at %s (expires %s); not announcing it again",
                previous.started,
                previous.expires,
            )
            return previous
        now = datetime.now(timezone.utc)
        wait = Wait(
            generation=previous.generation + 1 if previous else 1,
            max_tries=max_tries,
            started=now.isoformat(timespec="seconds"),
            expires=(now + approval_timeout(self.approval_timeout)).isoformat(timespec="seconds"),
        )
        self._save(context, wait)
        return wait

    def _save(self, context: Any, wait: Wait) -> None:
        try:
            wait.save(context)
        except Exception:  # noqa: BLE001
            self.log.warning("Could not record the approval's wait; a retry starts a new one", exc_info=True)

    def current_wait(self, context: Any) -> Wait:
        try:
            wait = Wait.load(context)
        except Exception:  # noqa: BLE001
            wait = None
        return wait or Wait(generation=1, max_tries=0, started=now_iso(), expires=now_iso())

    def end_wait(self, context: Any, wait: Wait, decision: dict[str, Any]) -> None:
        """Record how the wait ended: for the other processes (XCom) and for a later try (state store)."""
        context["ti"].xcom_push(DECISION_XCOM_KEY, {**decision, "DecidedAt": decision.get("DecidedAt") or now_iso()})
        wait.ended = True
        self._save(context, wait)

    def wait_for_decision(self, context: Any, method_name: str) -> None:
        wait = self.begin_wait(context)
        dag_run = context["dag_run"]
        run_after = parse_time(dag_run.run_after).astimezone(timezone.utc).isoformat()
        context["ti"].xcom_push(
            WAIT_XCOM_KEY,
            {
                "run_after": run_after,
                "started": wait.started,
                "expires": wait.expires,
                "wait": wait.generation,
                "clear_number": getattr(dag_run, "clear_number", 0) or 0,
                # Who may decide: the api-server's gate reads them here (gate/enforcement.py).
                "approvers": self.approvers,
                "allow_self_approval": self.allow_self_approval,
                "mode": self.approval_mode,
                "notifications": self.notifications,  # where the gate announces a refused decision
            },
        )
        expires = parse_time(wait.expires)
        if self.sns_topic_arn:
            publish_approval_needed(
                self,
                context,
                expires,
                self.sns_topic_arn,
                self.custom_data,
                self.external_entity_link,
                self.aws_conn_id,
                self.region_name,
                ident=f"approval-needed#{wait.generation}",
                release_notes=self.release_notes(context),
            )
        self.log.info(
            "Waiting for approval until %s.%s%s%s",
            wait.expires,
            self.how_to_decide(),
            f" Approvers: {', '.join(self.approvers)}." if self.approvers else "",
            " A newer run reaching this approval supersedes this one." if self.supersede else "",
        )
        self.defer(  # type: ignore[attr-defined]
            trigger=ApprovalWaitTrigger(
                dag_id=context["dag"].dag_id,
                run_id=context["run_id"],
                task_id=self.task_id,
                map_index=getattr(context["ti"], "map_index", -1),
                expires=wait.expires,
                run_after=run_after,
                supersede=self.supersede,
                check_interval=self.check_interval,
                notifications=self.notifications,
                stage_door=self.stage_door,
                mode=self.approval_mode,
                ends_task=True,
                timeout=str(approval_timeout(self.approval_timeout)),
                failure_notices=failure_notices(self, context),
            ),
            method_name=method_name,
        )

    approval_mode = "mark"

    def how_to_decide(self) -> str:
        return ""

    def wait_ended_without_decision(self, context: Any, event: dict[str, Any]) -> None:
        """The trigger's events: superseded by a newer run, or nobody decided in time. Always raises."""
        wait = self.current_wait(context)
        run_id = context["run_id"]
        if event.get("kind") == "superseded":
            newer = str(event.get("superseded_by"))
            self.log.warning(
                "Run %s reached approval %s after this run: this run is superseded by run %s and "
                "ends here, so reviewers only see the newest build.",
                newer,
                self.task_id,
                newer,
            )
            announced = publish_superseded(
                self.notification_config,
                run_id=run_id,
                task_id=self.task_id,
                superseded_by=newer,
                context=context,
                ident=f"pipeline-superseded#{wait.generation}",
            )
            self.end_wait(context, wait, {"Outcome": "Superseded", "SupersededBy": newer, "Announced": announced})
            raise ApprovalSuperseded(f"approval {self.task_id}: superseded by run {newer}", superseded_by=newer)
        timeout = approval_timeout(self.approval_timeout)
        reason = f"timeout: nobody decided within {timeout}"
        announced = publish_result(
            self.notification_config,
            run_id=run_id,
            task_id=self.task_id,
            outcome="Rejected",
            reason=reason,
            context=context,
            ident=f"approval-rejected#{wait.generation}",
        )
        self.end_wait(context, wait, {"Outcome": "Rejected", "Reason": reason, "Announced": announced})
        raise ApprovalTimedOut(f"approval {self.task_id} rejected: nobody approved within {timeout} (timeout)")


class ManualApprovalOperator(ApprovalWaitMixin, BaseOperator):
    """approval.manual, mode `mark`: approve or reject by marking the task."""

    template_fields = ("sns_topic_arn", "custom_data", "external_entity_link", "approval_timeout")
    ui_color = "#fff4d6"

    def __init__(
        self,
        *,
        sns_topic_arn: str | None = None,
        custom_data: str | None = None,
        external_entity_link: str | None = None,
        timeout: str = DEFAULT_TIMEOUT,
        approvers: list[str] | None = None,
        allow_self_approval: bool = False,
        mode: str = "mark",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        supersede: bool = False,
        check_interval: float | None = None,
        notifications: dict[str, Any] | None = None,
        stage_door: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self._init_wait(
            sns_topic_arn=sns_topic_arn,
            custom_data=custom_data,
            external_entity_link=external_entity_link,
            timeout=timeout,
            approvers=approvers,
            allow_self_approval=allow_self_approval,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            supersede=supersede,
            check_interval=check_interval,
            notifications=notifications,
            stage_door=stage_door,
        )

    def how_to_decide(self) -> str:
        return " Approve: mark this task success; reject: mark it failed."

    def execute(self, context: Any) -> None:
        self.wait_for_decision(context, "execute_complete")

    def execute_complete(self, context: Any, event: Any = None) -> None:
        self.wait_ended_without_decision(context, event if isinstance(event, dict) else {"kind": "timeout"})

    # Tasks deferred by an earlier version resume here.
    execute_timeout = execute_complete


class FormApprovalOperator(ApprovalWaitMixin, ApprovalOperator):
    """approval.manual, mode `form`: Airflow's HITL approval form, limited to the approvers.

    The task writes the form (HITL detail) itself and then waits deferred on the approval trigger
    rather than in Airflow 3.3's trigger-less `awaiting_input` state: the trigger is what notices a
    newer run and the timeout. Airflow's REST API resumes a deferred HITL task directly when the
    form is answered, and the UI lists deferred HITL tasks as required actions.
    """

    template_fields = (*ApprovalOperator.template_fields, "sns_topic_arn", "external_entity_link", "approval_timeout")
    ui_color = "#fff4d6"
    approval_mode = "form"

    def __init__(
        self,
        *,
        sns_topic_arn: str | None = None,
        custom_data: str | None = None,
        external_entity_link: str | None = None,
        timeout: str = DEFAULT_TIMEOUT,
        approvers: list[str] | None = None,
        allow_self_approval: bool = False,
        mode: str = "form",
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        supersede: bool = False,
        check_interval: float | None = None,
        notifications: dict[str, Any] | None = None,
        stage_door: dict[str, str] | None = None,
        **kwargs: Any,
    ):
        # The form shows the task's own params: only the comment, not the pipeline variables the
        # DAG passes down (those stay available to templates through the run's params).
        kwargs.pop("params", None)
        body = "\n\n".join(
            part
            for part in (custom_data, f"Release candidate: {external_entity_link}" if external_entity_link else None)
            if part
        )
        super().__init__(
            subject=f"Approve {kwargs.get('task_id', 'release')}?",
            body=body or None,
            params={
                "comment": Param(
                    "", type="string", title="Comment", description="Why you approve or reject (kept with the decision)"
                )
            },
            # No assignees: Airflow would check them by user id, which is not the name under FAB (a number)
            # and knows no roles. The api-server's gate checks every answer by name and role instead.
            assigned_users=None,
            fail_on_reject=True,
            **kwargs,
        )
        self._init_wait(
            sns_topic_arn=sns_topic_arn,
            custom_data=custom_data,
            external_entity_link=external_entity_link,
            timeout=timeout,
            approvers=approvers,
            allow_self_approval=allow_self_approval,
            aws_conn_id=aws_conn_id,
            region_name=region_name,
            supersede=supersede,
            check_interval=check_interval,
            notifications=notifications,
            stage_door=stage_door,
        )

    def how_to_decide(self) -> str:
        return " Approve or reject in the form (Required Actions)."

    def execute(self, context: Any) -> Any:
        from airflow.sdk.execution_time.hitl import upsert_hitl_detail

        self.subject = f"Approve {context['dag'].dag_id} {self.task_id}?"
        upsert_hitl_detail(
            ti_id=context["task_instance"].id,
            options=self.options,
            subject=self.subject,
            body=self.body,
            defaults=self.defaults,
            multiple=self.multiple,
            params=self.serialized_params,
            assigned_users=self.assigned_users,
        )
        self.wait_for_decision(context, "execute_complete")

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("kind") == "answered":
            # The trigger saw the answer first (rare: the answer itself normally resumes the task).
            event = self._form_response(context) or {"kind": "timeout"}
        if event.get("kind") in ("superseded", "timeout"):
            # A form answered in the same moment lost the race to resume the task: honour the answer.
            event = self._form_response(context) or event
        if event.get("kind") in ("superseded", "timeout"):
            self.wait_ended_without_decision(context, event)
        wait = self.current_wait(context)
        user = event.get("responded_by_user") or {}
        reviewer = user.get("name") or user.get("id") or ""
        comment = (event.get("params_input") or {}).get("comment", "")
        outcome = "Approved" if list(event.get("chosen_options") or []) == [self.APPROVE] else "Rejected"
        decision = {
            "Outcome": outcome,
            "Reviewer": reviewer,
            "Comment": comment,
            "DecidedAt": str(event.get("responded_at") or now_iso()),
        }
        try:
            result = super().execute_complete(context, event)  # validates; raises when rejected
        except HITLRejectException:
            announced = publish_result(
                self.notification_config,
                run_id=context["run_id"],
                task_id=self.task_id,
                outcome="Rejected",
                reviewer=reviewer,
                comment=comment,
                context=context,
                ident=f"approval-rejected#{wait.generation}",
            )
            self.end_wait(context, wait, {**decision, "Announced": announced})
            raise HITLRejectException(
                f"approval {self.task_id} rejected by {reviewer or 'a reviewer'}" + (f": {comment}" if comment else "")
            ) from None  # the reviewer's rejection, told in full here
        announced = publish_result(
            self.notification_config,
            run_id=context["run_id"],
            task_id=self.task_id,
            outcome="Approved",
            reviewer=reviewer,
            comment=comment,
            context=context,
            ident=f"approval-approved#{wait.generation}",
        )
        self.end_wait(context, wait, {**decision, "Announced": announced})
        return {
            "Outcome": "Approved",
            "Reviewer": reviewer,
            "Comment": comment,
            "DecidedAt": str(result["responded_at"]),
        }

    def _form_response(self, context: Any) -> dict[str, Any] | None:
        from airflow.sdk.execution_time.hitl import get_hitl_detail_content_detail

        try:
            response = get_hitl_detail_content_detail(context["task_instance"].id)
        except Exception:  # noqa: BLE001 - then the trigger's event stands
            self.log.warning("Could not read the form's response", exc_info=True)
            return None
        if not getattr(response, "response_received", False):
            return None
        user = response.responded_by_user
        return {
            "chosen_options": list(response.chosen_options or []),
            "params_input": response.params_input or {},
            "responded_at": response.responded_at,
            "responded_by_user": user.model_dump() if hasattr(user, "model_dump") else user,
        }
